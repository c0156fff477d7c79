// The operator templates compiled into convgen: their LLVM IR (built from
// templates/*.cu at build time and embedded), kernel symbol, and an id that
// changes whenever the IR does (for manifests and caches).
#pragma once

#include <string>
#include <string_view>

namespace convgen {

struct OperatorTemplate {
  std::string name;       ///< "conv2d_direct"
  std::string id;         ///< name + "@" + hash of the IR text
  std::string_view irText;
  std::string kernelName; ///< the __global__ function
  std::string specGlobal; ///< the device global holding the specialisation constants
  /// The device array of which input channels each channel block reads.
  std::string channelTableGlobal;
  /// The device array padded input positions read instead of the input.
  std::string zeroPageGlobal;
};

/// templates/conv2d_direct.cu: direct convolution, BK output channels x
/// BN x BH x BW outputs per thread.
const OperatorTemplate &directConvTemplate();

} // namespace convgen
