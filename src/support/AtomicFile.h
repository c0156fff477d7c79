// Atomic output files: write to a temporary file in the destination's
// directory, flush it to disk, then rename() it over the destination. An
// interrupted or failed run leaves either the old file or the new one, never a
// half-written one, and never a stray temporary.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace convgen {

/// Writes \p bytes to \p path atomically; creates missing parent directories.
/// Throws SystemError (with the path and the failing call) on failure.
void writeFileAtomically(const std::filesystem::path &path, std::string_view bytes);

/// writeFileAtomically unless \p path already holds exactly \p bytes, so an
/// unchanged output keeps its time stamp. Returns whether it wrote.
bool writeFileIfChanged(const std::filesystem::path &path, std::string_view bytes);

/// The whole of \p path. Throws SystemError.
std::string readWholeFile(const std::filesystem::path &path);

} // namespace convgen
