"""Built-in plugin: diffusion-generated reference images (``sd-diffusion``), their notices and benchmark."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from dermchat.hookspecs import BenchFn, hookimpl
from dermchat.references.diffusion import DiffusionProvider

if TYPE_CHECKING:
    from dermchat.results import TurnResult

@hookimpl
def register_reference_generators(register: Callable[[DiffusionProvider], None]) -> None:
    register(DiffusionProvider())


@hookimpl
def extra_notices(result: TurnResult, audience: str) -> list[str] | None:
    """Say when generated images were shown without being checked by the image model (and why)."""
    reasons = {
        str(ref.extra.get("verification_notice"))
        for ref in result.references
        if ref.synthetic and ref.verified is None and ref.extra.get("verification_notice")
    }
    return sorted(reasons) or None


@hookimpl
def register_benchmarks(register: Callable[[str, BenchFn], None]) -> None:
    def bench(options: dict[str, Any]) -> dict[str, Any]:
        from dermchat.references.bench import configured, diffusion_step_time

        return diffusion_step_time(configured(DiffusionProvider()), options)

    register("sd-diffusion per-step denoising", bench)
