// The C API (convgen.h) over LayerRuntime: exceptions become error codes
// and a per-thread message; nothing escapes into C callers.
#include "convgen.h"

#include "runtime/LayerRuntime.h"
#include "support/Error.h"

#include <memory>
#include <new>
#include <string>

struct convgen_layer {
  std::unique_ptr<convgen::CudaContext> context;
  std::unique_ptr<convgen::LayerRuntime> runtime;
};

namespace {

thread_local std::string LastError;

template <typename Body> int guarded(Body body) {
  try {
    LastError.clear();
    body();
    return 0;
  } catch (const convgen::Error &e) {
    LastError = e.what();
    return e.exitCode();
  } catch (const std::bad_alloc &) {
    LastError = "out of memory";
    return 2;
  } catch (const std::exception &e) {
    LastError = std::string("internal error: ") + e.what();
    return 3;
  } catch (...) {
    LastError = "internal error";
    return 3;
  }
}

void requireLayer(const convgen_layer *layer) {
  if (!layer || !layer->runtime)
    throw convgen::InputError({"", "", ""}, "no layer (pass the handle convgen_layer_load gave)");
}

} // namespace

extern "C" {

int convgen_layer_load(const char *manifest_path, int device, convgen_layer **layer) {
  return guarded([&] {
    if (!manifest_path || !layer)
      throw convgen::InputError({"", "", ""}, "convgen_layer_load needs a path and a handle");
    *layer = nullptr;
    auto loaded = std::make_unique<convgen_layer>();
    loaded->context = std::make_unique<convgen::CudaContext>(device);
    loaded->runtime = std::make_unique<convgen::LayerRuntime>(*loaded->context, manifest_path);
    *layer = loaded.release();
  });
}

int convgen_layer_launch(convgen_layer *layer, uint64_t input, uint64_t output, int batch,
                         uint64_t stream) {
  return guarded([&] {
    requireLayer(layer);
    layer->context->makeCurrent();
    layer->runtime->launch(input, output, batch,
                           reinterpret_cast<convgen::cuda::CUstream>(static_cast<uintptr_t>(stream)));
  });
}

int convgen_layer_reload(convgen_layer *layer, int *values_only) {
  return guarded([&] {
    requireLayer(layer);
    layer->context->makeCurrent();
    auto kind = layer->runtime->reload();
    if (values_only)
      *values_only = kind == convgen::LayerRuntime::Reload::ValuesOnly;
  });
}

int convgen_layer_shape(const convgen_layer *layer, int64_t input_chw[3], int64_t output_chw[3]) {
  return guarded([&] {
    requireLayer(layer);
    const convgen::LayerManifest &m = layer->runtime->manifest();
    if (input_chw) {
      input_chw[0] = m.inChannels;
      input_chw[1] = m.inHeight;
      input_chw[2] = m.inWidth;
    }
    if (output_chw) {
      output_chw[0] = m.outChannels;
      output_chw[1] = m.outHeight;
      output_chw[2] = m.outWidth;
    }
  });
}

void convgen_layer_free(convgen_layer *layer) { delete layer; }

const char *convgen_last_error(void) { return LastError.c_str(); }

} // extern "C"
