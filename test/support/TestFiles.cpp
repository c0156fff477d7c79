#include "support/TestFiles.h"

#include <cstring>
#include <fstream>
#include <random>
#include <stdexcept>
#include <zip.h>

namespace convgen::test {

namespace fs = std::filesystem;

Bytes makeNpyWithHeader(const std::string &header, const Bytes &data, int major) {
  size_t lengthWidth = major == 1 ? 2 : 4;
  std::string text = header;
  size_t prefix = 8 + lengthWidth;
  while ((prefix + text.size() + 1) % 64 != 0)
    text += ' ';
  text += '\n';
  Bytes out = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(major), 0};
  for (size_t i = 0; i < lengthWidth; ++i)
    out.push_back(static_cast<uint8_t>(text.size() >> (8 * i)));
  out.insert(out.end(), text.begin(), text.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

Bytes makeNpy(const std::string &descr, const std::vector<int64_t> &shape, const Bytes &data,
              int major, bool fortranOrder) {
  std::string shapeText = "(";
  for (size_t i = 0; i < shape.size(); ++i)
    shapeText += (i ? ", " : "") + std::to_string(shape[i]);
  shapeText += shape.size() == 1 ? ",)" : ")";
  std::string header = "{'descr': '" + descr + "', 'fortran_order': " +
                       (fortranOrder ? "True" : "False") + ", 'shape': " + shapeText + ", }";
  return makeNpyWithHeader(header, data, major);
}

Bytes floatBytes(const std::vector<float> &values) {
  Bytes out(values.size() * 4);
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

Bytes readFile(const fs::path &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw std::runtime_error("test: cannot read " + path.string());
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

void writeFile(const fs::path &path, const Bytes &bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char *>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out)
    throw std::runtime_error("test: cannot write " + path.string());
}

void writeText(const fs::path &path, const std::string &text) {
  writeFile(path, Bytes(text.begin(), text.end()));
}

void writeNpz(const fs::path &path, const std::map<std::string, Bytes> &arrays, bool compress) {
  int error = 0;
  zip_t *archive = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  if (!archive)
    throw std::runtime_error("test: zip_open failed for " + path.string());
  for (const auto &[key, bytes] : arrays) {
    // libzip keeps the pointer until zip_close, and the map outlives it.
    zip_source_t *source = zip_source_buffer(archive, bytes.data(), bytes.size(), 0);
    zip_int64_t index = zip_file_add(archive, (key + ".npy").c_str(), source, ZIP_FL_ENC_UTF_8);
    if (index < 0)
      throw std::runtime_error("test: zip_file_add failed");
    zip_set_file_compression(archive, static_cast<zip_uint64_t>(index),
                             compress ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0);
  }
  if (zip_close(archive) != 0)
    throw std::runtime_error("test: zip_close failed for " + path.string());
}

TempDir::TempDir() {
  std::random_device random;
  Path = fs::temp_directory_path() / ("convgen-test-" + std::to_string(random()) + "-" +
                                      std::to_string(random()));
  fs::create_directories(Path);
}

TempDir::~TempDir() {
  std::error_code ignored;
  fs::remove_all(Path, ignored);
}

std::string TinyModel::sidecarJson() const {
  return "{\"model\": \"tiny\", \"layers\": [" + sidecarLayerJson + "]}";
}

TinyModel makeTinyModel() {
  // conv: 4 output channels, 2 input channels, 3x3 kernel, on a 1x2x5x5 input.
  std::vector<float> weights(4 * 2 * 3 * 3);
  for (size_t i = 0; i < weights.size(); ++i)
    weights[i] = (i % 3 == 0) ? 0.0f : float(i + 1);
  TinyModel model;
  model.arrays["conv.weight"] = makeNpy("<f4", {4, 2, 3, 3}, floatBytes(weights));
  model.arrays["conv.bias"] = makeNpy("<f4", {4}, floatBytes({0.5f, -0.5f, 1.0f, 2.0f}));
  model.sidecarLayerJson = R"({"name": "conv", "weight": "conv.weight", "bias": "conv.bias",
    "input": [1, 2, 5, 5], "stride": [1, 1], "padding": [1, 1], "dilation": [1, 1],
    "groups": 1, "activation": "relu", "output": [1, 4, 5, 5]})";
  return model;
}

} // namespace convgen::test
