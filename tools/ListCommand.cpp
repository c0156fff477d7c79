#include "ListCommand.h"

#include "model/LayerStats.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <vector>

namespace convgen {

namespace {

struct Row {
  ConvLayer layer;
  LayerStats stats;
};

std::string formatFixed(double value, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", decimals, value);
  return buffer;
}

/// FLOPs in the unit that keeps the figure readable: "3.62 GFLOP".
std::string formatFlops(double flops) {
  const char *units[] = {"", "K", "M", "G", "T", "P"};
  int unit = 0;
  while (flops >= 1000.0 && unit < 5) {
    flops /= 1000.0;
    ++unit;
  }
  return formatFixed(flops, unit == 0 ? 0 : 2) + " " + units[unit] + "FLOP";
}

std::string formatPair(const HW &hw) {
  return std::to_string(hw.h) + "," + std::to_string(hw.w);
}

void printTable(const std::vector<std::vector<std::string>> &cells, std::ostream &out) {
  std::vector<size_t> widths(cells.front().size(), 0);
  for (const auto &row : cells)
    for (size_t c = 0; c < row.size(); ++c)
      widths[c] = std::max(widths[c], row[c].size());
  for (size_t r = 0; r < cells.size(); ++r) {
    std::string line;
    for (size_t c = 0; c < cells[r].size(); ++c) {
      // Names left-aligned, numbers right-aligned.
      bool left = c == 0;
      std::string pad(widths[c] - cells[r][c].size(), ' ');
      line += (c ? "  " : "") + (left ? cells[r][c] + pad : pad + cells[r][c]);
    }
    while (!line.empty() && line.back() == ' ')
      line.pop_back();
    out << line << "\n";
    if (r == 0 || r + 2 == cells.size()) {
      size_t total = 0;
      for (size_t width : widths)
        total += width;
      out << std::string(total + 2 * (widths.size() - 1), '-') << "\n";
    }
  }
}

/// "[1, 4, 7]", or "-" for none.
std::string formatList(const std::vector<int64_t> &values) {
  if (values.empty())
    return "-";
  std::string text = "[";
  for (size_t i = 0; i < values.size(); ++i)
    text += (i ? ", " : "") + std::to_string(values[i]);
  return text + "]";
}

nlohmann::json shapeJson(const Shape4 &shape) { return {shape[0], shape[1], shape[2], shape[3]}; }
nlohmann::json pairJson(const HW &hw) { return {hw.h, hw.w}; }

} // namespace

void printLayerList(const ModelFile &model, bool asJson, std::ostream &out) {
  std::vector<Row> rows;
  for (const LayerSpec &spec : model.sidecar().layers) {
    ConvLayer layer = model.loadLayer(spec);
    LayerStats stats = computeLayerStats(layer);
    rows.push_back({std::move(layer), stats});
  }

  int64_t totalWeights = 0, totalNonzeros = 0, totalRemoved = 0;
  double totalDense = 0, totalSparse = 0, totalCode = 0;
  bool anyFacts = false;
  for (const Row &row : rows) {
    totalWeights += row.stats.weightCount;
    totalNonzeros += row.stats.nonzeroCount;
    totalRemoved += row.stats.removedNonzeros;
    totalDense += double(row.stats.denseFlops());
    totalSparse += double(row.stats.sparseFlops());
    totalCode += 2.0 * double(row.stats.codeMultiplyAdds);
    anyFacts |= !row.layer.channels.empty();
  }

  if (asJson) {
    nlohmann::json layers = nlohmann::json::array();
    for (const Row &row : rows) {
      const ConvGeometry &g = row.layer.geometry;
      layers.push_back({{"name", row.layer.name},
                        {"weight_source", row.layer.weightSource},
                        {"weight_shape", shapeJson(g.weightShape())},
                        {"input", shapeJson(g.inputShape())},
                        {"output", shapeJson(g.outputShape())},
                        {"stride", pairJson(g.stride)},
                        {"padding", pairJson(g.padding)},
                        {"dilation", pairJson(g.dilation)},
                        {"groups", g.groups},
                        {"activation", activationName(g.activation)},
                        {"bias", g.hasBias},
                        {"weights", row.stats.weightCount},
                        {"nonzeros", row.stats.nonzeroCount},
                        {"sparsity", row.stats.sparsity()},
                        {"dense_flops", row.stats.denseFlops()},
                        {"sparse_flops", row.stats.sparseFlops()}});
      if (!row.layer.channels.empty())
        layers.back()["channels"] = {{"zero_inputs", row.layer.channels.zeroInputChannels},
                                     {"zero_outputs", row.layer.channels.zeroOutputChannels},
                                     {"unread_outputs", row.layer.channels.unreadOutputChannels},
                                     {"removed_nonzeros", row.stats.removedNonzeros},
                                     {"code_flops", 2 * row.stats.codeMultiplyAdds}};
      if (const LayerSpec *spec = model.sidecar().find(row.layer.name); spec && !spec->graphOutput.empty())
        layers.back()["graph_output"] = spec->graphOutput;
    }
    nlohmann::json skipped = nlohmann::json::array();
    for (const SkippedLayer &layer : model.sidecar().skipped)
      skipped.push_back({{"name", layer.name}, {"graph_output", layer.graphOutput}, {"reason", layer.reason}});
    nlohmann::json document = {{"model", model.sidecar().model},
                               {"weights_file", model.tensors().fileName()},
                               {"geometry_file", model.sidecar().path},
                               {"layers", layers},
                               {"skipped", skipped}};
    // Paths come from the command line and need not be UTF-8.
    out << document.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return;
  }

  std::vector<std::vector<std::string>> cells;
  cells.push_back({"layer", "weight OIHW", "input NCHW", "output NCHW", "kernel", "stride", "pad",
                   "dil", "groups", "act", "nnz", "sparsity", "dense", "sparse"});
  // Sparsity from the graph: columns only where it found something.
  if (anyFacts)
    for (const char *title : {"zero in", "unread out", "nnz removed", "in code"})
      cells.front().push_back(title);
  for (const Row &row : rows) {
    const ConvGeometry &g = row.layer.geometry;
    cells.push_back({row.layer.name, formatShape4(g.weightShape()), formatShape4(g.inputShape()),
                     formatShape4(g.outputShape()),
                     std::to_string(g.kernel.h) + "x" + std::to_string(g.kernel.w),
                     formatPair(g.stride), formatPair(g.padding), formatPair(g.dilation),
                     std::to_string(g.groups), activationName(g.activation),
                     std::to_string(row.stats.nonzeroCount) + "/" +
                         std::to_string(row.stats.weightCount),
                     formatFixed(100.0 * row.stats.sparsity(), 2) + "%",
                     formatFlops(double(row.stats.denseFlops())),
                     formatFlops(double(row.stats.sparseFlops()))});
    if (anyFacts)
      for (std::string cell :
           {std::to_string(row.layer.channels.zeroInputChannels.size()),
            std::to_string(row.layer.channels.unreadOutputChannels.size()),
            std::to_string(row.stats.removedNonzeros),
            formatFlops(2.0 * double(row.stats.codeMultiplyAdds))})
        cells.back().push_back(cell);
  }
  double overall = totalWeights ? 1.0 - double(totalNonzeros) / double(totalWeights) : 0.0;
  cells.push_back({"total (" + std::to_string(rows.size()) + " layers)", "", "", "", "", "", "",
                   "", "", "", std::to_string(totalNonzeros) + "/" + std::to_string(totalWeights),
                   formatFixed(100.0 * overall, 2) + "%", formatFlops(totalDense),
                   formatFlops(totalSparse)});
  if (anyFacts)
    for (std::string cell : {std::string(), std::string(), std::to_string(totalRemoved), formatFlops(totalCode)})
      cells.back().push_back(cell);
  std::string name = model.sidecar().model.empty() ? model.tensors().fileName() : model.sidecar().model;
  out << name << ": " << rows.size() << " convolution layers (FLOPs: 2 per multiply-add; "
      << "sparse counts only nonzero weights)\n";
  printTable(cells, out);
  if (anyFacts) {
    out << "from the graph: " << totalRemoved << " of " << totalNonzeros
        << " nonzero weights need no code (zero input channels, unread output channels); "
           "--no-propagate keeps them\n";
    for (const Row &row : rows) {
      const ConvChannelFacts &facts = row.layer.channels;
      if (facts.empty())
        continue;
      out << "  " << row.layer.name << ": zero in " << formatList(facts.zeroInputChannels)
          << ", zero out " << formatList(facts.zeroOutputChannels) << ", unread out "
          << formatList(facts.unreadOutputChannels) << "\n";
    }
  }
  // ONNX: where each layer's result is in the graph, and the Conv nodes
  // convgen cannot take.
  bool anyOutput = false;
  for (const LayerSpec &spec : model.sidecar().layers)
    anyOutput |= !spec.graphOutput.empty();
  if (anyOutput) {
    out << "graph outputs:\n";
    for (const LayerSpec &spec : model.sidecar().layers)
      out << "  " << spec.name << " -> " << spec.graphOutput << "\n";
  }
  if (!model.sidecar().skipped.empty()) {
    out << model.sidecar().skipped.size() << " Conv node(s) skipped:\n";
    for (const SkippedLayer &layer : model.sidecar().skipped)
      out << "  " << layer.name << " (output " << layer.graphOutput << "): " << layer.reason << "\n";
  }
}

} // namespace convgen
