"""What the photo shows: dermoscopic ABCD descriptors, their agreement with the diagnosis, change over time.

``from dermchat.morphology import describe`` -> :class:`Morphology` (``as_dict()`` for JSON);
:func:`compare` two photos of the same spot; :func:`check_consistency` of the descriptors against a diagnosis.
Submodules import OpenCV/scikit-image lazily, so importing this package stays cheap.
"""

from __future__ import annotations

from dermchat.morphology.compare import Comparison, compare, compare_descriptors
from dermchat.morphology.consistency import Consistency, check_consistency
from dermchat.morphology.describe import TDS_CUTOFF, Morphology, describe

__all__ = [
    "TDS_CUTOFF",
    "Comparison",
    "Consistency",
    "Morphology",
    "check_consistency",
    "compare",
    "compare_descriptors",
    "describe",
]
