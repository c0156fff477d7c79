// The parsers' fuzzing surface, shared by the libFuzzer targets and by the
// test that replays the seed corpus and every committed crash.
//
// Each function feeds untrusted bytes through one parser and everything that
// consumes its result. A convgen::Error is the expected way to reject input;
// any other exception, a crash or a sanitizer report is a bug.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace convgen::fuzz {

enum class InputKind { Npy, Npz, Sidecar, Onnx, Fatbinary };

/// Whether this build reads ONNX (the ONNX library is optional where only
/// the runtime is built); parseEverything rejects Onnx input otherwise.
bool onnxSupported();

/// "npy", "npz", "sidecar", "onnx", "fatbinary"; also the corpus folder names.
const char *inputKindName(InputKind kind);

/// Returns true when the input was accepted, false when it was rejected with
/// a convgen::Error (whose message must be non-empty).
bool parseEverything(InputKind kind, const uint8_t *data, size_t size);

} // namespace convgen::fuzz
