#!/usr/bin/python3
"""Writes torch_conv2d.npz (committed; rerun to refresh): convolutions computed
by torch.nn.functional.conv2d in float64, for the reference convolution's test.

Each case i holds float32 arrays: geometry_i = [batch, C, H, W, K, kh, kw,
stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, activation (0 none,
1 relu, 2 relu6), has_bias], input_i, weight_i, bias_i, and output_i: torch's
float64 result after bias and activation, rounded to float32.
"""
import os

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))

# batch, C, H, W, K, (kh, kw), stride, padding, dilation, groups, activation, bias
CASES = [
    (1, 3, 5, 5, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, 0, True),
    (2, 4, 7, 6, 6, (3, 3), (2, 2), (0, 0), (1, 1), 2, 1, True),
    (1, 3, 4, 9, 3, (1, 7), (1, 1), (0, 3), (1, 1), 3, 2, True),
    (2, 5, 9, 8, 2, (7, 1), (3, 3), (3, 0), (2, 1), 1, 0, False),
    (1, 6, 5, 5, 6, (1, 1), (2, 2), (0, 0), (1, 1), 3, 1, True),
    (3, 2, 11, 7, 4, (5, 5), (2, 1), (2, 2), (2, 2), 1, 2, True),
    (1, 8, 6, 6, 8, (3, 3), (1, 1), (1, 1), (1, 1), 8, 0, True),
]


def main():
    generator = torch.Generator().manual_seed(20261121)
    arrays = {}
    for i, (n, c, h, w, k, kernel, stride, padding, dilation, groups, activation, bias) in enumerate(CASES):
        x = torch.rand((n, c, h, w), generator=generator, dtype=torch.float32) * 4 - 2
        weight = torch.rand((k, c // groups) + kernel, generator=generator, dtype=torch.float32) * 4 - 2
        b = torch.rand((k,), generator=generator, dtype=torch.float32) * 2 - 1
        y = F.conv2d(x.double(), weight.double(), b.double() if bias else None,
                     stride=stride, padding=padding, dilation=dilation, groups=groups)
        if activation == 1:
            y = F.relu(y)
        elif activation == 2:
            y = F.relu6(y)
        arrays[f"geometry_{i}"] = np.array(
            [n, c, h, w, k, *kernel, *stride, *padding, *dilation, groups, activation, int(bias)],
            dtype=np.float32)
        arrays[f"input_{i}"] = x.numpy()
        arrays[f"weight_{i}"] = weight.numpy()
        arrays[f"bias_{i}"] = b.numpy()
        arrays[f"output_{i}"] = y.float().numpy()
    np.savez(os.path.join(HERE, "torch_conv2d.npz"), **arrays)


if __name__ == "__main__":
    main()
