/* convgen runtime, C API: load a generated layer (its NAME.json manifest,
 * written by `convgen --layer NAME`) and run it on device tensors, from C,
 * or from Python through ctypes (examples/pytorch/). libconvgen.so loads the
 * CUDA driver itself at run time; it needs no CUDA toolkit.
 *
 * Every function returns 0 on success, else an error code, and
 * convgen_last_error() describes the failure in one line:
 *   1  a CUDA call failed (the message names the API, the error and the kernel)
 *   2  bad input (a missing or malformed file), or no NVIDIA driver or GPU
 *   3  an internal error
 * Device pointers and streams are passed as integers (CUdeviceptr, CUstream),
 * as torch's data_ptr() and cuda_stream give them. The layer uses the
 * device's primary context, the one the CUDA runtime (and PyTorch) use. */
#ifndef CONVGEN_H
#define CONVGEN_H

#include <stdint.h>

#if defined(__GNUC__)
#define CONVGEN_API __attribute__((visibility("default")))
#else
#define CONVGEN_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct convgen_layer convgen_layer;

/* Loads the layer of `manifest_path` on GPU `device`; its weights are
 * uploaded once. */
CONVGEN_API int convgen_layer_load(const char *manifest_path, int device, convgen_layer **layer);

/* Runs the layer: `input` holds `batch` NCHW images (fp32, or fp16 for a
 * layer generated with --dtype f16), `output` receives theirs; queued on `stream` (0: the default stream), asynchronously. */
CONVGEN_API int convgen_layer_launch(convgen_layer *layer, uint64_t input, uint64_t output, int batch,
                         uint64_t stream);

/* After the layer was regenerated: reloads it in place. *values_only is set
 * to 1 when only the values changed (same code: one upload, no module load). */
CONVGEN_API int convgen_layer_reload(convgen_layer *layer, int *values_only);

/* The input and output shapes per image: C, H, W. */
CONVGEN_API int convgen_layer_shape(const convgen_layer *layer, int64_t input_chw[3], int64_t output_chw[3]);

/* The bytes of one input or output element: 4 (fp32) or 2 (fp16). */
CONVGEN_API int convgen_layer_element_bytes(const convgen_layer *layer, int *bytes);

/* The output channels the layer does not compute, because nothing in the
 * model's graph reads them: they hold no data (the activation of the bias),
 * so nothing may read them as the convolution's. Writes up to `capacity` of
 * them to `channels` and their number to *count; none for a layer generated
 * alone (an .npz, or --no-propagate). */
CONVGEN_API int convgen_layer_unread_channels(const convgen_layer *layer, int64_t *channels,
                                              int64_t capacity, int64_t *count);

CONVGEN_API void convgen_layer_free(convgen_layer *layer);

/* A whole model: every layer of the model manifest `convgen --all` writes
 * (convgen-model.json), run by layer name. */
typedef struct convgen_model convgen_model;

/* Loads every layer, several at once. Each layer's fatbinary cubin for the
 * device loads as it is; a layer with none (or generated with --ptx-only)
 * is JIT-compiled from its PTX, and one line on stderr says so per model. */
CONVGEN_API int convgen_model_load(const char *model_manifest_path, int device, convgen_model **model);

/* How the load went: its wall time in seconds, and how many of the
 * model's layers the driver JIT-compiled (0 for a model generated for the
 * device's arch). Either pointer may be NULL. */
CONVGEN_API int convgen_model_load_info(const convgen_model *model, double *seconds,
                                        int *jit_compiled_layers);

/* Runs layer `name` of the model, as convgen_layer_launch runs a layer. */
CONVGEN_API int convgen_model_launch(convgen_model *model, const char *name, uint64_t input,
                                     uint64_t output, int batch, uint64_t stream);

/* After `convgen --all` regenerated the model: reloads only the layers whose
 * manifest changed (by values alone where the code is the same), loads new
 * layers and drops missing ones. *layers_reloaded counts the layers touched. */
CONVGEN_API int convgen_model_reload(convgen_model *model, int *layers_reloaded);

/* Layer `name`'s input and output shapes per image: C, H, W. */
CONVGEN_API int convgen_model_shape(const convgen_model *model, const char *name,
                                    int64_t input_chw[3], int64_t output_chw[3]);

/* Layer `name`'s output channels that hold no data, as
 * convgen_layer_unread_channels says. */
CONVGEN_API int convgen_model_unread_channels(const convgen_model *model, const char *name,
                                              int64_t *channels, int64_t capacity, int64_t *count);

CONVGEN_API void convgen_model_free(convgen_model *model);

/* The last error of the calling thread, or "" if none. */
CONVGEN_API const char *convgen_last_error(void);

#ifdef __cplusplus
}
#endif

#endif
