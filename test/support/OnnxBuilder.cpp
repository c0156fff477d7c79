#include "support/OnnxBuilder.h"

#include "io/Half.h"

#include <cstring>
#include <fstream>
#include <stdexcept>

namespace convgen::test {

namespace {

void setFloatType(onnx::ValueInfoProto &info) {
  info.mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
}

onnx::AttributeProto &addAttribute(onnx::NodeProto &node, const std::string &name,
                                   onnx::AttributeProto::AttributeType type) {
  onnx::AttributeProto &attribute = *node.add_attribute();
  attribute.set_name(name);
  attribute.set_type(type);
  return attribute;
}

} // namespace

OnnxBuilder::OnnxBuilder(int64_t opset) {
  Model.set_ir_version(8);
  Model.set_producer_name("convgen-tests");
  onnx::OperatorSetIdProto &import = *Model.add_opset_import();
  import.set_domain("");
  import.set_version(opset);
  Model.mutable_graph()->set_name("test-graph");
}

OnnxBuilder &OnnxBuilder::input(const std::string &name, const std::vector<int64_t> &shape,
                                const std::vector<std::string> &symbolic) {
  onnx::ValueInfoProto &info = *Model.mutable_graph()->add_input();
  info.set_name(name);
  setFloatType(info);
  onnx::TensorShapeProto &dims = *info.mutable_type()->mutable_tensor_type()->mutable_shape();
  for (size_t i = 0; i < shape.size(); ++i) {
    onnx::TensorShapeProto::Dimension &dim = *dims.add_dim();
    if (i < symbolic.size() && !symbolic[i].empty())
      dim.set_dim_param(symbolic[i]);
    else
      dim.set_dim_value(shape[i]);
  }
  return *this;
}

OnnxBuilder &OnnxBuilder::output(const std::string &name, int rank) {
  onnx::ValueInfoProto &info = *Model.mutable_graph()->add_output();
  info.set_name(name);
  setFloatType(info);
  onnx::TensorShapeProto &shape = *info.mutable_type()->mutable_tensor_type()->mutable_shape();
  for (int i = 0; i < rank; ++i)
    shape.add_dim();
  return *this;
}

onnx::TensorProto &OnnxBuilder::initializer(const std::string &name, const std::vector<int64_t> &dims,
                                            const std::vector<float> &values) {
  onnx::TensorProto &tensor = *Model.mutable_graph()->add_initializer();
  tensor.set_name(name);
  tensor.set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t dim : dims)
    tensor.add_dims(dim);
  std::string raw(values.size() * 4, '\0');
  std::memcpy(raw.data(), values.data(), raw.size());
  tensor.set_raw_data(raw);
  return tensor;
}

onnx::TensorProto &OnnxBuilder::halfInitializer(const std::string &name,
                                                const std::vector<int64_t> &dims,
                                                const std::vector<float> &values, bool typed) {
  onnx::TensorProto &tensor = *Model.mutable_graph()->add_initializer();
  tensor.set_name(name);
  tensor.set_data_type(onnx::TensorProto::FLOAT16);
  for (int64_t dim : dims)
    tensor.add_dims(dim);
  std::string raw;
  for (float value : values) {
    const uint16_t bits = floatToHalf(value);
    if (typed)
      tensor.add_int32_data(bits);
    else
      raw.append(reinterpret_cast<const char *>(&bits), 2);
  }
  if (!typed)
    tensor.set_raw_data(raw);
  return tensor;
}

onnx::NodeProto &OnnxBuilder::node(const std::string &op, const std::string &name,
                                   const std::vector<std::string> &inputs,
                                   const std::vector<std::string> &outputs) {
  onnx::NodeProto &node = *Model.mutable_graph()->add_node();
  node.set_op_type(op);
  node.set_name(name);
  for (const std::string &input : inputs)
    node.add_input(input);
  for (const std::string &output : outputs)
    node.add_output(output);
  return node;
}

void OnnxBuilder::save(const std::filesystem::path &path) const {
  std::ofstream out(path, std::ios::binary);
  if (!Model.SerializeToOstream(&out))
    throw std::runtime_error("cannot write " + path.string());
}

void setInts(onnx::NodeProto &node, const std::string &name, const std::vector<int64_t> &values) {
  onnx::AttributeProto &attribute = addAttribute(node, name, onnx::AttributeProto::INTS);
  for (int64_t value : values)
    attribute.add_ints(value);
}

void setInt(onnx::NodeProto &node, const std::string &name, int64_t value) {
  addAttribute(node, name, onnx::AttributeProto::INT).set_i(value);
}

void setFloat(onnx::NodeProto &node, const std::string &name, float value) {
  addAttribute(node, name, onnx::AttributeProto::FLOAT).set_f(value);
}

void setString(onnx::NodeProto &node, const std::string &name, const std::string &value) {
  addAttribute(node, name, onnx::AttributeProto::STRING).set_s(value);
}

} // namespace convgen::test
