"""The learned lesion outline: a tiny U-Net trained on the HAM10000 expert masks (``dermchat/weights/lesion_unet``).

Why learned: the classical outline (:mod:`dermchat.morphology.outline`) tops out near median IoU 0.88 against the
expert masks, and its area lands within 15% of the expert's for only two thirds of the lesions; shape descriptors
inherit that noise. The network is trained with ``python -m dermchat train-segmenter`` on the classifier split's
*training* lesions only, chosen on its calibration lesions, so ``bench-morphology`` (validation lesions) stays a
held-out measure.

Loading is lazy, idempotent and thread-safe; torch is imported inside :meth:`LesionSegmenter.load`. When the weights
are missing or torch cannot load them, :func:`default_segmenter` returns ``None`` and callers fall back to the
classical outline.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from dermchat.morphology.outline import MIN_PIXELS

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights" / "lesion_unet"
MODEL_FILE = "model.pt"
INPUT_SIZE = (128, 96)
"""(width, height) the network reads: landscape 4:3 like HAM10000; portrait photos are transposed first."""

THRESHOLD = 0.5
"""Lesion probability above which a pixel is lesion (after the map is scaled back to the photo's size)."""


def scale_pixels(batch: Any) -> Any:
    """uint8 N x H x W x 3 tensor -> float N x 3 x H x W in [-1, 1], what the network reads (training and use)."""
    return (batch.permute(0, 3, 1, 2).float() - 127.5) / 127.5


class LesionSegmenter:
    """Lesion probability maps and masks from the shipped (or a given) tiny U-Net."""

    def __init__(self, folder: Path = WEIGHTS_DIR) -> None:
        self.folder = Path(folder)
        self._net: Any = None
        self._lock = threading.Lock()
        self.info: dict[str, Any] = {}

    @property
    def available(self) -> bool:
        return (self.folder / MODEL_FILE).is_file()

    def load(self) -> LesionSegmenter:
        """Build the network and read its weights once (thread-safe)."""
        if self._net is not None:
            return self
        with self._lock:
            if self._net is None:
                self._net = self._read()
        return self

    def _read(self) -> Any:
        import torch

        from dermchat.morphology.unet import TinyUNet

        state = torch.load(self.folder / MODEL_FILE, map_location="cpu", weights_only=True)
        net = TinyUNet(**state["config"])
        net.load_state_dict({k: v.float() for k, v in state["weights"].items()})
        self.info = {k: v for k, v in state.items() if k not in ("weights",)}
        return net.eval()

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        """HxW float32 lesion probability for an HxWx3 uint8 photo, at the photo's own size."""
        import cv2
        import torch

        self.load()
        portrait = rgb.shape[0] > rgb.shape[1]
        landscape = np.ascontiguousarray(rgb.transpose(1, 0, 2)) if portrait else rgb
        small = cv2.resize(landscape, INPUT_SIZE, interpolation=cv2.INTER_AREA)
        with torch.inference_mode():
            logits = self._net(scale_pixels(torch.from_numpy(small[None])))
        prob = torch.sigmoid(logits)[0, 0].numpy()
        h, w = landscape.shape[:2]
        prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(prob.T) if portrait else prob

    def mask(self, rgb: np.ndarray) -> np.ndarray:
        """Boolean HxW lesion mask: the most probable connected spot, holes filled (all False when none)."""
        return largest_spot(self.probability(rgb), THRESHOLD)


def largest_spot(prob: np.ndarray, threshold: float) -> np.ndarray:
    """The connected part of ``prob > threshold`` holding the most probability mass, with its holes filled."""
    import cv2

    from dermchat.quality.segmentation import _fill_holes

    above = (prob > threshold).astype(np.uint8)
    if int(above.sum()) < MIN_PIXELS:
        return np.zeros(prob.shape, bool)
    n, labels = cv2.connectedComponents(above)
    if n > 2:
        mass = np.bincount(labels.ravel(), weights=prob.ravel(), minlength=n)
        mass[0] = 0
        above = (labels == int(np.argmax(mass))).astype(np.uint8)
    return _fill_holes(above > 0)


_default: LesionSegmenter | None = None
_default_lock = threading.Lock()
_failed = False


def default_segmenter() -> LesionSegmenter | None:
    """The shipped segmenter, loaded once; ``None`` (logged once) when its weights or torch are unavailable."""
    global _default, _failed
    if _default is not None or _failed:
        return _default
    with _default_lock:
        if _default is None and not _failed:
            segmenter = LesionSegmenter(WEIGHTS_DIR)
            try:
                _default = segmenter.load() if segmenter.available else None
                if _default is None:
                    log.warning("no lesion segmenter weights in %s: using the classical outline", WEIGHTS_DIR)
            except Exception:
                log.exception("the lesion segmenter could not be loaded: using the classical outline")
            _failed = _default is None
    return _default
