#include "runtime/LayerRuntime.h"

#include "runtime/FatbinaryImage.h"
#include "support/AtomicFile.h"
#include "support/Error.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>

namespace convgen {

using namespace cuda;

namespace {

/// The weights file: exactly count + bias count little-endian floats.
std::vector<float> readWeights(const LayerManifest &manifest) {
  std::string bytes = readWholeFile(manifest.weightsFile);
  const size_t expected = size_t(manifest.weightsCount + manifest.biasCount) * 4;
  if (bytes.size() != expected)
    throw InputError({manifest.weightsFile.string(), manifest.layer, ""},
                     "holds " + std::to_string(bytes.size()) + " bytes; the manifest says " +
                         std::to_string(expected) + ": regenerate the layer");
  std::vector<float> values(expected / 4);
  std::memcpy(values.data(), bytes.data(), expected);
  return values;
}

/// The bytes the module is loaded from: the fatbinary, else the PTX.
std::string readImage(const LayerManifest &manifest) {
  return readWholeFile(manifest.fatbinFile.empty() ? manifest.ptxFile : manifest.fatbinFile);
}

std::string smName(int sm) { return "sm_" + std::to_string(sm); }

/// Loads \p image, timing the load (the JIT, where there is one).
std::unique_ptr<CudaModule> loadModule(const CudaContext &context, const std::string &image,
                                       const std::string &layer, double &seconds) {
  auto start = std::chrono::steady_clock::now();
  auto module = std::make_unique<CudaModule>(context, image, "layer '" + layer + "'");
  seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return module;
}

} // namespace

LoadedCode chooseCode(const std::string &image, int deviceSm, const std::string &what) {
  if (!isFatbinary(image))
    return {true, "PTX, JIT-compiled for " + smName(deviceSm) + " (generated with --ptx-only)"};
  const std::vector<FatbinaryImage> images = readFatbinary(image, what);
  if (const FatbinaryImage *cubin = cubinForDevice(images, deviceSm))
    return {false, "cubin " + smName(cubin->sm)};
  const FatbinaryImage *ptx = ptxImage(images);
  std::string cubins;
  for (const FatbinaryImage &entry : images)
    if (entry.kind == FatbinaryImage::Kind::Cubin)
      cubins += (cubins.empty() ? "" : ", ") + smName(entry.sm);
  if (!ptx)
    throw InputError({what, "", ""}, "holds cubins for " + cubins + " and no PTX: nothing runs on " +
                                         smName(deviceSm) + "; regenerate with --arch " +
                                         smName(deviceSm));
  return {true, "PTX for " + smName(ptx->sm) + ", JIT-compiled: no cubin for " + smName(deviceSm) +
                    (cubins.empty() ? "" : " (it has " + cubins + ")")};
}

LayerRuntime::LayerRuntime(const CudaContext &context, const std::filesystem::path &manifestPath)
    : Context(context), Manifest(readLayerManifest(manifestPath)) {
  Image = readImage(Manifest);
  Code = chooseCode(Image, Context.computeCapability(),
                    (Manifest.fatbinFile.empty() ? Manifest.ptxFile : Manifest.fatbinFile).string());
  std::vector<float> values = readWeights(Manifest);
  Module = loadModule(Context, Image, Manifest.layer, LoadSeconds);
  for (const ManifestKernel &kernel : Manifest.kernels)
    Functions.push_back(Module->function(kernel.symbol));
  Weights = DeviceBuffer(Context, values.size() * 4, "the weights of layer '" + Manifest.layer + "'");
  uploadValues(values);
}

void LayerRuntime::uploadValues(const std::vector<float> &values) {
  const std::string what = "the weights of layer '" + Manifest.layer + "'";
  Weights.upload(values.data(), values.size() * 4, 0, what);
  if (Manifest.weightPath != "constant")
    return;
  // The constant path reads each kernel's slice from its module global.
  for (const ManifestKernel &kernel : Manifest.kernels) {
    if (kernel.weightsCount == 0)
      continue;
    auto [pointer, bytes] = Module->global(kernel.weightsSymbol);
    if (bytes != size_t(kernel.weightsCount) * 4)
      throw CudaError("layer '" + Manifest.layer + "': " + kernel.weightsSymbol + " holds " +
                          std::to_string(bytes) + " bytes, the manifest says " +
                          std::to_string(kernel.weightsCount * 4),
                      0);
    Context.driver().check(
        Context.driver().cuMemcpyHtoD(pointer, values.data() + kernel.weightsOffsetBytes / 4, bytes),
        "cuMemcpyHtoD", "uploading " + kernel.weightsSymbol + " of layer '" + Manifest.layer + "'");
  }
}

void LayerRuntime::launch(CUdeviceptr input, CUdeviceptr output, int batch, CUstream stream) const {
  if (batch < 1)
    throw InputError({"", Manifest.layer, "batch"}, "must be at least 1");
  const int64_t gridX = Manifest.gridX(batch);
  if (gridX > std::numeric_limits<int32_t>::max())
    throw InputError({"", Manifest.layer, "batch"},
                     std::to_string(batch) + " images need more blocks than CUDA's grid allows");
  CUdeviceptr bias = Manifest.biasCount ? Weights.pointer() + size_t(Manifest.weightsCount) * 4 : 0;
  for (size_t i = 0; i < Functions.size(); ++i) {
    const ManifestKernel &kernel = Manifest.kernels[i];
    CUdeviceptr weights = Weights.pointer() + size_t(kernel.weightsOffsetBytes);
    int32_t images = batch;
    void *parameters[] = {&input, &weights, &bias, &output, &images};
    Context.driver().check(
        Context.driver().cuLaunchKernel(Functions[i], unsigned(gridX), unsigned(kernel.gridY), 1,
                                        unsigned(Manifest.blockX), unsigned(Manifest.blockY), 1, 0,
                                        stream,
                                        parameters, nullptr),
        "cuLaunchKernel", "launching " + kernel.symbol + " for " + std::to_string(batch) + " images");
  }
}

LayerRuntime::Reload LayerRuntime::reload() {
  LayerManifest manifest = readLayerManifest(Manifest.path);
  std::string image = readImage(manifest);
  std::vector<float> values = readWeights(manifest);
  if (image == Image && manifest.weightPath == Manifest.weightPath) {
    Manifest = std::move(manifest);
    uploadValues(values);
    return Reload::ValuesOnly;
  }
  // New code: load it completely before anything of the old is released.
  LoadedCode code =
      chooseCode(image, Context.computeCapability(),
                 (manifest.fatbinFile.empty() ? manifest.ptxFile : manifest.fatbinFile).string());
  double seconds = 0;
  auto module = loadModule(Context, image, manifest.layer, seconds);
  std::vector<CUfunction> functions;
  for (const ManifestKernel &kernel : manifest.kernels)
    functions.push_back(module->function(kernel.symbol));
  DeviceBuffer weights(Context, values.size() * 4, "the weights of layer '" + manifest.layer + "'");
  Module = std::move(module);
  Functions = std::move(functions);
  Weights = std::move(weights);
  Manifest = std::move(manifest);
  Image = std::move(image);
  Code = std::move(code);
  LoadSeconds = seconds;
  uploadValues(values);
  return Reload::Module;
}

std::vector<KernelResources> LayerRuntime::resources() const {
  const CudaDriver &driver = Context.driver();
  std::vector<KernelResources> result;
  for (size_t i = 0; i < Functions.size(); ++i) {
    KernelResources r;
    r.symbol = Manifest.kernels[i].symbol;
    const std::string what = "querying " + r.symbol;
    driver.check(driver.cuFuncGetAttribute(&r.registers, CU_FUNC_ATTRIBUTE_NUM_REGS, Functions[i]),
                 "cuFuncGetAttribute", what);
    driver.check(driver.cuFuncGetAttribute(&r.localBytes, CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, Functions[i]),
                 "cuFuncGetAttribute", what);
    driver.check(driver.cuFuncGetAttribute(&r.sharedBytes, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, Functions[i]),
                 "cuFuncGetAttribute", what);
    driver.check(driver.cuOccupancyMaxActiveBlocksPerMultiprocessor(
                     &r.blocksPerMultiprocessor, Functions[i], int(Manifest.threadsPerBlock), 0),
                 "cuOccupancyMaxActiveBlocksPerMultiprocessor", what);
    r.occupancy = double(r.blocksPerMultiprocessor * Manifest.threadsPerBlock) /
                  double(std::max(Context.maxThreadsPerMultiprocessor(), 1));
    result.push_back(r);
  }
  return result;
}

} // namespace convgen
