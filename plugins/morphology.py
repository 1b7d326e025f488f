"""The morphology describer `classic-morphology`: Stolz's ABCD descriptors of the lesion in the photo.

Classical image analysis (numpy, OpenCV, scikit-image) on the lesion outline: by default the tiny U-Net trained on
the HAM10000 expert masks (``dermchat/weights/lesion_unet``), or the quality check's mask refined by colour
(``outline: classical``). The measuring code lives in :mod:`dermchat.morphology`, this module adapts it to the
provider contract. The engine
runs it after the diagnosis and checks the descriptors against it (``dermchat.morphology.check_consistency``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dermchat.context import TurnContext
from dermchat.hookspecs import hookimpl
from dermchat.providers import MorphologyDescriber, ProviderError
from dermchat.results import MorphologyReport

PROVIDER_ID = "classic-morphology"


class ClassicMorphology(MorphologyDescriber):
    """Asymmetry, border, colours, blue-white veil, structures, size and TDS from the mask and the pixels."""

    id = PROVIDER_ID
    label = "Dermoscopic ABCD descriptors (CPU)"
    version = "1.2"
    needs_gpu = False
    description = (
        "What the photo shows: asymmetry (0-2), border abruptness (0-8), dermoscopic colours, blue-white "
        "veil, structures, diameter and a TDS-style score (plus Stolz's TDS); compares with an earlier photo."
    )

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        mm_per_px: float | None = Field(
            None, gt=0, description="millimetres per pixel when the photos' scale is known (adds diameter in mm)"
        )
        outline: Literal["learned", "classical"] = Field(
            "learned",
            description="lesion outline: the U-Net trained on HAM10000 expert masks, or the classical colour threshold",
        )

    @property
    def opts(self) -> ClassicMorphology.Options:
        """The validated options, typed."""
        assert isinstance(self.options, ClassicMorphology.Options)
        return self.options

    def _load(self) -> None:
        import dermchat.morphology.describe  # noqa: F401 - the numeric stack, off the first turn's path

        if self.opts.outline == "learned":
            from dermchat.morphology.segmenter import default_segmenter

            if default_segmenter() is None:
                raise ProviderError(
                    "The lesion-outline weights (dermchat/weights/lesion_unet) could not be loaded; "
                    "set the classic-morphology option outline to 'classical'."
                )

    def describe(self, ctx: TurnContext) -> MorphologyReport:
        if ctx.image is None:
            raise ProviderError("No photo to describe.")
        from dermchat.morphology import compare_descriptors, describe

        mm_per_px, outline = self.opts.mm_per_px, self.opts.outline

        def measured(image: Any) -> Any:
            return describe(image, mm_per_px=mm_per_px, outline=outline)

        ctx.progress("Outlining the spot and measuring shape, border and colours", 0.3)
        now = measured(ctx.image)
        report = MorphologyReport(provider_id=self.id, descriptors=now.as_dict())
        if ctx.earlier_image is not None:
            ctx.progress("Comparing with the earlier photo", 0.7)
            earlier = measured(ctx.earlier_image)
            report.comparison = compare_descriptors(earlier, now).as_dict()
        return report


def benchmark(options: dict[str, Any]) -> dict[str, Any]:
    """ms per ``describe`` (mask estimated) on the bench image."""
    from pathlib import Path

    from dermchat.morphology.bench import describe_timing

    image = options.get("image")
    if not image:
        raise ValueError("the classic-morphology benchmark needs an image path")
    return describe_timing([Path(image)], repeats=max(3, int(options.get("runs", 5))))


@hookimpl
def register_morphology_describers(register: Callable[[MorphologyDescriber], None]) -> None:
    register(ClassicMorphology())


@hookimpl
def register_benchmarks(register: Callable[[str, Callable[[dict[str, Any]], dict[str, Any]]], None]) -> None:
    register(PROVIDER_ID, benchmark)
