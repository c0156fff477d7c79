#include "pipeline/ModelGenerator.h"

#include "cache/CacheKey.h"
#include "cache/KernelCache.h"
#include "cache/OutputStamps.h"
#include "codegen/LayerPlan.h"
#include "codegen/OperatorTemplate.h"
#include "codegen/Ptxas.h"
#include "support/AtomicFile.h"
#include "support/Error.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <llvm/ADT/StringExtras.h>
#include <llvm/Support/SHA256.h>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unistd.h>

namespace convgen {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const char *cacheOutcomeName(CacheOutcome outcome) {
  switch (outcome) {
  case CacheOutcome::Hit:
    return "hit";
  case CacheOutcome::Miss:
    return "miss";
  case CacheOutcome::Corrupt:
    return "corrupt";
  case CacheOutcome::Off:
    return "off";
  }
  return "?";
}

namespace {

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

/// MemAvailable from /proc/meminfo, else half the physical memory.
uint64_t availableMemoryBytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string name;
  uint64_t kib = 0;
  std::string unit;
  while (meminfo >> name >> kib >> unit)
    if (name == "MemAvailable:")
      return kib * 1024;
  return uint64_t(::sysconf(_SC_PHYS_PAGES)) * uint64_t(::sysconf(_SC_PAGESIZE)) / 2;
}

/// The multiply-adds the layer's sparse code will hold: a proxy for its
/// generation time, used for the order of work and the ETA.
/// The layer's tiling, or the plain heuristic's where the options do not
/// fit the layer (its generation then fails and reports why).
Tiling plannedTiling(const ConvLayer &layer, const GenerateOptions &options) {
  try {
    return decideTiling(layer, options).tiling;
  } catch (const Error &) {
    return chooseTiling(layer.geometry);
  }
}

int64_t estimatedWork(const ConvLayer &layer, const GenerateOptions &options) {
  const LayerPlan plan =
      planLayer(layer, plannedTiling(layer, options), options.dtype,
                {options.maxMultiplyAdds, options.maxKernelsPerLayer});
  if (plan.dense())
    return 1000; // the dense fallback keeps its loops: quick to generate
  int64_t work = 0;
  for (const KernelPlan &kernel : plan.kernels)
    work += kernel.sparseMultiplyAdds;
  return std::max<int64_t>(work, 1000);
}

/// Runs one layer that missed the cache (or has no cache).
struct Job {
  size_t index;
  std::string key;
  uint64_t memory;
  int64_t work;
};

std::string fileSha256(const fs::path &path) {
  return llvm::toHex(llvm::SHA256::hash(llvm::arrayRefFromStringRef(readWholeFile(path))),
                     /*LowerCase=*/true);
}

void writeModelManifest(const std::vector<LayerOutcome> &outcomes,
                        const ModelGenerateOptions &options, const std::vector<std::string> &keys) {
  nlohmann::json layers = nlohmann::json::array();
  for (size_t i = 0; i < outcomes.size(); ++i) {
    const fs::path &manifest = outcomes[i].info.manifestPath;
    layers.push_back({{"name", outcomes[i].info.name},
                      {"manifest", fs::relative(manifest, options.modelManifest.parent_path()).string()},
                      {"manifest_sha256", fileSha256(manifest)},
                      {"cache_key", keys[i]}});
    // Channels of the layer's output that hold no data: nobody in the graph
    // reads them, so its kernel does not compute them.
    if (const ConvLayer *layer = outcomes[i].layer; layer && !layer->channels.unreadOutputChannels.empty())
      layers.back()["unread_output_channels"] = layer->channels.unreadOutputChannels;
  }
  nlohmann::json model = {{"format", "convgen-model-manifest/1"},
                          {"weights", options.weightsFile},
                          {"arch", options.generate.arch.name},
                          {"cubins", cubinArchs(options.generate)},
                          {"layers", layers}};
  writeFileIfChanged(options.modelManifest, model.dump(2) + "\n");
}

} // namespace

uint64_t estimateGenerationBytes(const ConvLayer &layer, const GenerateOptions &options) {
  const int64_t work = estimatedWork(layer, options);
  // convgen's share (about 8 KiB per fma in code) and ptxas's, which runs
  // beside it on the PTX (about 6 KiB per fma: ResNet-50 at 90 % peaked at
  // 4.7 GiB for two 236k-fma layers with their ptxas, of which convgen 2.0).
  // The dense template is never unrolled (ir_passes/SparseUnroll), so its
  // size adds nothing.
  return (uint64_t(200) << 20) + uint64_t(work) * (8192 + 6144);
}

std::vector<LayerOutcome> generateModel(const std::vector<ConvLayer> &layers,
                                        const ModelGenerateOptions &options,
                                        const ModelProgress &progress) {
  const GenerateOptions &generateOptions = options.generate;
  const std::string &templateId = directConvTemplate().id;
  std::optional<Ptxas> ptxas = generateOptions.runPtxas ? findPtxas() : std::nullopt;
  const std::string ptxasVersion = ptxas ? ptxas->version : "none";
  std::optional<KernelCache> cache;
  if (options.cacheDir) {
    cache.emplace(*options.cacheDir);
    cache->removeStaleScratch();
  }
  // --emit extras come from the IR, which the cache does not keep.
  const bool readCache = cache && generateOptions.emit.empty();

  std::vector<LayerOutcome> outcomes(layers.size());
  std::vector<std::string> keys(layers.size());
  // The digest of the PTX each layer's output holds once written, for the
  // stamps; empty where unknown (no cache, or the layer failed).
  // Per layer and module.
  std::vector<std::vector<std::string>> ptxDigests(layers.size()), fatbinDigests(layers.size());
  std::optional<OutputStamps> stamps;
  if (cache)
    stamps.emplace(generateOptions.outputDir);
  std::vector<Job> jobs;
  size_t done = 0;

  // 1. Keys and hits, here: a hit reads the entry, gathers this round's
  //    values and compares the files, which costs little.
  for (size_t i = 0; i < layers.size(); ++i) {
    const ConvLayer &layer = layers[i];
    LayerOutcome &outcome = outcomes[i];
    outcome.layer = &layer;
    outcome.info.name = layer.name;
    auto start = Clock::now();
    if (cache) {
      try {
        keys[i] = layerCacheKey(layer, generateOptions, templateId, ptxasVersion);
      } catch (const Error &) {
        keys[i].clear(); // a tiling that does not fit: generation reports it
      }
    }
    outcome.cache = cache ? CacheOutcome::Miss : CacheOutcome::Off;
    if (readCache && !keys[i].empty()) {
      std::string problem;
      std::optional<KernelCache::Entry> entry = cache->find(keys[i], problem);
      // The entry's PTX and fatbinary are read only if the output does not
      // hold them already.
      CodeFilesUpToDate upToDate;
      if (entry) {
        auto outputHolds = [&](const std::string &suffix, const std::string &digest, size_t bytes) {
          const fs::path path = layerFilePath(generateOptions, layer.name, suffix);
          std::error_code ec;
          return stamps->vouchesFor(path, digest) ||
                 (fs::file_size(path, ec) == bytes && !ec &&
                  KernelCache::digest(readWholeFile(path)) == digest);
        };
        const std::vector<LayerModule> &modules = entry->layer.info.modules;
        upToDate.ptx = upToDate.fatbin = true;
        for (size_t m = 0; m < modules.size(); ++m) {
          upToDate.ptx = upToDate.ptx && outputHolds(moduleFileSuffix(m, modules.size(), ".ptx"),
                                                     entry->ptxDigests[m], modules[m].ptxBytes);
          upToDate.fatbin =
              upToDate.fatbin &&
              (entry->fatbinDigests[m].empty() ||
               outputHolds(moduleFileSuffix(m, modules.size(), ".fatbin"), entry->fatbinDigests[m],
                           modules[m].fatbinBytes));
        }
        if ((!upToDate.ptx && !cache->loadPtx(*entry, problem)) ||
            (!upToDate.fatbin && !cache->loadFatbin(*entry, problem)))
          entry.reset();
      }
      if (!problem.empty()) {
        outcome.cache = CacheOutcome::Corrupt;
        outcome.note = problem;
      }
      if (entry) {
        CompiledLayer &cached = entry->layer;
        try {
          cached.arrayValues = gatherPackedValues(layer.weights, cached.arrayIndices,
                                                  cached.info.mode == "dense", layer.name);
          describeTilingChoice(cached.info, layer, generateOptions);
          if (progress.started)
            progress.started(layer);
          outcome.written = writeLayerFiles(layer, cached, generateOptions, templateId, upToDate);
          ptxDigests[i] = entry->ptxDigests;
          fatbinDigests[i] = entry->fatbinDigests;
          outcome.info = std::move(cached.info);
          outcome.cache = CacheOutcome::Hit;
          outcome.seconds = secondsSince(start);
          outcome.info.seconds = outcome.seconds;
          if (progress.finished)
            progress.finished(outcome, ++done, layers.size(), 0);
          continue;
        } catch (const Error &e) {
          // An entry that does not fit this layer is as bad as a corrupt one.
          outcome.cache = CacheOutcome::Corrupt;
          outcome.note = std::string("cache entry unusable (") + e.what() + "): regenerating";
        }
      }
    }
    jobs.push_back({i, keys[i], estimateGenerationBytes(layer, generateOptions),
                    estimatedWork(layer, generateOptions)});
  }

  // 2. The misses, biggest first, on worker threads within the memory
  //    budget. Progress is reported from this thread.
  std::stable_sort(jobs.begin(), jobs.end(), [](const Job &a, const Job &b) { return a.work > b.work; });
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const unsigned workers = unsigned(
      std::min<size_t>(jobs.size(), options.jobs ? options.jobs : cores));
  const uint64_t budget =
      options.memoryBudgetBytes ? options.memoryBudgetBytes : availableMemoryBytes() / 4 * 3;
  int64_t workLeft = 0, workDone = 0;
  for (const Job &job : jobs)
    workLeft += job.work;

  std::mutex mutex;
  std::condition_variable changed;
  std::vector<bool> taken(jobs.size(), false);
  uint64_t memoryInUse = 0;
  size_t running = 0;
  std::deque<std::pair<bool, size_t>> events; // (finished?, position in jobs)

  auto worker = [&] {
    while (true) {
      size_t pick = jobs.size();
      {
        std::unique_lock<std::mutex> lock(mutex);
        // The biggest job that fits; when nothing runs, the biggest left,
        // whatever its size.
        changed.wait(lock, [&] {
          bool anyLeft = false;
          for (size_t j = 0; j < jobs.size(); ++j) {
            if (taken[j])
              continue;
            anyLeft = true;
            if (running == 0 || memoryInUse + jobs[j].memory <= budget) {
              pick = j;
              return true;
            }
          }
          return !anyLeft;
        });
        if (pick == jobs.size())
          return;
        taken[pick] = true;
        memoryInUse += jobs[pick].memory;
        ++running;
        events.emplace_back(false, pick);
      }
      changed.notify_all();
      const Job &job = jobs[pick];
      const ConvLayer &layer = layers[job.index];
      LayerOutcome &outcome = outcomes[job.index];
      auto start = Clock::now();
      try {
        // A fresh LLVMContext per layer. A context never frees its uniqued
        // constants, and a big layer leaves a million of them (its weights,
        // offsets and addresses): every layer after it in the same context
        // was measured up to 10x slower to specialise and eliminate.
        CompiledLayer compiled = KernelGenerator(generateOptions, ptxas).compile(layer);
        if (cache) {
          for (const ModuleCode &code : compiled.modules) {
            ptxDigests[job.index].push_back(KernelCache::digest(code.ptx));
            fatbinDigests[job.index].push_back(code.fatbin.empty() ? std::string()
                                                                   : KernelCache::digest(code.fatbin));
          }
          try {
            if (!job.key.empty())
              cache->store(job.key, compiled);
          } catch (const Error &e) {
            outcome.note = std::string("not cached: ") + e.what();
          }
        }
        outcome.written = writeLayerFiles(layer, compiled, generateOptions, templateId);
        outcome.info = std::move(compiled.info);
      } catch (const Error &e) {
        outcome.error = e.what();
        outcome.exitCode = e.exitCode();
      } catch (const std::bad_alloc &) {
        outcome.error = "layer '" + layer.name + "': out of memory";
        outcome.exitCode = ExitBadInput;
      } catch (const std::exception &e) {
        outcome.error = "layer '" + layer.name + "': internal error: " + e.what();
        outcome.exitCode = 3;
      }
      outcome.seconds = secondsSince(start);
      outcome.info.seconds = outcome.seconds;
      {
        std::lock_guard<std::mutex> lock(mutex);
        memoryInUse -= job.memory;
        --running;
        events.emplace_back(true, pick);
      }
      changed.notify_all();
    }
  };

  std::vector<std::thread> threads;
  for (unsigned w = 0; w < workers; ++w)
    threads.emplace_back(worker);
  auto phaseStart = Clock::now();
  size_t finished = 0;
  while (finished < jobs.size()) {
    std::pair<bool, size_t> event;
    {
      std::unique_lock<std::mutex> lock(mutex);
      changed.wait(lock, [&] { return !events.empty(); });
      event = events.front();
      events.pop_front();
    }
    const auto [isFinished, position] = event;
    const Job &job = jobs[position];
    if (!isFinished) {
      if (progress.started)
        progress.started(layers[job.index]);
      continue;
    }
    ++finished;
    workDone += job.work;
    const double elapsed = secondsSince(phaseStart);
    const double eta = workDone > 0 ? elapsed * double(workLeft - workDone) / double(workDone) : 0;
    if (progress.finished)
      progress.finished(outcomes[job.index], ++done, layers.size(), eta);
  }
  for (std::thread &thread : threads)
    thread.join();

  // Stamp the PTX this run left in place (never creating the directory:
  // a run where everything failed writes nothing).
  bool stamped = false;
  for (size_t i = 0; stamps && i < layers.size(); ++i)
    if (outcomes[i].error.empty() && !ptxDigests[i].empty()) {
      const size_t modules = ptxDigests[i].size();
      for (size_t m = 0; m < modules; ++m) {
        stamps->stamp(layerFilePath(generateOptions, layers[i].name,
                                    moduleFileSuffix(m, modules, ".ptx")),
                      ptxDigests[i][m]);
        if (!fatbinDigests[i][m].empty())
          stamps->stamp(layerFilePath(generateOptions, layers[i].name,
                                      moduleFileSuffix(m, modules, ".fatbin")),
                        fatbinDigests[i][m]);
      }
      stamped = true;
    }
  if (stamped) {
    try {
      stamps->save();
    } catch (const Error &) {
      // Stamps only spare the next run a read; without them it hashes.
    }
  }

  const bool allSucceeded = std::all_of(outcomes.begin(), outcomes.end(),
                                        [](const LayerOutcome &o) { return o.error.empty(); });
  if (allSucceeded && !options.modelManifest.empty())
    writeModelManifest(outcomes, options, keys);
  return outcomes;
}

} // namespace convgen
