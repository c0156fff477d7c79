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

/// The file a module is loaded from: its fatbinary, else its PTX.
const std::filesystem::path &imageFile(const ManifestModule &module) {
  return module.fatbinFile.empty() ? module.ptxFile : module.fatbinFile;
}

/// Every module's image, in order.
std::vector<std::string> readImages(const LayerManifest &manifest) {
  std::vector<std::string> images;
  for (const ManifestModule &module : manifest.modules)
    images.push_back(readWholeFile(imageFile(module)));
  return images;
}

std::string smName(int sm) { return "sm_" + std::to_string(sm); }

} // namespace

/// A layer's code on the device: its modules and kernels, and how it got there.
struct LayerRuntime::LoadedModules {
  std::vector<std::unique_ptr<CudaModule>> modules;
  std::vector<CUfunction> functions; ///< per manifest kernel
  LoadedCode code;                   ///< compiled if any module was
  double seconds = 0;
  /// Where the layer has several kernels: a stream for each but the first,
  /// and an event for the fork and one per side stream for the join.
  std::vector<CudaStream> sideStreams;
  std::vector<CudaEvent> events;

  /// Loads \p images (the manifest's modules'), timing the loads (with the
  /// JIT, where there is one). Throws as CudaModule does.
  LoadedModules(const CudaContext &context, const LayerManifest &manifest,
                const std::vector<std::string> &images) {
    const std::string what = "layer '" + manifest.layer + "'";
    auto start = std::chrono::steady_clock::now();
    for (size_t m = 0; m < images.size(); ++m) {
      LoadedCode moduleCode = chooseCode(images[m], context.computeCapability(),
                                         imageFile(manifest.modules[m]).string());
      if (m == 0 || (moduleCode.jitCompiled && !code.jitCompiled))
        code = moduleCode;
      modules.push_back(std::make_unique<CudaModule>(context, images[m], what));
    }
    for (const ManifestKernel &kernel : manifest.kernels)
      functions.push_back(modules[kernel.module]->function(kernel.symbol));
    for (size_t i = 1; i < functions.size(); ++i)
      sideStreams.emplace_back(context, "cuStreamCreate", "a side stream of " + what);
    for (size_t i = 0; i < functions.size() && functions.size() > 1; ++i)
      events.emplace_back(context, "cuEventCreate", "an event of " + what);
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
};

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
  Images = readImages(Manifest);
  std::vector<float> values = readWeights(Manifest);
  Code = std::make_unique<LoadedModules>(Context, Manifest, Images);
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
    auto [pointer, bytes] = Code->modules[kernel.module]->global(kernel.weightsSymbol);
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
  const CudaDriver &driver = Context.driver();
  // Launches are the hot path: a message is made only for a call that failed.
  auto check = [&](cuda::CUresult result, const char *api, auto describe) {
    if (result != CUDA_SUCCESS)
      driver.check(result, api, describe());
  };
  CUdeviceptr bias = Manifest.biasCount ? Weights.pointer() + size_t(Manifest.weightsCount) * 4 : 0;
  auto launchKernel = [&](size_t i, CUstream on) {
    const ManifestKernel &kernel = Manifest.kernels[i];
    CUdeviceptr weights = Weights.pointer() + size_t(kernel.weightsOffsetBytes);
    int32_t images = batch;
    void *parameters[] = {&input, &weights, &bias, &output, &images};
    check(driver.cuLaunchKernel(Code->functions[i], unsigned(gridX), unsigned(kernel.gridY), 1,
                                unsigned(Manifest.blockX), unsigned(Manifest.blockY), 1, 0, on,
                                parameters, nullptr),
          "cuLaunchKernel",
          [&] { return "launching " + kernel.symbol + " for " + std::to_string(batch) + " images"; });
  };
  const size_t kernels = Code->functions.size();
  if (kernels == 1) {
    launchKernel(0, stream);
    return;
  }
  // The kernels write disjoint output channels, so they run at once: each
  // but the first on a side stream that waits for what \p stream queued
  // before, and \p stream waits for them all. At batch 1 a kernel of a
  // split layer fills a fraction of the GPU; one after another they would
  // add up their latencies.
  auto forking = [&] { return "forking layer '" + Manifest.layer + "'"; };
  auto joining = [&] { return "joining layer '" + Manifest.layer + "'"; };
  check(driver.cuEventRecord(Code->events[0].get(), stream), "cuEventRecord", forking);
  for (size_t i = 1; i < kernels; ++i) {
    CUstream side = Code->sideStreams[i - 1].get();
    check(driver.cuStreamWaitEvent(side, Code->events[0].get(), 0), "cuStreamWaitEvent", forking);
    launchKernel(i, side);
    check(driver.cuEventRecord(Code->events[i].get(), side), "cuEventRecord", joining);
  }
  launchKernel(0, stream);
  for (size_t i = 1; i < kernels; ++i)
    check(driver.cuStreamWaitEvent(stream, Code->events[i].get(), 0), "cuStreamWaitEvent", joining);
}

LayerRuntime::~LayerRuntime() = default;

const LoadedCode &LayerRuntime::loadedCode() const { return Code->code; }

double LayerRuntime::loadSeconds() const { return Code->seconds; }

LayerRuntime::Reload LayerRuntime::reload() {
  LayerManifest manifest = readLayerManifest(Manifest.path);
  std::vector<std::string> images = readImages(manifest);
  std::vector<float> values = readWeights(manifest);
  if (images == Images && manifest.weightPath == Manifest.weightPath) {
    Manifest = std::move(manifest);
    uploadValues(values);
    return Reload::ValuesOnly;
  }
  // New code: load it completely before anything of the old is released.
  auto code = std::make_unique<LoadedModules>(Context, manifest, images);
  DeviceBuffer weights(Context, values.size() * 4, "the weights of layer '" + manifest.layer + "'");
  Code = std::move(code);
  Weights = std::move(weights);
  Manifest = std::move(manifest);
  Images = std::move(images);
  uploadValues(values);
  return Reload::Module;
}

std::vector<KernelResources> LayerRuntime::resources() const {
  const CudaDriver &driver = Context.driver();
  std::vector<KernelResources> result;
  for (size_t i = 0; i < Code->functions.size(); ++i) {
    KernelResources r;
    r.symbol = Manifest.kernels[i].symbol;
    const std::string what = "querying " + r.symbol;
    driver.check(driver.cuFuncGetAttribute(&r.registers, CU_FUNC_ATTRIBUTE_NUM_REGS, Code->functions[i]),
                 "cuFuncGetAttribute", what);
    driver.check(driver.cuFuncGetAttribute(&r.localBytes, CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, Code->functions[i]),
                 "cuFuncGetAttribute", what);
    driver.check(driver.cuFuncGetAttribute(&r.sharedBytes, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, Code->functions[i]),
                 "cuFuncGetAttribute", what);
    driver.check(driver.cuOccupancyMaxActiveBlocksPerMultiprocessor(
                     &r.blocksPerMultiprocessor, Code->functions[i], int(Manifest.threadsPerBlock), 0),
                 "cuOccupancyMaxActiveBlocksPerMultiprocessor", what);
    r.occupancy = double(r.blocksPerMultiprocessor * Manifest.threadsPerBlock) /
                  double(std::max(Context.maxThreadsPerMultiprocessor(), 1));
    result.push_back(r);
  }
  return result;
}

} // namespace convgen
