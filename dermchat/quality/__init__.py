"""Image-quality check: per-reason measurements, lesion/skin regions, scores and retake tips.

Entry points: :func:`assess_image` (a decoded PIL image -> ``QualityReport``), :func:`lesion_mask` and
:func:`skin_mask` (region estimates reused by other steps). Submodules import OpenCV/scikit-image, so this
package imports them lazily: ``import dermchat.quality`` alone stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dermchat.quality.assess import assess_image as assess_image
    from dermchat.quality.segmentation import lesion_mask as lesion_mask
    from dermchat.quality.segmentation import skin_mask as skin_mask

_EXPORTS = {
    "assess_image": "dermchat.quality.assess",
    "lesion_mask": "dermchat.quality.segmentation",
    "skin_mask": "dermchat.quality.segmentation",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dermchat.quality' has no attribute {name!r}")
