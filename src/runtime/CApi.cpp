// The C API (convgen.h) over LayerRuntime and ModelRuntime: exceptions become error codes
// and a per-thread message; nothing escapes into C callers.
#include "convgen.h"

#include "runtime/LayerRuntime.h"
#include "runtime/ModelRuntime.h"
#include "support/Error.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <new>
#include <string>

struct convgen_layer {
  std::unique_ptr<convgen::CudaContext> context;
  std::unique_ptr<convgen::LayerRuntime> runtime;
};

struct convgen_model {
  std::unique_ptr<convgen::CudaContext> context;
  std::unique_ptr<convgen::ModelRuntime> runtime;
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

void requireModel(const convgen_model *model) {
  if (!model || !model->runtime)
    throw convgen::InputError({"", "", ""}, "no model (pass the handle convgen_model_load gave)");
}

const convgen::LayerRuntime &modelLayer(const convgen_model *model, const char *name) {
  requireModel(model);
  if (!name)
    throw convgen::InputError({"", "", ""}, "no layer name");
  return model->runtime->layer(name);
}

void copyUnreadChannels(const convgen::LayerManifest &m, int64_t *channels, int64_t capacity,
                        int64_t *count, const char *function) {
  if (!count || capacity < 0 || (capacity > 0 && !channels))
    throw convgen::InputError({"", "", ""}, std::string(function) +
                                                " needs a count pointer, and a buffer for a capacity > 0");
  const std::vector<int64_t> &unread = m.unreadOutputChannels;
  std::copy_n(unread.begin(), std::min<size_t>(unread.size(), size_t(capacity)), channels);
  *count = int64_t(unread.size());
}

void copyShape(const convgen::LayerManifest &m, int64_t input_chw[3], int64_t output_chw[3]) {
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
    copyShape(layer->runtime->manifest(), input_chw, output_chw);
  });
}

int convgen_layer_element_bytes(const convgen_layer *layer, int *bytes) {
  return guarded([&] {
    requireLayer(layer);
    if (!bytes)
      throw convgen::InputError({"", "", ""}, "convgen_layer_element_bytes needs a result pointer");
    *bytes = int(layer->runtime->manifest().elementBytes);
  });
}

int convgen_layer_unread_channels(const convgen_layer *layer, int64_t *channels, int64_t capacity,
                                  int64_t *count) {
  return guarded([&] {
    requireLayer(layer);
    copyUnreadChannels(layer->runtime->manifest(), channels, capacity, count,
                       "convgen_layer_unread_channels");
  });
}

void convgen_layer_free(convgen_layer *layer) { delete layer; }

int convgen_model_load(const char *model_manifest_path, int device, convgen_model **model) {
  return guarded([&] {
    if (!model_manifest_path || !model)
      throw convgen::InputError({"", "", ""}, "convgen_model_load needs a path and a handle");
    *model = nullptr;
    auto loaded = std::make_unique<convgen_model>();
    loaded->context = std::make_unique<convgen::CudaContext>(device);
    loaded->runtime = std::make_unique<convgen::ModelRuntime>(*loaded->context, model_manifest_path);
    // Said once per model, never per layer: a fall back to the JIT is slow,
    // not wrong, and the user should know which regeneration avoids it.
    if (std::string notice = loaded->runtime->loadReport().notice(); !notice.empty())
      std::fprintf(stderr, "convgen: %s: %s\n", model_manifest_path, notice.c_str());
    *model = loaded.release();
  });
}

int convgen_model_load_info(const convgen_model *model, double *seconds, int *jit_compiled_layers) {
  return guarded([&] {
    requireModel(model);
    const convgen::ModelLoadReport &report = model->runtime->loadReport();
    if (seconds)
      *seconds = report.seconds;
    if (jit_compiled_layers)
      *jit_compiled_layers = int(report.jitCompiled.size());
  });
}

int convgen_model_launch(convgen_model *model, const char *name, uint64_t input, uint64_t output,
                         int batch, uint64_t stream) {
  return guarded([&] {
    const convgen::LayerRuntime &layer = modelLayer(model, name);
    model->context->makeCurrent();
    layer.launch(input, output, batch,
                 reinterpret_cast<convgen::cuda::CUstream>(static_cast<uintptr_t>(stream)));
  });
}

int convgen_model_reload(convgen_model *model, int *layers_reloaded) {
  return guarded([&] {
    requireModel(model);
    model->context->makeCurrent();
    convgen::ModelRuntime::ReloadReport report = model->runtime->reload();
    if (layers_reloaded)
      *layers_reloaded = int(report.valuesOnly.size() + report.newModule.size() +
                             report.added.size() + report.removed.size());
  });
}

int convgen_model_shape(const convgen_model *model, const char *name, int64_t input_chw[3],
                        int64_t output_chw[3]) {
  return guarded([&] { copyShape(modelLayer(model, name).manifest(), input_chw, output_chw); });
}

int convgen_model_unread_channels(const convgen_model *model, const char *name, int64_t *channels,
                                  int64_t capacity, int64_t *count) {
  return guarded([&] {
    copyUnreadChannels(modelLayer(model, name).manifest(), channels, capacity, count,
                       "convgen_model_unread_channels");
  });
}

void convgen_model_free(convgen_model *model) { delete model; }

const char *convgen_last_error(void) { return LastError.c_str(); }

} // extern "C"
