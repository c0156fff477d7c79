#include "codegen/OperatorTemplate.h"

#include "support/Hash.h"

extern const char convgen_template_conv2d_direct[];
extern const unsigned long convgen_template_conv2d_direct_size;

namespace convgen {

const OperatorTemplate &directConvTemplate() {
  static const OperatorTemplate conv = [] {
    OperatorTemplate t;
    t.name = "conv2d_direct";
    t.irText = std::string_view(convgen_template_conv2d_direct, convgen_template_conv2d_direct_size);
    t.id = t.name + "@" + contentHash(t.irText);
    t.kernelName = "convgen_conv2d";
    t.specGlobal = "convgen_spec";
    t.channelTableGlobal = "convgen_input_channel_used";
    t.zeroPageGlobal = "convgen_zero_page";
    return t;
  }();
  return conv;
}

} // namespace convgen
