// ONNX models built in code for tests: a graph of nodes, inputs and
// initializers, written with the ONNX library's own protobuf classes, so a
// test can shape or break exactly one thing.
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace convgen::test {

class OnnxBuilder {
public:
  explicit OnnxBuilder(int64_t opset = 13);

  /// A float32 graph input; an empty string in \p symbolic names a
  /// dimension (dim_param) instead of fixing it.
  OnnxBuilder &input(const std::string &name, const std::vector<int64_t> &shape,
                     const std::vector<std::string> &symbolic = {});
  /// A float32 graph output of rank \p rank, its dimensions unknown.
  OnnxBuilder &output(const std::string &name, int rank = 4);
  /// An initializer: float32 in raw_data by default.
  onnx::TensorProto &initializer(const std::string &name, const std::vector<int64_t> &dims,
                                 const std::vector<float> &values);
  /// A float16 initializer, in raw_data or (typed) int32_data.
  onnx::TensorProto &halfInitializer(const std::string &name, const std::vector<int64_t> &dims,
                                     const std::vector<float> &values, bool typed);
  onnx::NodeProto &node(const std::string &op, const std::string &name,
                        const std::vector<std::string> &inputs,
                        const std::vector<std::string> &outputs);

  onnx::ModelProto &model() { return Model; }
  void save(const std::filesystem::path &path) const;

private:
  onnx::ModelProto Model;
};

void setInts(onnx::NodeProto &node, const std::string &name, const std::vector<int64_t> &values);
void setInt(onnx::NodeProto &node, const std::string &name, int64_t value);
void setFloat(onnx::NodeProto &node, const std::string &name, float value);
void setString(onnx::NodeProto &node, const std::string &name, const std::string &value);

} // namespace convgen::test
