#include "io/Npy.h"

#include "io/Half.h"
#include "support/CheckedMath.h"
#include "support/Error.h"

#include <cstring>
#include <optional>
#include <string_view>

namespace convgen {

const char *npyDescr(NpyDType dtype) {
  switch (dtype) {
  case NpyDType::Float32: return "<f4";
  case NpyDType::Float16: return "<f2";
  case NpyDType::Bool: return "|b1";
  case NpyDType::UInt8: return "|u1";
  }
  return "?";
}

size_t npyItemSize(NpyDType dtype) {
  switch (dtype) {
  case NpyDType::Float32: return 4;
  case NpyDType::Float16: return 2;
  case NpyDType::Bool:
  case NpyDType::UInt8: return 1;
  }
  return 0;
}

std::string formatShape(std::span<const int64_t> shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i)
      out += ", ";
    out += std::to_string(shape[i]);
  }
  if (shape.size() == 1)
    out += ",";
  return out + ")";
}

int64_t NpyArray::elementCount() const {
  int64_t count = 1;
  for (int64_t dim : shape)
    count *= dim; // parseNpy has already checked this product
  return count;
}

std::vector<float> NpyArray::toFloat32() const {
  size_t count = static_cast<size_t>(elementCount());
  std::vector<float> out(count);
  for (size_t i = 0; i < count; ++i) {
    switch (dtype) {
    case NpyDType::Float32: std::memcpy(&out[i], &data[4 * i], 4); break;
    case NpyDType::Float16: {
      uint16_t half = static_cast<uint16_t>(data[2 * i] | (data[2 * i + 1] << 8));
      out[i] = halfToFloat(half);
      break;
    }
    case NpyDType::Bool:
    case NpyDType::UInt8: out[i] = static_cast<float>(data[i]); break;
    }
  }
  return out;
}

namespace {

struct NpyHeader {
  std::optional<std::string> descr;
  std::optional<bool> fortranOrder;
  std::optional<std::vector<int64_t>> shape;
};

/// Parses the header: a Python dict literal as written by numpy's
/// write_array, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
/// followed by space padding and '\n'. Only literal strings, True/False and
/// tuples of non-negative integers are accepted; that is all numpy writes.
class NpyHeaderParser {
public:
  NpyHeaderParser(std::string_view text, const std::string &source)
      : Text(text), Source(source) {}

  NpyHeader parse() {
    NpyHeader header;
    skipSpaces();
    expect('{');
    skipSpaces();
    while (peek() != '}') {
      std::string key = parseString();
      skipSpaces();
      expect(':');
      skipSpaces();
      if (key == "descr") {
        if (header.descr)
          fail("duplicate key 'descr'");
        header.descr = parseString();
      } else if (key == "fortran_order") {
        if (header.fortranOrder)
          fail("duplicate key 'fortran_order'");
        header.fortranOrder = parseBool();
      } else if (key == "shape") {
        if (header.shape)
          fail("duplicate key 'shape'");
        header.shape = parseShape();
      } else {
        fail("unexpected key '" + key + "'");
      }
      skipSpaces();
      if (peek() == ',') {
        ++Pos;
        skipSpaces();
      } else if (peek() != '}') {
        fail("expected ',' or '}'");
      }
    }
    ++Pos; // '}'
    skipSpaces();
    if (Pos + 1 != Text.size() || Text[Pos] != '\n')
      fail("header must end with '\\n' after the dict");
    if (!header.descr)
      fail("missing key 'descr'");
    if (!header.fortranOrder)
      fail("missing key 'fortran_order'");
    if (!header.shape)
      fail("missing key 'shape'");
    return header;
  }

private:
  [[noreturn]] void fail(const std::string &what) const {
    throw InputError({Source, "", ""},
                     "corrupt npy header at byte " + std::to_string(Pos) + ": " + what);
  }
  char peek() const {
    if (Pos >= Text.size())
      fail("unexpected end of header");
    return Text[Pos];
  }
  void expect(char c) {
    if (peek() != c)
      fail(std::string("expected '") + c + "'");
    ++Pos;
  }
  void skipSpaces() {
    while (Pos < Text.size() && Text[Pos] == ' ')
      ++Pos;
  }
  std::string parseString() {
    char quote = peek();
    if (quote != '\'' && quote != '"')
      fail("expected a quoted string");
    size_t end = Text.find(quote, ++Pos);
    if (end == std::string_view::npos)
      fail("unterminated string");
    std::string value(Text.substr(Pos, end - Pos));
    if (value.find_first_of("\\\n") != std::string::npos)
      fail("escape sequences are not supported in header strings");
    Pos = end + 1;
    return value;
  }
  bool parseBool() {
    if (Text.substr(Pos, 4) == "True") {
      Pos += 4;
      return true;
    }
    if (Text.substr(Pos, 5) == "False") {
      Pos += 5;
      return false;
    }
    fail("expected True or False");
  }
  int64_t parseDimension() {
    if (peek() < '0' || peek() > '9')
      fail("expected a non-negative integer dimension");
    int64_t value = 0;
    while (Pos < Text.size() && Text[Pos] >= '0' && Text[Pos] <= '9') {
      auto next = checkedMul(value, 10);
      if (next)
        next = checkedAdd(*next, Text[Pos] - '0');
      if (!next)
        fail("dimension does not fit in 64 bits");
      value = *next;
      ++Pos;
    }
    return value;
  }
  std::vector<int64_t> parseShape() {
    std::vector<int64_t> shape;
    expect('(');
    skipSpaces();
    bool trailingComma = false;
    while (peek() != ')') {
      if (shape.size() == MaxNpyDims)
        fail("more than " + std::to_string(MaxNpyDims) + " dimensions");
      shape.push_back(parseDimension());
      skipSpaces();
      trailingComma = false;
      if (peek() == ',') {
        ++Pos;
        skipSpaces();
        trailingComma = true;
      } else if (peek() != ')') {
        fail("expected ',' or ')' in shape");
      }
    }
    ++Pos; // ')'
    if (shape.size() == 1 && !trailingComma)
      fail("a one-dimensional shape must be written '(n,)'");
    return shape;
  }

  std::string_view Text;
  const std::string &Source;
  size_t Pos = 0;
};

NpyDType parseDescr(const std::string &descr, const std::string &source) {
  for (NpyDType dtype : {NpyDType::Float32, NpyDType::Float16, NpyDType::Bool, NpyDType::UInt8})
    if (descr == npyDescr(dtype))
      return dtype;
  std::string hint;
  if (descr == ">f4" || descr == ">f2")
    hint = " (big-endian; convert with .astype('<f4'))";
  else if (descr == "<f8")
    hint = " (float64; convert with .astype(np.float32))";
  throw InputError({source, "", ""},
                   "unsupported dtype '" + descr + "'" + hint +
                       "; expected <f4 or <f2 for weights, |b1 or |u1 for masks");
}

uint32_t readLittleEndian(std::span<const uint8_t> bytes, size_t offset, size_t width) {
  uint32_t value = 0;
  for (size_t i = 0; i < width; ++i)
    value |= static_cast<uint32_t>(bytes[offset + i]) << (8 * i);
  return value;
}

} // namespace

/// Validates everything but copies no data; returns the array without data
/// and the offset at which the data starts.
static NpyArray parseNpyHeader(std::span<const uint8_t> bytes, const std::string &source,
                               size_t &dataOffset) {
  auto fail = [&source](const std::string &what) -> InputError {
    return InputError({source, "", ""}, what);
  };

  static constexpr uint8_t Magic[] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (bytes.size() < 8 || std::memcmp(bytes.data(), Magic, sizeof(Magic)) != 0)
    throw fail("not an npy array (bad magic; expected \\x93NUMPY)");
  uint8_t major = bytes[6], minor = bytes[7];
  if (minor != 0 || major < 1 || major > 3)
    throw fail("unsupported npy format version " + std::to_string(major) + "." +
               std::to_string(minor) + " (supported: 1.0, 2.0, 3.0)");

  // 1.0 stores the header length in 2 bytes, 2.0 and 3.0 (utf-8 header) in 4.
  size_t lengthWidth = major == 1 ? 2 : 4;
  size_t headerStart = 8 + lengthWidth;
  if (bytes.size() < headerStart)
    throw fail("truncated npy header");
  size_t headerLength = readLittleEndian(bytes, 8, lengthWidth);
  if (headerLength > MaxNpyHeaderBytes)
    throw fail("npy header length " + std::to_string(headerLength) + " exceeds the limit of " +
               std::to_string(MaxNpyHeaderBytes) + " bytes");
  if (bytes.size() - headerStart < headerLength)
    throw fail("truncated npy header (" + std::to_string(headerLength) + " bytes announced, " +
               std::to_string(bytes.size() - headerStart) + " present)");

  std::string_view headerText(reinterpret_cast<const char *>(bytes.data() + headerStart),
                              headerLength);
  for (char c : headerText)
    if (static_cast<unsigned char>(c) >= 0x80 || c == '\0')
      throw fail("corrupt npy header: non-ASCII or NUL byte");
  NpyHeader header = NpyHeaderParser(headerText, source).parse();

  NpyArray array;
  array.dtype = parseDescr(*header.descr, source);
  if (*header.fortranOrder)
    throw fail("fortran_order arrays are not supported; save a C-contiguous array "
               "(np.ascontiguousarray)");
  array.shape = std::move(*header.shape);

  auto elements = checkedProduct(array.shape);
  auto dataBytes = elements ? checkedMul(*elements, static_cast<int64_t>(npyItemSize(array.dtype)))
                            : std::nullopt;
  if (!dataBytes)
    throw fail("shape " + formatShape(array.shape) + " overflows 64-bit size arithmetic");
  size_t present = bytes.size() - headerStart - headerLength;
  if (static_cast<uint64_t>(*dataBytes) != present)
    throw fail("shape " + formatShape(array.shape) + " of " + npyDescr(array.dtype) + " needs " +
               std::to_string(*dataBytes) + " data bytes, file has " + std::to_string(present));

  dataOffset = headerStart + headerLength;
  return array;
}

NpyArray parseNpy(std::span<const uint8_t> bytes, const std::string &source) {
  size_t dataOffset = 0;
  NpyArray array = parseNpyHeader(bytes, source, dataOffset);
  array.data.assign(bytes.begin() + static_cast<ptrdiff_t>(dataOffset), bytes.end());
  return array;
}

NpyArray parseNpy(std::vector<uint8_t> &&bytes, const std::string &source) {
  size_t dataOffset = 0;
  NpyArray array = parseNpyHeader(bytes, source, dataOffset);
  bytes.erase(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(dataOffset));
  array.data = std::move(bytes);
  return array;
}

} // namespace convgen
