"""Run convgen-generated layers inside PyTorch, on the GPU, through libconvgen.so.

    layer = ConvgenConv2d("generated/conv3.json")   # a manifest from `convgen --layer`
    model.conv3 = layer                             # replaces the nn.Conv2d
    y = model(x.cuda())                             # conv3 now runs convgen's kernels

The layer runs on torch's current device and stream, on contiguous NCHW
tensors of the type it was generated for (float32, or float16 with
`convgen --dtype f16`; `layer.dtype` says which), and includes the bias and the fused activation the layer was
generated with (so a following ReLU that convgen fused must be removed, or
be idempotent: ReLU after a fused ReLU changes nothing).
"""
import ctypes
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_LIBRARY = os.path.join(HERE, "..", "..", "build", "src", "libconvgen.so")


class ConvgenError(RuntimeError):
    pass


def load_library(path=None):
    """libconvgen.so: $CONVGEN_LIB, else the build tree's."""
    path = path or os.environ.get("CONVGEN_LIB") or DEFAULT_LIBRARY
    lib = ctypes.CDLL(os.path.abspath(path))
    lib.convgen_layer_load.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)]
    lib.convgen_layer_launch.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64,
                                         ctypes.c_int, ctypes.c_uint64]
    lib.convgen_layer_reload.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    lib.convgen_layer_shape.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64),
                                        ctypes.POINTER(ctypes.c_int64)]
    lib.convgen_layer_element_bytes.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    lib.convgen_layer_free.argtypes = [ctypes.c_void_p]
    lib.convgen_layer_free.restype = None
    lib.convgen_last_error.restype = ctypes.c_char_p
    return lib


class ConvgenConv2d(torch.nn.Module):
    """A generated conv layer as a module (inference only)."""

    def __init__(self, manifest_path, device=None, library=None):
        super().__init__()
        self._lib = library or load_library()
        # An int, "cuda:1" or a torch.device; the current device by default.
        device = torch.device("cuda", torch.cuda.current_device()) if device is None else (
            torch.device("cuda", device) if isinstance(device, int) else torch.device(device))
        if device.type != "cuda":
            raise ValueError(f"convgen layers run on a CUDA device, not {device}")
        self._device = torch.device("cuda", device.index if device.index is not None
                                    else torch.cuda.current_device())
        # The CUDA runtime (torch) must have created the primary context first.
        torch.cuda.init()
        handle = ctypes.c_void_p()
        # The runtime makes the device's primary context current; the guard
        # gives torch back its own device afterwards.
        with torch.cuda.device(self._device):
            self._check(self._lib.convgen_layer_load(os.fsencode(manifest_path), self._device.index,
                                                     ctypes.byref(handle)))
        self._handle = handle
        self._read_shape()

    def _read_shape(self):
        inp, out = (ctypes.c_int64 * 3)(), (ctypes.c_int64 * 3)()
        self._check(self._lib.convgen_layer_shape(self._handle, inp, out))
        self.input_chw, self.output_chw = tuple(inp), tuple(out)
        element = ctypes.c_int(0)
        self._check(self._lib.convgen_layer_element_bytes(self._handle, ctypes.byref(element)))
        self.dtype = torch.float16 if element.value == 2 else torch.float32

    def _check(self, status):
        if status != 0:
            raise ConvgenError(self._lib.convgen_last_error().decode(errors="replace"))

    def reload(self):
        """After regeneration; True if only the values changed."""
        values_only = ctypes.c_int(0)
        with torch.cuda.device(self._device):
            # Launches still queued on any stream read the old weights and
            # module: they finish before either is replaced.
            torch.cuda.synchronize(self._device)
            self._check(self._lib.convgen_layer_reload(self._handle, ctypes.byref(values_only)))
        self._read_shape()  # a new round may come with a new geometry
        return bool(values_only.value)

    def forward(self, x):
        if x.device != self._device or x.dtype != self.dtype or x.dim() != 4:
            raise ValueError(f"expected {self.dtype} NCHW on {self._device}, got {x.dtype} "
                             f"{tuple(x.shape)} on {x.device}")
        if tuple(x.shape[1:]) != self.input_chw:
            raise ValueError(f"expected input (N, {', '.join(map(str, self.input_chw))}), "
                             f"got {tuple(x.shape)}")
        if torch.is_grad_enabled() and x.requires_grad:
            raise RuntimeError("ConvgenConv2d is inference-only: run it under torch.no_grad()")
        y = torch.empty((x.shape[0],) + self.output_chw, device=x.device, dtype=self.dtype)
        if x.shape[0] == 0:
            return y
        x = x.contiguous()
        with torch.cuda.device(self._device):
            stream = torch.cuda.current_stream(x.device).cuda_stream
            self._check(self._lib.convgen_layer_launch(self._handle, x.data_ptr(), y.data_ptr(),
                                                       x.shape[0], stream))
        return y

    def __del__(self):
        handle = getattr(self, "_handle", None)
        if handle:
            self._lib.convgen_layer_free(handle)
            self._handle = None
