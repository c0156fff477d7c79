"""convgen from Python: export a pruned PyTorch model, generate its layers with
the convgen tool, and run them in the model where they are faster.

    import convgen.torch
    convgen.torch.export(model, example_input, "work/model.onnx")
    convgen.torch.generate("work/model.onnx", "work/generated")
    model, table = convgen.torch.load(model, "work/generated", example_input)

The package lives in the source tree (python/convgen) and uses what the build
made there: the convgen tool and libconvgen.so, or the ones $CONVGEN_TOOL and
$CONVGEN_LIB name. scripts/setup.sh makes it importable (a .pth file); otherwise
put python/ on sys.path.
"""
import os
import shutil

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.path.join(PACKAGE_DIR, "..", ".."))
BUILD_DIR = os.path.join(SOURCE_DIR, "build")


class ConvgenError(RuntimeError):
    """A convgen tool or runtime failure, with its one-line message."""


def find_tool():
    """The convgen tool: $CONVGEN_TOOL, the build tree's, or `convgen` on PATH."""
    for candidate in (os.environ.get("CONVGEN_TOOL"), os.path.join(BUILD_DIR, "tools", "convgen"),
                      shutil.which("convgen")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise ConvgenError("no convgen tool: build it (scripts/build.sh) or set CONVGEN_TOOL")


def find_library():
    """libconvgen.so: $CONVGEN_LIB, else the build tree's."""
    for candidate in (os.environ.get("CONVGEN_LIB"), os.path.join(BUILD_DIR, "src", "libconvgen.so")):
        if candidate and os.path.isfile(candidate):
            return candidate
    raise ConvgenError("no libconvgen.so: build it (scripts/build.sh) or set CONVGEN_LIB")
