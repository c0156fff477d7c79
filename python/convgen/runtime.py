"""libconvgen.so's model API through ctypes (src/runtime/convgen.h): a generated
model's layers loaded once, launched by name on device pointers, reloaded after
regeneration."""
import ctypes
import os

from . import ConvgenError, find_library

_LIBRARIES = {}


def load_library(path=None):
    """The library, loaded once per path, with its signatures declared."""
    path = os.path.abspath(path or find_library())
    if path in _LIBRARIES:
        return _LIBRARIES[path]
    lib = ctypes.CDLL(path)
    handle, i64p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64)
    lib.convgen_model_load.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(handle)]
    lib.convgen_model_load_info.argtypes = [handle, ctypes.POINTER(ctypes.c_double),
                                            ctypes.POINTER(ctypes.c_int)]
    lib.convgen_model_launch.argtypes = [handle, ctypes.c_char_p, ctypes.c_uint64, ctypes.c_uint64,
                                         ctypes.c_int, ctypes.c_uint64]
    lib.convgen_model_reload.argtypes = [handle, ctypes.POINTER(ctypes.c_int)]
    lib.convgen_model_shape.argtypes = [handle, ctypes.c_char_p, i64p, i64p]
    lib.convgen_model_unread_channels.argtypes = [handle, ctypes.c_char_p, i64p, ctypes.c_int64,
                                                  i64p]
    lib.convgen_model_free.argtypes = [handle]
    lib.convgen_model_free.restype = None
    lib.convgen_last_error.restype = ctypes.c_char_p
    _LIBRARIES[path] = lib
    return lib


class ModelRuntime:
    """A generated model (its convgen-model.json) loaded on one device."""

    def __init__(self, manifest_path, device_index=0, library=None):
        self._lib = library or load_library()
        self.manifest_path = manifest_path
        handle = ctypes.c_void_p()
        self._check(self._lib.convgen_model_load(os.fsencode(manifest_path), device_index,
                                                 ctypes.byref(handle)))
        self._handle = handle

    def _check(self, status):
        if status != 0:
            raise ConvgenError(self._lib.convgen_last_error().decode(errors="replace"))

    def load_info(self):
        """(seconds, layers the driver JIT-compiled)."""
        seconds, jit = ctypes.c_double(0), ctypes.c_int(0)
        self._check(self._lib.convgen_model_load_info(self._handle, ctypes.byref(seconds),
                                                      ctypes.byref(jit)))
        return seconds.value, jit.value

    def launch(self, name, input_pointer, output_pointer, batch, stream=0):
        self._check(self._lib.convgen_model_launch(self._handle, name.encode(), input_pointer,
                                                   output_pointer, batch, stream))

    def reload(self):
        """After the model was regenerated: the number of layers reloaded."""
        count = ctypes.c_int(0)
        self._check(self._lib.convgen_model_reload(self._handle, ctypes.byref(count)))
        return count.value

    def shape(self, name):
        """((C, H, W) in, (C, H, W) out) per image."""
        inp, out = (ctypes.c_int64 * 3)(), (ctypes.c_int64 * 3)()
        self._check(self._lib.convgen_model_shape(self._handle, name.encode(), inp, out))
        return tuple(inp), tuple(out)

    def unread_channels(self, name):
        """The output channels the layer does not compute (nobody reads them)."""
        count = ctypes.c_int64(0)
        self._check(self._lib.convgen_model_unread_channels(self._handle, name.encode(), None, 0,
                                                            ctypes.byref(count)))
        channels = (ctypes.c_int64 * max(count.value, 1))()
        self._check(self._lib.convgen_model_unread_channels(self._handle, name.encode(), channels,
                                                            count.value, ctypes.byref(count)))
        return list(channels[:count.value])

    def close(self):
        if getattr(self, "_handle", None):
            self._lib.convgen_model_free(self._handle)
            self._handle = None

    def __del__(self):
        self.close()
