#include "support/DeviceLayers.h"

#include "runtime/FatbinaryImage.h"

#include "exec/GridRunner.h"
#include "hostcuda/HostCuda.h"
#include "runtime/CudaDriver.h"
#include "runtime/CudaDriverApi.h"
#include "support/AtomicFile.h"

#include <dlfcn.h>
#include <gtest/gtest.h>

namespace convgen::test {

namespace {

/// The host driver's registration entry points, if it is this process's driver.
struct HostDriverApi {
  decltype(&convgen_hostcuda_register) registerModule = nullptr;
  decltype(&convgen_hostcuda_unregister) unregisterModule = nullptr;
  decltype(&convgen_hostcuda_is_device_memory) isDeviceMemory = nullptr;
  decltype(&convgen_hostcuda_counters) counters = nullptr;
  decltype(&convgen_hostcuda_fail_next) failNext = nullptr;
  explicit operator bool() const { return registerModule != nullptr; }
};

const HostDriverApi &hostDriver() {
  static const HostDriverApi api = [] {
    HostDriverApi found;
    // The library CudaDriver loads; dlopen hands back the same instance.
    void *library = ::dlopen(CudaDriver::driverLibrary().c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!library)
      return found;
    auto symbol = [library](auto &function, const char *name) {
      function = reinterpret_cast<std::remove_reference_t<decltype(function)>>(::dlsym(library, name));
      return function != nullptr;
    };
    if (!symbol(found.registerModule, "convgen_hostcuda_register") ||
        !symbol(found.unregisterModule, "convgen_hostcuda_unregister") ||
        !symbol(found.isDeviceMemory, "convgen_hostcuda_is_device_memory") ||
        !symbol(found.counters, "convgen_hostcuda_counters") ||
        !symbol(found.failNext, "convgen_hostcuda_fail_next"))
      return HostDriverApi{};
    return found;
  }();
  return api;
}

} // namespace

struct DeviceLayers::Registration {
  /// The PTX texts the host code is registered under: each module's PTX
  /// file, and the PTX inside its fatbinary, where there is one (the
  /// fatbinary tool strips comments and indentation, and the double finds a
  /// fatbinary's host code by that text).
  std::vector<std::string> ptxTexts;
  ConvGeometry geometry;
  bool hasBias = false;
  GeneratedLayer info;
  std::unique_ptr<HostKernel> host;
  ConvgenHostModule module{};

  /// Checks the launch against what the generator knows of the layer, then
  /// runs every block. A problem fails the test and the launch.
  const char *launch(const std::string &symbol, const unsigned grid[3], const unsigned block[3],
                     void **parameters) {
    auto kernel = std::find_if(info.kernels.begin(), info.kernels.end(),
                               [&](const LayerKernel &k) { return k.symbol == symbol; });
    if (kernel == info.kernels.end())
      return refuse("launch of " + symbol + ", which the generator did not make");
    auto pointer = [parameters](int i) { return *static_cast<cuda::CUdeviceptr *>(parameters[i]); };
    const cuda::CUdeviceptr input = pointer(0), weights = pointer(1), bias = pointer(2),
                            output = pointer(3);
    const int32_t batch = *static_cast<int32_t *>(parameters[4]);
    if (batch < 1)
      return refuse(symbol + " launched for " + std::to_string(batch) + " images");
    LaunchShape expected = launchShape(geometry, info.tiling, batch, kernel->channelBlocks);
    if (grid[0] != expected.gridX || grid[1] != expected.gridY || grid[2] != 1 ||
        block[0] != expected.blockX || block[1] != expected.blockY || block[2] != 1)
      return refuse(symbol + " launched on grid " + std::to_string(grid[0]) + "x" +
                    std::to_string(grid[1]) + "x" + std::to_string(grid[2]) + " of " +
                    std::to_string(block[0]) + "x" + std::to_string(block[1]) +
                    " threads; the generator says " + std::to_string(expected.gridX) + "x" +
                    std::to_string(expected.gridY) + "x1 of " + std::to_string(expected.blockX) +
                    "x" + std::to_string(expected.blockY));
    HW out = geometry.outSize();
    const size_t element = size_t(dtypeBytes(info.dtype));
    const size_t inputBytes = size_t(batch * geometry.inChannels * geometry.inSize.h *
                                     geometry.inSize.w) * element;
    const size_t outputBytes = size_t(batch * geometry.outChannels * out.h * out.w) * element;
    const HostDriverApi &api = hostDriver();
    if (!api.isDeviceMemory(input, inputBytes))
      return refuse("the input is not " + std::to_string(inputBytes) + " bytes of device memory");
    if (!api.isDeviceMemory(output, outputBytes))
      return refuse("the output is not " + std::to_string(outputBytes) + " bytes of device memory");
    // The weights argument points at the kernel's slice of the packed array
    // (the whole tensor when dense), which only the global path and the dense
    // fallback read; it is checked wherever there is one.
    if (kernel->weightsCount > 0 &&
        !api.isDeviceMemory(weights, size_t(kernel->weightsCount) * 4))
      return refuse("the weights of " + symbol + " are not its " +
                    std::to_string(kernel->weightsCount) + " floats of device memory");
    if (hasBias && !api.isDeviceMemory(bias, size_t(geometry.outChannels) * 4))
      return refuse("the bias is not " + std::to_string(geometry.outChannels) +
                    " floats of device memory");
    ConvKernelArguments arguments;
    arguments.input = reinterpret_cast<const void *>(input);
    arguments.weights = reinterpret_cast<const float *>(weights);
    arguments.bias = reinterpret_cast<const float *>(bias);
    arguments.output = reinterpret_cast<void *>(output);
    arguments.batch = batch;
    Dim3 gridSize{grid[0], grid[1], grid[2]}, blockSize{block[0], block[1], block[2]};
    std::vector<Dim3> blocks = allBlocks(gridSize);
    runBlocks(*host, gridSize, blockSize, blocks, arguments, 0, symbol);
    return nullptr;
  }

  const char *refuse(const std::string &problem) {
    LaunchProblem = info.name + ": " + problem;
    ADD_FAILURE() << "host CUDA driver: " << LaunchProblem;
    return LaunchProblem.c_str();
  }
  std::string LaunchProblem;
};

DeviceLayers::DeviceLayers() = default;

DeviceLayers::~DeviceLayers() {
  for (const auto &registration : Registered)
    for (const std::string &ptx : registration->ptxTexts)
      hostDriver().unregisterModule(ptx.c_str());
}

bool DeviceLayers::onHostDriver() { return bool(hostDriver()); }

ConvgenHostCudaCounters hostDriverCounters() {
  ConvgenHostCudaCounters counters{};
  hostDriver().counters(&counters);
  return counters;
}

void failNextHostDriverCall(const char *api, int result) { hostDriver().failNext(api, result); }

GeneratedLayer DeviceLayers::generate(KernelGenerator &generator, const ConvLayer &layer) {
  if (!onHostDriver())
    return generator.generate(layer);
  BuiltKernel built;
  GeneratedLayer generated = generator.generate(layer, built);
  auto registration = std::make_unique<Registration>();
  const std::filesystem::path stem =
      generated.manifestPath.parent_path() / outputStemFor(layer.name);
  const size_t modules = generated.modules.size();
  for (size_t m = 0; m < modules; ++m) {
    registration->ptxTexts.push_back(
        readWholeFile(stem.string() + moduleFileSuffix(m, modules, ".ptx")));
    if (generated.modules[m].fatbinBytes > 0) {
      const std::string fatbin = readWholeFile(stem.string() + moduleFileSuffix(m, modules, ".fatbin"));
      const std::vector<FatbinaryImage> images = readFatbinary(fatbin, layer.name + ".fatbin");
      if (const FatbinaryImage *ptx = ptxImage(images))
        registration->ptxTexts.emplace_back(ptx->payload);
    }
  }
  registration->geometry = layer.geometry;
  registration->hasBias = !layer.bias.empty();
  registration->info = generated;
  std::vector<std::string> symbols;
  for (const LayerKernel &kernel : generated.kernels)
    symbols.push_back(kernel.symbol);
  registration->host = HostKernel::compile(*built.module, symbols, "layer '" + layer.name + "'");
  registration->module.user = registration.get();
  registration->module.launch = [](void *user, const char *symbol, const unsigned grid[3],
                                   const unsigned block[3], void **parameters) {
    return static_cast<Registration *>(user)->launch(symbol, grid, block, parameters);
  };
  registration->module.global = [](void *user, const char *symbol, size_t *bytes) -> void * {
    auto *self = static_cast<Registration *>(user);
    try {
      std::span<std::byte> memory = self->host->global(symbol);
      *bytes = memory.size();
      return memory.data();
    } catch (const std::exception &) {
      return nullptr;
    }
  };
  for (const std::string &ptx : registration->ptxTexts)
    hostDriver().registerModule(ptx.c_str(), &registration->module);
  Registered.push_back(std::move(registration));
  return generated;
}

} // namespace convgen::test
