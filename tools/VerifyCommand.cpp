#include "VerifyCommand.h"

#include "support/Error.h"

#include <chrono>
#include <cstdio>

namespace convgen {

static std::string describeReport(const VerifyReport &report, double generateSeconds,
                                  int64_t batch) {
  char line[512];
  std::snprintf(line, sizeof(line),
                "%-12s %-6s %-8s batch %lld, %s: %lld outputs, max abs err %.2e, max rel err "
                "%.2e, %.0f%% of bound  %s  (generate %.1f s, compile %.1f s, run %.1f s, "
                "check %.1f s)",
                report.layer.c_str(), report.mode.c_str(), report.weightPath.c_str(),
                static_cast<long long>(batch), report.blocks.c_str(),
                static_cast<long long>(report.outputsChecked), report.maxAbsError,
                report.maxRelError, 100.0 * report.boundUse, report.passed() ? "PASS" : "FAIL",
                generateSeconds, report.compileSeconds, report.runSeconds, report.checkSeconds);
  std::string text = line;
  if (!report.context.empty())
    text += "\n  " + report.context;
  if (!report.passed())
    text += "\n  " + std::to_string(report.failures) + " bad output(s); first: " +
            report.firstFailure;
  return text;
}

int verifyLayers(const std::vector<ConvLayer> &layers, const GenerateOptions &generateOptions,
                 const VerifyOptions &verifyOptions, std::ostream &out) {
  int failed = 0;
  const std::optional<Ptxas> ptxas = generateOptions.runPtxas ? findPtxas() : std::nullopt;
  for (const ConvLayer &layer : layers) {
    auto start = std::chrono::steady_clock::now();
    // One LLVMContext per layer, as generateModel does: a context keeps
    // every constant it ever made, which slows the layers after a big one.
    KernelGenerator generator(generateOptions, ptxas);
    BuiltKernel kernel = generator.build(layer);
    double generateSeconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    VerifyReport report = verifyKernel(layer, kernel, verifyOptions);
    failed += !report.passed();
    out << describeReport(report, generateSeconds, verifyOptions.batch) << std::endl;
  }
  out << "convgen verify: " << layers.size() << " layer(s), "
      << layers.size() - size_t(failed) << " PASS, " << failed << " FAIL\n";
  return failed ? ExitCheckFailed : ExitSuccess;
}

} // namespace convgen
