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

} // namespace convgen
