"""Grad-CAM heat map for the clinician view: which regions pushed the model towards its top class.

Why Grad-CAM on the last stage: it needs one forward pass and the gradient of the head alone, and its
coarse 3x4 grid, upsampled, is honest about the resolution the classifier really reasons at.
The overlay is drawn with numpy + Pillow only (no matplotlib in the serving path).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

    from dermchat.classifier.model import Classifier


def grad_cam(model: Classifier, x: torch.Tensor, class_index: int) -> np.ndarray:
    """Grad-CAM map (H, W) in [0, 1] at the input resolution for one image `x` (1, 3, H, W)."""
    import torch
    from torch.nn import functional as F

    model.eval()
    with torch.enable_grad():
        x = x.detach().requires_grad_(False)
        out = model.forward_all(x)
        feats = out["features"]
        # Only d(logit)/d(features): autograd.grad runs the backward of the head alone, not of every weight of
        # the backbone as .backward() did (most of the heat map's cost), and writes no shared .grad buffers.
        (grads,) = torch.autograd.grad(out["logits"][0, class_index], feats)
        weights = grads.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * feats).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam_np = cam.detach().numpy()
    peak = float(cam_np.max())
    return cam_np / peak if peak > 0 else cam_np


def _jet(values: np.ndarray) -> np.ndarray:
    """The classic blue-cyan-yellow-red ramp for values in [0, 1] -> uint8 RGB."""
    v = np.clip(values, 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def overlay(frame: Image.Image, cam: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """Blend the heat map over `frame` (any size; the map is resized to it)."""
    heat = Image.fromarray((np.clip(cam, 0, 1) * 255).astype(np.uint8)).resize(frame.size, Image.Resampling.BILINEAR)
    colours = Image.fromarray(_jet(np.asarray(heat, dtype=np.float32) / 255.0))
    return Image.blend(frame.convert("RGB"), colours, alpha)


def save_overlay(frame: Image.Image, cam: np.ndarray, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    overlay(frame, cam).save(path, format="PNG")
    return path
