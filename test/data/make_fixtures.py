#!/usr/bin/python3
"""Writes the numpy-made fixtures in this directory (committed; rerun to refresh).

They pin the reader to what numpy itself writes: np.savez and
np.savez_compressed archives (numpy writes zip64 extra fields on every member),
and .npy headers of format versions 1.0, 2.0 and 3.0. The values are simple
functions of the index so the tests can check them exactly.
"""
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def arrays():
    return {
        "conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) - 11.5,
        "half": np.array([0.5, -2.0, 65504.0, 2.0**-24, np.inf], dtype=np.float16),
        "mask_bool": np.array([[True, False], [False, True]]),
        "mask_u8": np.array([0, 1, 1, 0], dtype=np.uint8),
        "scalar": np.float32(3.25),
    }


def main():
    np.savez(os.path.join(HERE, "numpy_savez.npz"), **arrays())
    np.savez_compressed(os.path.join(HERE, "numpy_savez_compressed.npz"), **arrays())
    weight = arrays()["conv.weight"]
    for major in (1, 2, 3):
        with open(os.path.join(HERE, f"numpy_v{major}.npy"), "wb") as f:
            np.lib.format.write_array(f, weight, version=(major, 0))


if __name__ == "__main__":
    main()
