// The generator's content-addressed cache: a layer's PTX, its fatbinary
// (the cubins ptxas made, where it ran), kernels, ptxas figures and packing order (the OIHW index of each packed slot), stored
// under its CacheKey. A hit stands in for generation: this round's packed
// values are gathered from its weights at the cached indices.
//
// Layout: ROOT/v1/<2 hex>/<key>/ holds layer.ptx, layer.fatbin (or
// layer.m<k>.ptx and .fatbin per module), indices.bin and
// entry.json (tuning records live in ROOT/v1/tuning/), which records every other file's BLAKE3 digest. An entry is
// written into ROOT/v1/tmp/ and renamed into place whole, so readers see all
// of it or nothing, and two processes storing one key at once both succeed
// (the second rename fails on the existing entry, and its copy is dropped).
// A corrupt entry (unreadable, a digest that does not match) is moved aside
// and deleted, and reported as a miss: it is never used.
//
// The PTX is read only when needed: where the output directory already
// holds a PTX with the entry's digest (an unchanged or values-only round),
// the entry's copy is not read at all.
#pragma once

#include "codegen/LayerGenerator.h"

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace convgen {

class KernelCache {
public:
  explicit KernelCache(std::filesystem::path root);

  /// $XDG_CACHE_HOME/convgen, else $HOME/.cache/convgen, else
  /// ./.convgen-cache.
  static std::filesystem::path defaultRoot();

  /// An entry found: its layer (info without times or manifest path, and
  /// the packed indices; no values, and no PTX until loadPtx), and the
  /// digest of its PTX.
  struct Entry {
    std::string key;
    CompiledLayer layer;
    /// Per module: its PTX's digest, and its fatbinary's (empty where ptxas did not run).
    std::vector<std::string> ptxDigests, fatbinDigests;
  };

  /// The entry of \p key. nullopt on a miss; when the entry was there but
  /// corrupt, \p problem says why (and the entry is gone).
  std::optional<Entry> find(const std::string &key, std::string &problem) const;
  /// Reads \p entry's PTX into entry.layer.modules, checking the digests. False
  /// if it is corrupt (\p problem says why; the entry is gone).
  bool loadPtx(Entry &entry, std::string &problem) const;
  /// The same for its fatbinaries (only where fatbinDigests are set).
  bool loadFatbin(Entry &entry, std::string &problem) const;

  /// The BLAKE3 digest (64 hex digits) of \p bytes, as entries record them.
  static std::string digest(std::string_view bytes);

  /// Stores \p compiled under \p key. Throws SystemError if the cache
  /// cannot be written.
  void store(const std::string &key, const CompiledLayer &compiled) const;

  /// Tuning records (ROOT/v1/tuning/<key>.json, keyed by layerTuningKey):
  /// the tiling convbench --tune measured fastest for a layer at a batch.
  /// findTuning gives nullopt for none, or for a record that does not
  /// parse (it is ignored, never trusted).
  std::optional<Tiling> findTuning(const std::string &key) const;
  /// Records \p tiling for \p key, with \p measurementsJson (a JSON
  /// object: what the tuner measured) beside it; atomically.
  void storeTuning(const std::string &key, const std::string &layer, const Tiling &tiling,
                   const std::string &measurementsJson) const;

  /// Removes scratch directories older than \p ageSeconds: what runs that
  /// were killed mid-store left behind. A live run's scratch is younger.
  void removeStaleScratch(double ageSeconds = 24 * 3600) const;

  const std::filesystem::path &root() const { return Root; }

private:
  /// loadPtx and loadFatbin: every module's PTX or fatbinary.
  bool loadCode(Entry &entry, bool fatbinaries, std::string &problem) const;
  std::filesystem::path entryPath(const std::string &key) const;
  std::filesystem::path scratchPath(const std::string &what) const;
  void discard(const std::string &key) const;
  std::filesystem::path Root;
};

} // namespace convgen
