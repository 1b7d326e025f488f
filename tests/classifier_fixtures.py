"""Shared helpers for the ham-cnn classifier tests: where the weights are, and non-skin test images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from dermchat.classifier.predictor import default_weights_dir, missing_weight_files


def weights_dir_or_skip() -> Path:
    """The shipped weights (or DERMCHAT_TEST_HAM_WEIGHTS); skip with the reason when they are absent."""
    path = Path(os.environ.get("DERMCHAT_TEST_HAM_WEIGHTS") or default_weights_dir())
    missing = missing_weight_files(path)
    if missing:
        pytest.skip(f"ham-cnn weights not found at {path} (missing {', '.join(missing)}); run train-classifier")
    return path


def document_image() -> Image.Image:
    """A white page with lines of black 'text': nothing like a dermoscopic frame."""
    img = Image.new("RGB", (600, 450), (250, 250, 248))
    draw = ImageDraw.Draw(img)
    rng = np.random.default_rng(1)
    for y in range(30, 430, 22):
        x = 30
        while x < 560:
            w = int(rng.integers(15, 70))
            draw.rectangle((x, y, min(x + w, 570), y + 10), fill=(20, 20, 20))
            x += w + int(rng.integers(8, 14))
    return img


def flat_wall_image() -> Image.Image:
    """A flat grey-blue painted wall with faint sensor noise."""
    rng = np.random.default_rng(2)
    base = np.array([120, 130, 150], dtype=np.float32)
    px = base + rng.normal(0, 2.0, size=(450, 600, 3))
    return Image.fromarray(np.clip(px, 0, 255).astype(np.uint8))


def random_pattern_image() -> Image.Image:
    """Saturated random colour blocks (a test card / toy), upscaled so the blocks are large."""
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, size=(9, 12, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((600, 450), Image.Resampling.NEAREST)
