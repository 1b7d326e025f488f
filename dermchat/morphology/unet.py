"""A tiny U-Net for lesion outlines (imported only when a segmenter is loaded or trained: it imports torch).

Why this shape: four 2x downsamplings of a 128x96 input reach an 8x6 bottleneck whose receptive field covers the
whole frame (large lesions fill it), the skip connections keep the edge where it is, and ``base`` channels of 12
make a 0.3 M-parameter network that runs in a few milliseconds on one CPU thread.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 conv + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class TinyUNet(nn.Module):
    """Input N x 3 x H x W (pixels scaled to about [-1, 1], H and W multiples of 16); output N x 1 x H x W logits."""

    def __init__(self, base: int = 12, depth: int = 4) -> None:
        super().__init__()
        widths = [base * 2**i for i in range(depth + 1)]
        self.base, self.depth = base, depth
        self.down = nn.ModuleList([_block(3, widths[0])] + [_block(widths[i], widths[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth))]
        )
        self.merge = nn.ModuleList([_block(2 * widths[i], widths[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        out: torch.Tensor = self.head(x)
        return out
