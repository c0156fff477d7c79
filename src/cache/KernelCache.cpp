#include "cache/KernelCache.h"

#include "support/AtomicFile.h"
#include "support/Error.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <llvm/ADT/StringExtras.h>
#include <llvm/Support/BLAKE3.h>
#include <nlohmann/json.hpp>
#include <random>
#include <unistd.h>

namespace convgen {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char *EntryFormat = "convgen-cache-entry/5";
/// Module \p m of \p modules: "layer.ptx" for a layer of one module,
/// "layer.m<m>.ptx" otherwise (the output's names); the fatbinary, where
/// ptxas ran, likewise.
std::string ptxFile(size_t m, size_t modules) { return "layer" + moduleFileSuffix(m, modules, ".ptx"); }
std::string fatbinFile(size_t m, size_t modules) {
  return "layer" + moduleFileSuffix(m, modules, ".fatbin");
}
constexpr const char *IndicesFile = "indices.bin";
constexpr const char *EntryFile = "entry.json";


/// Thrown inside find() for anything wrong with an entry.
struct CorruptEntry {
  std::string why;
};

json ptxasJson(const PtxasReport &report) {
  json kernels = json::object();
  for (const auto &[symbol, k] : report.kernels)
    kernels[symbol] = {{"registers", k.registers},
                       {"spill_store_bytes", k.spillStoreBytes},
                       {"spill_load_bytes", k.spillLoadBytes},
                       {"stack_frame_bytes", k.stackFrameBytes},
                       {"shared_bytes", k.sharedBytes},
                       {"instructions", k.instructions}};
  return {{"version", report.version},
          {"kernels", kernels},
          {"registers", report.registers},
          {"spill_store_bytes", report.spillStoreBytes},
          {"spill_load_bytes", report.spillLoadBytes},
          {"stack_frame_bytes", report.stackFrameBytes},
          {"shared_bytes", report.sharedBytes},
          {"constant_bytes", report.constantBytes},
          {"instructions", report.instructions},
          {"seconds", report.seconds}};
}

PtxasReport ptxasFrom(const json &j) {
  PtxasReport report;
  report.version = j.at("version").get<std::string>();
  for (const auto &[symbol, k] : j.at("kernels").items()) {
    PtxasKernelReport &kernel = report.kernels[symbol];
    kernel.registers = k.at("registers");
    kernel.spillStoreBytes = k.at("spill_store_bytes");
    kernel.spillLoadBytes = k.at("spill_load_bytes");
    kernel.stackFrameBytes = k.at("stack_frame_bytes");
    kernel.sharedBytes = k.at("shared_bytes");
    kernel.instructions = k.at("instructions");
  }
  report.registers = j.at("registers");
  report.spillStoreBytes = j.at("spill_store_bytes");
  report.spillLoadBytes = j.at("spill_load_bytes");
  report.stackFrameBytes = j.at("stack_frame_bytes");
  report.sharedBytes = j.at("shared_bytes");
  report.constantBytes = j.at("constant_bytes");
  report.instructions = j.at("instructions");
  report.seconds = j.at("seconds");
  return report;
}

json cubinsJson(const std::vector<CubinInfo> &cubins) {
  json list = json::array();
  for (const CubinInfo &c : cubins)
    list.push_back({{"arch", c.arch},
                    {"bytes", c.bytes},
                    {"instructions", c.instructions},
                    {"registers", c.registers},
                    {"spill_bytes", c.spillBytes}});
  return list;
}

json infoJson(const GeneratedLayer &info) {
  json kernels = json::array();
  for (const LayerKernel &k : info.kernels)
    kernels.push_back({{"symbol", k.symbol},
                       {"first_channel_block", k.channelBlocks.first},
                       {"channel_blocks", k.channelBlocks.count},
                       {"grid_y", k.gridY},
                       {"multiply_adds", k.multiplyAdds},
                       {"weights_symbol", k.weightsSymbol},
                       {"weights_offset", k.weightsOffset},
                       {"weights_count", k.weightsCount},
                       {"module", k.module}});
  json modules = json::array();
  for (const LayerModule &m : info.modules)
    modules.push_back({{"ptx_bytes", m.ptxBytes}, {"fatbin_bytes", m.fatbinBytes}});
  return {{"name", info.name},
          {"kernels", kernels},
          {"tiling", info.tiling.describe()},
          {"tiles_per_image_group", info.tilesPerImageGroup},
          {"tiling_source", info.tilingSource},
          {"tiling_reasons", info.tilingReasons},
          {"dtype", dtypeName(info.dtype)},
          {"mode", info.mode},
          {"dense_reason", info.denseReason},
          {"weight_path", info.weightPath},
          {"nonzeros", info.nonzeros},
          {"multiply_adds", info.multiplyAdds},
          {"dense_multiply_adds", info.denseMultiplyAdds},
          {"ptx_bytes", info.ptxBytes},
          {"modules", modules},
          {"ptxas", info.ptxas ? ptxasJson(*info.ptxas) : json(nullptr)},
          {"cubins", cubinsJson(info.cubins)},
          {"fatbin_bytes", info.fatbinBytes},
          {"generation_seconds", info.seconds}};
}

GeneratedLayer infoFrom(const json &j) {
  GeneratedLayer info;
  info.name = j.at("name").get<std::string>();
  for (const json &k : j.at("kernels")) {
    LayerKernel kernel;
    kernel.symbol = k.at("symbol").get<std::string>();
    kernel.channelBlocks = {k.at("first_channel_block"), k.at("channel_blocks")};
    kernel.gridY = k.at("grid_y");
    kernel.multiplyAdds = k.at("multiply_adds");
    kernel.weightsSymbol = k.at("weights_symbol").get<std::string>();
    kernel.weightsOffset = k.at("weights_offset");
    kernel.weightsCount = k.at("weights_count");
    kernel.module = k.at("module");
    info.kernels.push_back(kernel);
  }
  for (const json &m : j.at("modules"))
    info.modules.push_back({m.at("ptx_bytes"), m.at("fatbin_bytes")});
  if (info.modules.empty())
    throw CorruptEntry{std::string(EntryFile) + ": an entry without modules"};
  for (const LayerKernel &kernel : info.kernels)
    if (kernel.module >= info.modules.size())
      throw CorruptEntry{std::string(EntryFile) + ": a kernel's module is out of range"};
  info.tiling = parseTiling(j.at("tiling").get<std::string>());
  info.tilesPerImageGroup = j.at("tiles_per_image_group");
  info.tilingSource = j.at("tiling_source").get<std::string>();
  info.tilingReasons = j.at("tiling_reasons").get<std::vector<std::string>>();
  info.dtype = j.at("dtype").get<std::string>() == "f16" ? DType::F16 : DType::F32;
  info.mode = j.at("mode").get<std::string>();
  info.denseReason = j.at("dense_reason").get<std::string>();
  info.weightPath = j.at("weight_path").get<std::string>();
  info.nonzeros = j.at("nonzeros");
  info.multiplyAdds = j.at("multiply_adds");
  info.denseMultiplyAdds = j.at("dense_multiply_adds");
  info.ptxBytes = j.at("ptx_bytes");
  if (!j.at("ptxas").is_null())
    info.ptxas = ptxasFrom(j.at("ptxas"));
  for (const json &c : j.at("cubins"))
    info.cubins.push_back({c.at("arch").get<std::string>(), c.at("bytes"), c.at("instructions"),
                           c.at("registers"), c.at("spill_bytes")});
  info.fatbinBytes = j.at("fatbin_bytes");
  return info;
}

std::string indicesBytes(const std::vector<int64_t> &indices) {
  std::string bytes(indices.size() * 8, '\0');
  std::memcpy(bytes.data(), indices.data(), bytes.size());
  return bytes;
}

/// A file of the entry, checked against the hash entry.json recorded.
std::string readChecked(const fs::path &directory, const char *name, const json &files) {
  std::string bytes;
  try {
    bytes = readWholeFile(directory / name);
  } catch (const Error &e) {
    throw CorruptEntry{e.what()};
  }
  if (!files.contains(name) || files.at(name) != KernelCache::digest(bytes))
    throw CorruptEntry{std::string(name) + " does not match its recorded digest"};
  return bytes;
}

} // namespace

KernelCache::KernelCache(fs::path root) : Root(std::move(root)) {}

fs::path KernelCache::defaultRoot() {
  if (const char *xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
    return fs::path(xdg) / "convgen";
  if (const char *home = std::getenv("HOME"); home && *home)
    return fs::path(home) / ".cache" / "convgen";
  return ".convgen-cache";
}

fs::path KernelCache::entryPath(const std::string &key) const {
  return Root / "v1" / key.substr(0, 2) / key;
}

fs::path KernelCache::scratchPath(const std::string &what) const {
  static std::atomic<uint64_t> counter{std::random_device{}()};
  return Root / "v1" / "tmp" /
         (what + "." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1)));
}

std::string KernelCache::digest(std::string_view bytes) {
  return llvm::toHex(llvm::BLAKE3::hash(llvm::arrayRefFromStringRef(bytes)), /*LowerCase=*/true);
}

void KernelCache::discard(const std::string &key) const {
  // Moved aside first, so no other process reads it half-deleted.
  std::error_code ec;
  fs::path aside = scratchPath("corrupt." + key);
  fs::create_directories(aside.parent_path(), ec);
  if (!ec && ::rename(entryPath(key).c_str(), aside.c_str()) == 0)
    fs::remove_all(aside, ec);
}

static std::string corruptProblem(const std::string &key, const std::string &why) {
  return "cache entry " + key.substr(0, 16) + " is corrupt (" + why + "): removed, regenerating";
}

std::optional<KernelCache::Entry> KernelCache::find(const std::string &key,
                                                    std::string &problem) const {
  problem.clear();
  const fs::path directory = entryPath(key);
  std::error_code ec;
  if (!fs::is_directory(directory, ec))
    return std::nullopt;
  try {
    json entry;
    try {
      entry = json::parse(readWholeFile(directory / EntryFile));
    } catch (const std::exception &e) {
      throw CorruptEntry{std::string(EntryFile) + ": " + e.what()};
    }
    if (entry.value("format", "") != EntryFormat || entry.value("key", "") != key)
      throw CorruptEntry{std::string(EntryFile) + " is not the entry of this key"};
    const json &files = entry.at("files");
    Entry found;
    found.key = key;
    std::string indices = readChecked(directory, IndicesFile, files);
    if (indices.size() % 8)
      throw CorruptEntry{std::string(IndicesFile) + " is not a whole number of int64"};
    found.layer.arrayIndices.resize(indices.size() / 8);
    std::memcpy(found.layer.arrayIndices.data(), indices.data(), indices.size());
    try {
      found.layer.info = infoFrom(entry.at("info"));
      const size_t modules = found.layer.info.modules.size();
      for (size_t m = 0; m < modules; ++m) {
        found.ptxDigests.push_back(files.at(ptxFile(m, modules)).get<std::string>());
        found.fatbinDigests.push_back(found.layer.info.modules[m].fatbinBytes > 0
                                          ? files.at(fatbinFile(m, modules)).get<std::string>()
                                          : std::string());
      }
    } catch (const json::exception &e) {
      throw CorruptEntry{std::string(EntryFile) + ": " + e.what()};
    } catch (const Error &e) { // a tiling that does not parse
      throw CorruptEntry{std::string(EntryFile) + ": " + e.what()};
    }
    const size_t modules = found.layer.info.modules.size();
    for (size_t m = 0; m < modules; ++m) {
      const LayerModule &module = found.layer.info.modules[m];
      std::error_code sizeError;
      if (fs::file_size(directory / ptxFile(m, modules), sizeError) != module.ptxBytes || sizeError)
        throw CorruptEntry{ptxFile(m, modules) + " is missing or not the size the entry records"};
      if (module.fatbinBytes > 0 &&
          (fs::file_size(directory / fatbinFile(m, modules), sizeError) != module.fatbinBytes ||
           sizeError))
        throw CorruptEntry{fatbinFile(m, modules) + " is missing or not the size the entry records"};
    }
    return found;
  } catch (const CorruptEntry &corrupt) {
    problem = corruptProblem(key, corrupt.why);
    discard(key);
    return std::nullopt;
  }
}

bool KernelCache::loadCode(Entry &entry, bool fatbinaries, std::string &problem) const {
  problem.clear();
  const std::vector<std::string> &digests = fatbinaries ? entry.fatbinDigests : entry.ptxDigests;
  const size_t modules = digests.size();
  entry.layer.modules.resize(modules);
  try {
    for (size_t m = 0; m < modules; ++m) {
      if (digests[m].empty()) // a module without a fatbinary (ptxas did not run)
        continue;
      const std::string name = fatbinaries ? fatbinFile(m, modules) : ptxFile(m, modules);
      (fatbinaries ? entry.layer.modules[m].fatbin : entry.layer.modules[m].ptx) =
          readChecked(entryPath(entry.key), name.c_str(), {{name, digests[m]}});
    }
    return true;
  } catch (const CorruptEntry &corrupt) {
    problem = corruptProblem(entry.key, corrupt.why);
    discard(entry.key);
    return false;
  }
}

bool KernelCache::loadPtx(Entry &entry, std::string &problem) const {
  return loadCode(entry, false, problem);
}

bool KernelCache::loadFatbin(Entry &entry, std::string &problem) const {
  return loadCode(entry, true, problem);
}

void KernelCache::removeStaleScratch(double ageSeconds) const {
  std::error_code ec;
  const auto now = fs::file_time_type::clock::now();
  for (const auto &entry : fs::directory_iterator(Root / "v1" / "tmp", ec)) {
    auto written = fs::last_write_time(entry.path(), ec);
    if (!ec && std::chrono::duration<double>(now - written).count() > ageSeconds)
      fs::remove_all(entry.path(), ec);
  }
}

void KernelCache::store(const std::string &key, const CompiledLayer &compiled) const {
  const fs::path directory = entryPath(key);
  const fs::path scratch = scratchPath(key);
  std::error_code ec;
  try {
    std::string indices = indicesBytes(compiled.arrayIndices);
    writeFileAtomically(scratch / IndicesFile, indices);
    json files = {{IndicesFile, digest(indices)}};
    const size_t modules = compiled.modules.size();
    for (size_t m = 0; m < modules; ++m) {
      const ModuleCode &code = compiled.modules[m];
      writeFileAtomically(scratch / ptxFile(m, modules), code.ptx);
      files[ptxFile(m, modules)] = digest(code.ptx);
      if (!code.fatbin.empty()) {
        writeFileAtomically(scratch / fatbinFile(m, modules), code.fatbin);
        files[fatbinFile(m, modules)] = digest(code.fatbin);
      }
    }
    json entry = {{"format", EntryFormat}, {"key", key}, {"files", files}, {"info", infoJson(compiled.info)}};
    writeFileAtomically(scratch / EntryFile, entry.dump(1) + "\n");
    fs::create_directories(directory.parent_path(), ec);
    if (ec)
      throw SystemError("create directory", directory.parent_path().string(), ec.value());
    if (::rename(scratch.c_str(), directory.c_str()) != 0) {
      const int error = errno;
      fs::remove_all(scratch, ec);
      // Another process stored the same key first: its entry is as good.
      if (error == EEXIST || error == ENOTEMPTY)
        return;
      throw SystemError("rename into the cache as " + directory.string(), scratch.string(), error);
    }
  } catch (...) {
    fs::remove_all(scratch, ec);
    throw;
  }
}

static constexpr const char *TuningFormat = "convgen-tuning/1";

std::optional<Tiling> KernelCache::findTuning(const std::string &key) const {
  const fs::path path = Root / "v1" / "tuning" / (key + ".json");
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    return std::nullopt;
  try {
    json record = json::parse(readWholeFile(path));
    if (record.value("format", "") != TuningFormat || record.value("key", "") != key)
      return std::nullopt;
    return parseTiling(record.at("tiling").get<std::string>());
  } catch (const std::exception &) {
    return std::nullopt;
  }
}

void KernelCache::storeTuning(const std::string &key, const std::string &layer, const Tiling &tiling,
                              const std::string &measurementsJson) const {
  json measurements;
  try {
    measurements = measurementsJson.empty() ? json::object() : json::parse(measurementsJson);
  } catch (const json::exception &e) {
    throw InputError({"", layer, "measurements"}, std::string("not JSON: ") + e.what());
  }
  json record = {{"format", TuningFormat},
                 {"key", key},
                 {"layer", layer},
                 {"tiling", tiling.describe()},
                 {"measurements", measurements}};
  writeFileAtomically(Root / "v1" / "tuning" / (key + ".json"), record.dump(1) + "\n");
}

} // namespace convgen
