#include "cache/OutputStamps.h"

#include "support/AtomicFile.h"
#include "support/Error.h"

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>

namespace fs = std::filesystem;

namespace convgen {

namespace {

constexpr const char *Format = "convgen-output-stamps/1";

/// A modification time in nanoseconds since the Unix epoch.
std::optional<int64_t> modifiedNs(const fs::path &path) {
  std::error_code ec;
  const fs::file_time_type time = fs::last_write_time(path, ec);
  if (ec)
    return std::nullopt;
  const auto sinceEpoch = std::chrono::file_clock::to_sys(time).time_since_epoch();
  return int64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(sinceEpoch).count());
}

} // namespace

OutputStamps::OutputStamps(fs::path directory) : Directory(std::move(directory)) {
  const fs::path path = Directory / FileName;
  const std::optional<int64_t> written = modifiedNs(path);
  if (!written)
    return;
  try {
    const nlohmann::json stamps = nlohmann::json::parse(readWholeFile(path));
    if (stamps.at("format") != Format)
      return;
    for (const auto &[name, stamp] : stamps.at("files").items())
      Stamps[name] = {stamp.at("bytes").get<uint64_t>(), stamp.at("modified_ns").get<int64_t>(),
                      stamp.at("blake3").get<std::string>()};
    WrittenNs = *written;
  } catch (const std::exception &) {
    Stamps.clear(); // unreadable stamps vouch for nothing
  }
}

bool OutputStamps::vouchesFor(const fs::path &file, const std::string &digest) const {
  auto found = Stamps.find(file.filename().string());
  if (found == Stamps.end() || found->second.digest != digest)
    return false;
  std::error_code ec;
  const uint64_t bytes = fs::file_size(file, ec);
  const std::optional<int64_t> modified = modifiedNs(file);
  return !ec && modified && bytes == found->second.bytes && *modified == found->second.modifiedNs &&
         *modified < WrittenNs;
}

void OutputStamps::stamp(const fs::path &file, const std::string &digest) {
  std::error_code ec;
  const uint64_t bytes = fs::file_size(file, ec);
  const std::optional<int64_t> modified = modifiedNs(file);
  if (ec || !modified) {
    Stamps.erase(file.filename().string());
    return;
  }
  Stamps[file.filename().string()] = {bytes, *modified, digest};
}

void OutputStamps::save() const {
  nlohmann::json files = nlohmann::json::object();
  for (const auto &[name, stamp] : Stamps)
    files[name] = {{"bytes", stamp.bytes}, {"modified_ns", stamp.modifiedNs}, {"blake3", stamp.digest}};
  const nlohmann::json stamps = {{"format", Format}, {"files", files}};
  writeFileAtomically(Directory / FileName, stamps.dump(1) + "\n");
}

} // namespace convgen
