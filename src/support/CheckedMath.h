// Overflow-checked integer arithmetic for sizes computed from untrusted input
// (npy shapes, geometry sidecars). A wrapped product would let a crafted file
// pass a size check and then be read out of bounds.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

namespace convgen {

inline std::optional<int64_t> checkedMul(int64_t a, int64_t b) {
  int64_t result;
  if (__builtin_mul_overflow(a, b, &result))
    return std::nullopt;
  return result;
}

inline std::optional<int64_t> checkedAdd(int64_t a, int64_t b) {
  int64_t result;
  if (__builtin_add_overflow(a, b, &result))
    return std::nullopt;
  return result;
}

/// Product of non-negative factors, or nullopt on overflow.
inline std::optional<int64_t> checkedProduct(std::span<const int64_t> factors) {
  int64_t product = 1;
  for (int64_t factor : factors) {
    auto next = checkedMul(product, factor);
    if (!next)
      return std::nullopt;
    product = *next;
  }
  return product;
}

} // namespace convgen
