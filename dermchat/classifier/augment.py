"""Batched augmentations in plain torch (no torchvision here): one affine warp per image for
rotation, scale, translation and flips, applied identically to the lesion mask, then colour jitter.

Why these: dermoscopy has no canonical orientation (any rotation or flip is a valid image), zoom
varies between devices, and colour differs between dermatoscopes and lighting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import overload

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class AugmentConfig:
    max_rotation_deg: float = 180.0
    scale_range: tuple[float, float] = (0.85, 1.25)
    max_translate: float = 0.08
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.25
    channel_gain: float = 0.05


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    """Drawn on the CPU generator whatever device the images are on, so a seed gives the same augmentations on a
    GPU as on the CPU (and the generator's state fits in a checkpoint)."""
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def affine_warp(
    images: torch.Tensor, masks: torch.Tensor | None, cfg: AugmentConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Random rotation/zoom/shift/flip; images NCHW float, masks N1HW float."""
    n, _, h, w = images.shape
    angle = _uniform(n, -cfg.max_rotation_deg, cfg.max_rotation_deg, gen) * math.pi / 180
    zoom = _uniform(n, *cfg.scale_range, gen)
    flip_x = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    flip_y = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # Rotate in pixel space, not in [-1, 1] normalised space, so a 4:3 frame is not sheared.
    aspect = w / h
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * flip_x
    theta[:, 0, 1] = -sin / aspect * flip_y
    theta[:, 1, 0] = sin * aspect * flip_x
    theta[:, 1, 1] = cos * flip_y
    theta[:, 0, 2] = _uniform(n, -cfg.max_translate, cfg.max_translate, gen)
    theta[:, 1, 2] = _uniform(n, -cfg.max_translate, cfg.max_translate, gen)
    grid = F.affine_grid(theta.to(images.device, images.dtype), [n, 1, h, w], align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    out_masks = None
    if masks is not None:
        out_masks = F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out, out_masks


def colour_jitter(images: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation and a small per-channel gain (white balance)."""
    n = images.shape[0]
    b = _uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, gen).view(n, 1, 1, 1)
    c = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, gen).view(n, 1, 1, 1)
    s = _uniform(n, 1 - cfg.saturation, 1 + cfg.saturation, gen).view(n, 1, 1, 1)
    g = 1 + cfg.channel_gain * (2 * torch.rand(n, 3, 1, 1, generator=gen) - 1)
    b, c, s, g = (t.to(images.device, images.dtype) for t in (b, c, s, g))
    x = images * b * g
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * c + mean
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * s + grey
    return x.clamp_(0.0, 1.0)


@overload
def augment_batch(
    images: torch.Tensor, masks: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]: ...
@overload
def augment_batch(
    images: torch.Tensor, masks: None, cfg: AugmentConfig, gen: torch.Generator
) -> tuple[torch.Tensor, None]: ...
def augment_batch(
    images: torch.Tensor, masks: torch.Tensor | None, cfg: AugmentConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Warp, then colour-jitter; the mask (when given) gets the same warp, so a mask in means a mask out."""
    images, masks = affine_warp(images, masks, cfg, gen)

    return colour_jitter(images, cfg, gen), masks
