// Strict reader for NumPy's .npy format (versions 1.0, 2.0 and 3.0).
//
// Only what a pruned PyTorch state_dict needs is accepted: little-endian
// float32 and float16 weights, and bool/uint8 masks, in C order. Every header
// field is checked, every size is computed with overflow checks, and the data
// must be exactly shape x itemsize bytes. Anything else is an InputError that
// names the array and what is wrong, never a crash or a silent misread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace convgen {

enum class NpyDType { Float32, Float16, Bool, UInt8 };

/// The numpy descr string ("<f4", "<f2", "|b1", "|u1").
const char *npyDescr(NpyDType dtype);
size_t npyItemSize(NpyDType dtype);

/// Largest header numpy itself writes for any supported shape is far below
/// this; a bigger one is a corrupt or hostile file.
inline constexpr size_t MaxNpyHeaderBytes = 64 * 1024;
/// numpy's own limit on the number of dimensions.
inline constexpr size_t MaxNpyDims = 32;

struct NpyArray {
  NpyDType dtype = NpyDType::Float32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data; ///< raw little-endian elements, C order

  int64_t elementCount() const;
  /// Elements as float32 (float16 widened exactly; bool/uint8 as 0/1/...).
  std::vector<float> toFloat32() const;
};

/// Parses a whole .npy file held in memory. \p source names it in errors
/// (for example "model.npz[conv1.weight]").
NpyArray parseNpy(std::span<const uint8_t> bytes, const std::string &source);
/// The same, reusing \p bytes' storage for the data instead of copying it.
NpyArray parseNpy(std::vector<uint8_t> &&bytes, const std::string &source);

/// "(64, 3, 3, 3)" as numpy prints shapes.
std::string formatShape(std::span<const int64_t> shape);

} // namespace convgen
