#include "GenerateCommand.h"

#include "model/LayerStats.h"
#include "support/Error.h"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>
#include <unistd.h>

namespace convgen {

namespace {

std::string format(const char *pattern, double value) {
  char text[64];
  std::snprintf(text, sizeof(text), pattern, value);
  return text;
}

std::string duration(double seconds) {
  const long total = long(seconds + 0.5);
  char text[32];
  std::snprintf(text, sizeof(text), "%ld:%02ld", total / 60, total % 60);
  return text;
}

/// "64->64 64x64 3x3 s1": channels, input size, kernel and stride.
std::string shapeOf(const ConvGeometry &g) {
  return std::to_string(g.inChannels) + "->" + std::to_string(g.outChannels) + " " +
         std::to_string(g.inSize.h) + "x" + std::to_string(g.inSize.w) + " " +
         std::to_string(g.kernel.h) + "x" + std::to_string(g.kernel.w) + " s" +
         std::to_string(g.stride.h) + (g.groups > 1 ? " g" + std::to_string(g.groups) : "");
}

/// Progress on stderr: a bar redrawn in place on a terminal, else a line
/// per finished layer.
class ProgressDisplay {
public:
  explicit ProgressDisplay(size_t total) : Total(total), Terminal(::isatty(STDERR_FILENO)) {}

  void started(const ConvLayer &layer) {
    Current = layer.name;
    if (Terminal)
      drawBar();
  }

  void finished(const LayerOutcome &outcome, size_t done, double eta) {
    Done = done;
    Eta = eta;
    // A lone layer's failure is the run's one error line, printed at the end.
    const bool reportError = !outcome.error.empty() && Total > 1;
    if (reportError || !outcome.note.empty() || (!Terminal && outcome.error.empty())) {
      clearBar();
      std::string line = "convgen: [" + std::to_string(done) + "/" + std::to_string(Total) + "] " +
                         outcome.info.name + ": ";
      if (!outcome.error.empty())
        line += "FAILED: " + outcome.error;
      else
        line += std::string(cacheOutcomeName(outcome.cache)) + ", " +
                format("%.2f s", outcome.seconds) + (outcome.written.any() ? "" : ", up to date");
      if (!outcome.note.empty())
        line += " (" + outcome.note + ")";
      std::cerr << line << "\n";
    }
    if (Terminal)
      drawBar();
  }

  void end() { clearBar(); }

private:
  void drawBar() {
    constexpr int Width = 30;
    const int filled = Total ? int(Width * Done / Total) : Width;
    std::string bar = "\r[" + std::string(size_t(filled), '#') + std::string(size_t(Width - filled), '.') +
                      "] " + std::to_string(Done) + "/" + std::to_string(Total) + " layers";
    if (Done > 0 && Done < Total)
      bar += "  ETA " + duration(Eta);
    if (Done < Total && !Current.empty())
      bar += "  " + Current;
    std::cerr << bar << "\x1b[K" << std::flush; // erase what a longer line left
    Drawn = true;
  }
  void clearBar() {
    if (Drawn)
      std::cerr << "\r\x1b[K" << std::flush;
    Drawn = false;
  }

  size_t Total, Done = 0;
  bool Terminal, Drawn = false;
  double Eta = 0;
  std::string Current;
};

} // namespace

void printSummaryTable(const std::vector<LayerOutcome> &outcomes, std::ostream &out) {
  char line[512];
  std::snprintf(line, sizeof(line), "%-16s %-24s %6s %9s %14s %14s %11s %9s %8s %5s %7s %7s %-7s %8s\n",
                "layer", "shape", "sparse", "nnz", "dense MACs", "sparse MACs", "fma in code",
                "PTX KiB", "SASS/fma", "regs", "spill B", "kernels", "cache", "time s");
  out << line;
  int64_t denseTotal = 0, sparseTotal = 0, codeTotal = 0, nonzeroTotal = 0, removedTotal = 0,
          removedWorkTotal = 0;
  size_t hits = 0, failed = 0, propagated = 0;
  double seconds = 0;
  for (const LayerOutcome &o : outcomes) {
    const ConvLayer &layer = *o.layer;
    LayerStats stats = computeLayerStats(layer);
    denseTotal += stats.denseMultiplyAdds;
    sparseTotal += stats.sparseMultiplyAdds;
    nonzeroTotal += stats.nonzeroCount;
    removedTotal += stats.removedNonzeros;
    removedWorkTotal += stats.sparseMultiplyAdds - stats.codeMultiplyAdds;
    propagated += stats.removedNonzeros > 0;
    seconds += o.seconds;
    hits += o.cache == CacheOutcome::Hit;
    if (!o.error.empty()) {
      ++failed;
      std::snprintf(line, sizeof(line), "%-16s %-24s %5.1f%% %9lld  FAILED (see above)\n",
                    layer.name.c_str(), shapeOf(layer.geometry).c_str(), 100 * stats.sparsity(),
                    static_cast<long long>(stats.nonzeroCount));
      out << line;
      continue;
    }
    codeTotal += o.info.multiplyAdds;
    const std::string regs = o.info.ptxas ? std::to_string(o.info.ptxas->registers) : "-";
    const std::string spill =
        o.info.ptxas
            ? std::to_string(o.info.ptxas->spillStoreBytes + o.info.ptxas->spillLoadBytes)
            : "-";
    const std::string kernels = o.info.mode == "dense" ? "dense" : std::to_string(o.info.kernels.size());
    // Machine instructions per fma in the code: only where ptxas measured it.
    char perFma[16] = "-";
    if (o.info.ptxas && o.info.ptxas->instructions > 0 && o.info.multiplyAdds > 0)
      std::snprintf(perFma, sizeof(perFma), "%.2f",
                    double(o.info.ptxas->instructions) / double(o.info.multiplyAdds));
    std::snprintf(line, sizeof(line),
                  "%-16s %-24s %5.1f%% %9lld %14lld %14lld %11lld %9.1f %8s %5s %7s %7s %-7s %8.2f\n",
                  layer.name.c_str(), shapeOf(layer.geometry).c_str(), 100 * stats.sparsity(),
                  static_cast<long long>(stats.nonzeroCount),
                  static_cast<long long>(stats.denseMultiplyAdds),
                  static_cast<long long>(stats.sparseMultiplyAdds),
                  static_cast<long long>(o.info.multiplyAdds), double(o.info.ptxBytes) / 1024.0,
                  perFma, regs.c_str(), spill.c_str(), kernels.c_str(), cacheOutcomeName(o.cache), o.seconds);
    out << line;
  }
  std::snprintf(line, sizeof(line),
                "total: %zu layer(s), %zu cache hit(s), %zu failed; %lld of %lld multiply-adds "
                "(%.1f%%) are the nonzeros' work; %lld fma in code; %.2f s of layer time\n",
                outcomes.size(), hits, failed, static_cast<long long>(sparseTotal),
                static_cast<long long>(denseTotal),
                denseTotal ? 100.0 * double(sparseTotal) / double(denseTotal) : 0.0,
                static_cast<long long>(codeTotal), seconds);
  out << line;
  if (removedTotal > 0) {
    std::snprintf(line, sizeof(line),
                  "from the graph: %zu layer(s) skip zero or unread channels; %lld of %lld "
                  "nonzero weights (%.1f%%) and %lld multiply-adds need no code "
                  "(--no-propagate keeps them)\n",
                  propagated, static_cast<long long>(removedTotal),
                  static_cast<long long>(nonzeroTotal),
                  100.0 * double(removedTotal) / double(std::max<int64_t>(nonzeroTotal, 1)),
                  static_cast<long long>(removedWorkTotal));
    out << line;
  }
  // Say which binaries the layers got, so a table of '-' cannot hide that
  // ptxas did not run.
  std::map<std::string, size_t> cubinsByArch;
  size_t withoutCubins = 0;
  for (const LayerOutcome &o : outcomes) {
    if (!o.error.empty())
      continue;
    withoutCubins += o.info.cubins.empty();
    for (const CubinInfo &cubin : o.info.cubins)
      ++cubinsByArch[cubin.arch];
  }
  std::string binaries;
  for (const auto &[arch, count] : cubinsByArch)
    binaries += (binaries.empty() ? "" : ", ") + arch + " (" + std::to_string(count) + ")";
  if (!binaries.empty())
    out << "cubins: " << binaries << ", in each layer's NAME.fatbin with its PTX\n";
  if (withoutCubins)
    out << "ptxas not run on " << withoutCubins
        << " layer(s) (--ptx-only, or no CUDA toolkit): PTX only, '-' for SASS and registers; "
           "the driver JIT-compiles them at load\n";
}

int generateLayers(const std::vector<ConvLayer> &layers, const ModelGenerateOptions &options,
                   bool verbose, std::ostream &out) {
  ProgressDisplay display(layers.size());
  ModelProgress progress;
  progress.started = [&display](const ConvLayer &layer) { display.started(layer); };
  progress.finished = [&](const LayerOutcome &outcome, size_t done, size_t, double eta) {
    display.finished(outcome, done, eta);
    if (verbose && outcome.error.empty()) {
      std::string phases;
      for (const auto &[phase, seconds] : outcome.info.phaseSeconds)
        phases += " " + phase + " " + format("%.3f", seconds) + " s";
      if (!phases.empty())
        std::cerr << "convgen: layer '" << outcome.info.name << "' phases:" << phases << "\n";
    }
  };
  std::vector<LayerOutcome> outcomes = generateModel(layers, options, progress);
  display.end();
  printSummaryTable(outcomes, out);
  int exitCode = ExitSuccess;
  std::vector<const LayerOutcome *> failed;
  for (const LayerOutcome &o : outcomes)
    if (!o.error.empty()) {
      failed.push_back(&o);
      if (exitCode == ExitSuccess)
        exitCode = o.exitCode;
    }
  if (failed.size() == 1) {
    std::cerr << "convgen: error: " << failed[0]->error << "\n";
  } else if (!failed.empty()) {
    std::string names;
    for (const LayerOutcome *o : failed)
      names += (names.empty() ? "" : ", ") + o->info.name;
    std::cerr << "convgen: error: " << failed.size() << " layers failed (" << names
              << "); each is reported above, the other layers were written\n";
  }
  if (exitCode == ExitSuccess && !options.modelManifest.empty())
    out << "convgen: model manifest " << options.modelManifest.string() << "\n";
  return exitCode;
}

} // namespace convgen
