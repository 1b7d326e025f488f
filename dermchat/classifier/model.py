"""The image classifier's networks, in plain torch (no torchvision): a fine-tuned ImageNet EfficientNet-Lite0
(`backbone="efficientnet-lite0"`, the shipped default) and the compact from-scratch residual CNN it replaced
(`backbone="dermnet"`, kept for old weight files and fast tests). Both give the same `forward_all` outputs, so
calibration, Grad-CAM, the OOD gate and evaluation do not care which one they run.

The from-scratch CNN (128x96 by default):

Why this shape: plain 3x3 convolutions run far better per FLOP on CPU than depthwise ones, and
one to two residual blocks per stage keep a forward pass around 0.2 GFLOP so that a from-scratch
run fits in an hour on two cores. An auxiliary lesion-mask head (training only) gives the
network a dense signal about where the lesion is, which helps a model with no pretraining. It is fully
convolutional with global pooling, so a trained network can be fine-tuned at another input size
(`ModelConfig.input_size`, `train-classifier --init-from DIR --input-size 160x120`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dermchat.classifier import BACKBONES, HAM_CLASSES, LITE_BACKBONES


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network and its input normalisation."""

    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks: tuple[int, ...] = (1, 2, 2, 1)
    stem: int = 24
    num_classes: int = len(HAM_CLASSES)
    dropout: float = 0.2
    mean: tuple[float, float, float] = (0.76, 0.55, 0.58)
    std: tuple[float, float, float] = (0.14, 0.15, 0.17)
    classes: tuple[str, ...] = field(default_factory=lambda: HAM_CLASSES)
    input_size: tuple[int, int] = (128, 96)
    """(width, height) of the frames the network was trained on and expects; weights saved before this field
    existed were all 128x96, the default."""
    backbone: str = "dermnet"
    """"dermnet" (from scratch; files saved before this field existed) or "efficientnet-lite0/1/2" (ImageNet)."""
    colour_constancy: float = 0.0
    """Minkowski norm p of the Shades-of-Gray white balance the network applies to each frame before anything
    else (`shades_of_gray`); 0 (the default, and every file saved before this field existed) leaves colours as
    they are."""

    @classmethod
    def for_backbone(cls, backbone: str, **overrides: Any) -> ModelConfig:
        """Defaults that suit each backbone: Lite0 reads the native 200x150 HAM frame with its ImageNet input
        scaling ((x - 127) / 128), the from-scratch CNN its own 128x96 with dataset statistics."""
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
        if backbone in LITE_BACKBONES:
            base: dict[str, Any] = {
                "mean": (127 / 255,) * 3,
                "std": (128 / 255,) * 3,
                "input_size": (200, 150),
                "dropout": 0.3,
            }
            return cls(backbone=backbone, **{**base, **overrides})
        return cls(backbone=backbone, **overrides)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**fields)


def shades_of_gray(x: torch.Tensor, p: float) -> torch.Tensor:
    """White-balance each image of an NCHW batch in [0, 1] so its illuminant estimate is grey.

    Why: HAM10000 comes from two clinics with different dermatoscopes and lighting, and a phone photo has its own
    white balance; the same lesion arrives in different casts. Shades of Gray (Finlayson & Trezzi 2004) estimates
    the light as the per-channel Minkowski p-norm of the pixels (p=1 is grey-world, p=inf is max-RGB; p=6 is the
    usual choice in the ISIC challenge entries) and rescales each channel so the estimate is neutral, keeping the
    mean brightness. It is part of the network's forward pass, so training, ONNX, Grad-CAM and the chat all see
    the same correction.
    """
    x32 = x.float()
    illuminant = x32.clamp(min=1e-6).pow(p).mean(dim=(2, 3), keepdim=True).pow(1.0 / p)  # N,3,1,1
    gain = illuminant.mean(dim=1, keepdim=True) / illuminant.clamp(min=1e-6)
    return (x32 * gain).clamp(0.0, 1.0).to(x.dtype)


def normalise_input(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, colour_constancy: float) -> torch.Tensor:
    """The input scaling every network shares: optional white balance, then (x - mean) / std."""
    if colour_constancy > 0:
        x = shades_of_gray(x, colour_constancy)
    return (x - mean) / std


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.short: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.short(x), inplace=True)


class DermNet(nn.Module):
    """Residual CNN returning class logits; `forward_all` also gives the last feature map,
    the pooled embedding (for the out-of-distribution gate) and mask logits."""

    prefers_tta = True  # flip averaging at inference: cheap for one network, and dermoscopy has no handedness
    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1))
        self.stem = nn.Sequential(
            nn.Conv2d(3, config.stem, 3, 2, 1, bias=False),
            nn.BatchNorm2d(config.stem),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        c_in = config.stem
        for c_out, n in zip(config.widths, config.blocks):
            layers = [BasicBlock(c_in, c_out, 2)] + [BasicBlock(c_out, c_out, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(c_in, config.num_classes)
        self.mask_head = nn.Conv2d(config.widths[1], 1, 1)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Input is float in [0, 1], NCHW."""
        return normalise_input(x, self.mean, self.std, self.config.colour_constancy)

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.stem(self.normalise(x))
        mask_logits = None
        for i, stage in enumerate(self.stages):
            h = stage(h)
            if i == 1:
                mask_logits = self.mask_head(h)
        pooled = h.mean(dim=(2, 3))
        logits = self.head(self.dropout(pooled))
        assert mask_logits is not None
        return {"logits": logits, "features": h, "embedding": pooled, "mask_logits": mask_logits}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)["logits"]


class LiteNet(nn.Module):
    """EfficientNet-Lite (the size `config.backbone` names; ImageNet weights at the start of training) with a
    7-class head and the auxiliary lesion-mask head on its 1/8-resolution block (training signal about where the
    lesion is).

    `features` is the 1280-channel map of the last conv block (Grad-CAM), `embedding` its global average (the
    OOD gate's Mahalanobis space: ImageNet-trained features separate "not a dermoscopic lesion" far better than
    a network that never saw anything else)."""

    prefers_tta = False  # flip averaging doubles the cost; measured in the model card before turning it on
    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, config: ModelConfig, imagenet: bool = False) -> None:
        super().__init__()
        from dermchat.classifier.lite import EfficientNetLite, load_imagenet

        self.config = config
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1))
        self.net = EfficientNetLite(config.backbone, num_classes=config.num_classes)
        if imagenet:
            load_imagenet(self.net)
        self.mask_head = nn.Conv2d(self.net.tap_channels, 1, 1)
        self.dropout = nn.Dropout(config.dropout)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Input is float in [0, 1], NCHW."""
        return normalise_input(x, self.mean, self.std, self.config.colour_constancy)

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features, tap = self.net.forward_features(self.normalise(x))
        pooled = features.mean(dim=(2, 3))
        logits = self.net._fc(self.dropout(pooled))  # a fresh 1280 -> classes layer; ImageNet's is not loaded
        return {"logits": logits, "features": features, "embedding": pooled, "mask_logits": self.mask_head(tap)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)["logits"]


Network = DermNet | LiteNet


def build_model(config: ModelConfig | None = None, imagenet: bool = False) -> Network:
    """The network `config.backbone` names; `imagenet=True` starts a Lite size from its ImageNet checkpoint."""
    config = config or ModelConfig()
    if config.backbone in LITE_BACKBONES:
        return LiteNet(config, imagenet=imagenet)
    if config.backbone != "dermnet":
        raise ValueError(f"unknown backbone {config.backbone!r}; choose one of {', '.join(BACKBONES)}")
    return DermNet(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class Ensemble(nn.Module):
    """Several DermNets trained by the same command (same split, other seeds or schedules), averaged.

    Why: two small independently trained networks make partly different mistakes, and averaging their
    logits is a cheaper gain on two CPU cores than training one network twice as long. Logits are the
    mean of the members'; the embedding for the out-of-distribution gate is the members' embeddings side
    by side; feature map and mask logits (Grad-CAM, training head) come from the first member, so the heat
    map explains that member's share of the averaged logit. Flip test-time averaging is off by default for
    an ensemble: the members already average, and it would double the CPU time per image.
    """

    prefers_tta = False

    def __init__(self, members: list[Network]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        sizes = {(m.config.classes, m.config.num_classes) for m in members}
        if len(sizes) != 1:
            raise ValueError("ensemble members must predict the same classes")
        if len({m.config.input_size for m in members}) != 1:
            raise ValueError("ensemble members must take the same input size (they see one frame)")
        self.members = nn.ModuleList(members)
        self._networks = tuple(members)  # the same modules, typed (ModuleList items are plain Modules)

    @property
    def config(self) -> ModelConfig:
        return self._networks[0].config

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outs = [m.forward_all(x) for m in self._networks]
        return {
            "logits": torch.stack([o["logits"] for o in outs]).mean(dim=0),
            "features": outs[0]["features"],
            "embedding": torch.cat([o["embedding"] for o in outs], dim=1),
            "mask_logits": outs[0]["mask_logits"],
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)["logits"]


Classifier = DermNet | LiteNet | Ensemble


def _half_state(model: Network) -> dict[str, Any]:
    """float16 weights (negligible loss for inference; halves the committed file); BatchNorm running
    statistics stay float32."""
    return {
        k: (v.half() if v.is_floating_point() and "running" not in k else v).cpu()
        for k, v in model.state_dict().items()
    }


def _member_blob(model: Network) -> dict[str, Any]:
    return {"config": asdict(model.config), "state_dict": _half_state(model)}


def _build_member(blob: dict[str, Any]) -> Network:
    model = build_model(ModelConfig.from_dict(blob["config"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    return model.eval()


def save_model(model: Classifier, path: Path, extra: dict[str, Any] | None = None) -> None:
    """One file for a single network or an ensemble (``members``: one config + state dict each)."""
    if isinstance(model, Ensemble):
        blob: dict[str, Any] = {"members": [_member_blob(m) for m in model._networks]}
    else:
        blob = _member_blob(model)
    torch.save({**blob, "extra": extra or {}}, path)


def load_model(path: Path) -> tuple[Classifier, dict[str, Any]]:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model: Classifier
    if "members" in blob:
        model = Ensemble([_build_member(m) for m in blob["members"]]).eval()
    else:
        model = _build_member(blob)
    return model, dict(blob.get("extra") or {})


def predict_logits(model: Classifier, x: torch.Tensor, tta: bool | None = None) -> dict[str, torch.Tensor]:
    """Inference, with horizontal-flip averaging when `tta` (default: what the model prefers — on for a
    single network, where it is cheap and dermoscopy has no handedness; off for an ensemble)."""
    if tta is None:
        tta = getattr(model, "prefers_tta", True)
    out = model.forward_all(x)
    if not tta:
        return out
    flipped = model.forward_all(torch.flip(x, dims=[3]))
    return {
        "logits": (out["logits"] + flipped["logits"]) / 2,
        "embedding": (out["embedding"] + flipped["embedding"]) / 2,
        "features": out["features"],
        "mask_logits": out["mask_logits"],
    }


def uint8_to_input(pixels: torch.Tensor | np.ndarray) -> torch.Tensor:
    """NHWC uint8 (numpy or tensor) -> NCHW float in [0, 1]."""
    if isinstance(pixels, np.ndarray) and not pixels.flags.writeable:
        pixels = pixels.copy()  # cached arrays are read-only; torch warns on non-writable memory
    t = torch.as_tensor(pixels)
    if t.ndim == 3:
        t = t.unsqueeze(0)
    return t.permute(0, 3, 1, 2).float().div_(255.0)


CPU_BATCH = 64
"""Frames per forward pass on the CPU. A batch's activations at 320x240 are about 10 MB a frame, so 256 frames held
calibration at the end of training at 9.9 GB resident; 64 costs no speed on a few cores."""


@torch.no_grad()
def batched_inference(
    model: Classifier,
    pixels: Any,
    batch_size: int | None = None,
    tta: bool | None = None,
    progress: str | None = None,
) -> dict[str, torch.Tensor]:
    """Logits and pooled embeddings (on the CPU) for a whole uint8 NHWC array, batch by batch, on whichever device the
    model's weights are (a progress bar on stderr titled `progress` when given: a pass over thousands of frames takes
    minutes on two cores, seconds on a GPU). Default batch: 256 on a GPU, `CPU_BATCH` on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    batch_size = batch_size or (256 if device.type == "cuda" else CPU_BATCH)
    logits, embeddings = [], []
    starts: Iterable[int] = range(0, len(pixels), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=progress, mininterval=10, file=sys.stderr, leave=False)
    for start in starts:
        out = predict_logits(model, uint8_to_input(pixels[start : start + batch_size]).to(device), tta=tta)
        logits.append(out["logits"].float().cpu())
        embeddings.append(out["embedding"].float().cpu())
    return {"logits": torch.cat(logits), "embedding": torch.cat(embeddings)}
