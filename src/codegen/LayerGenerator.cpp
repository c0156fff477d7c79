#include "codegen/LayerGenerator.h"

#include "support/Error.h"

namespace convgen {

void generateLayer(const ConvLayer &layer, const GenerateOptions &) {
  // The IR templates, WeightMap analysis and zero-weight elimination land with
  // issue #3. Until then, fail clearly after the layer has been read and
  // validated, and before anything is written.
  throw UnsupportedError("layer '" + layer.name +
                         "': code generation is not implemented yet (issue #3); the layer was "
                         "read and validated, no files were written");
}

} // namespace convgen
