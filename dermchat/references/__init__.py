"""Reference images for a turn: real exemplars from an image atlas and diffusion-generated illustrations.

Why a package of small modules: the exemplar provider (offline default) must stay cheap to import and fast
per turn, while the diffusion provider pulls in torch/diffusers only when it loads. Shared pieces (colour
space, skin tone, concept prompts, the contrast gallery) live in their own modules so both providers and the
UI use the same definitions.
"""

HAM10000_ATTRIBUTION = (
    "Tschandl P., Rosendahl C., Kittler H. The HAM10000 dataset, a large collection of multi-source "
    "dermatoscopic images of common pigmented skin lesions. Sci Data 5, 180161 (2018). "
    "https://doi.org/10.1038/sdata.2018.161"
)
HAM10000_LICENSE = "CC BY-NC 4.0"
SYNTHETIC_LABEL = "synthetic — an illustration, not your photo or diagnosis"

__all__ = ["HAM10000_ATTRIBUTION", "HAM10000_LICENSE", "SYNTHETIC_LABEL"]
