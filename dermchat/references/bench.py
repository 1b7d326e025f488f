"""Figures for ``python -m dermchat bench``: exemplar retrieval latency and per-step denoising time.

Numbers are printed, never asserted: the team's machines are shared and noisy.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from dermchat.bench import percentile
from dermchat.context import TurnContext
from dermchat.results import Diagnosis, DifferentialEntry, TurnResult
from dermchat.settings import Settings

BENCH_DIFFERENTIAL = (("melanocytic_nevus", 0.6), ("melanoma", 0.25), ("benign_keratosis", 0.15))


def bench_context(image: Image.Image, workdir: Path) -> TurnContext:
    """A turn context with a fixed three-condition differential (retrieval cost does not depend on it)."""
    diagnosis = Diagnosis(
        provider_id="bench",
        differential=[DifferentialEntry(condition_id=c, probability=p) for c, p in BENCH_DIFFERENTIAL],
    )
    return TurnContext(
        image=image,
        settings=Settings(),
        workdir=workdir,
        result=TurnResult(turn_id="bench", audience="patient", diagnosis=diagnosis),
    )


def configured(provider: Any) -> Any:
    """A fresh provider with the options the current settings give it (bench functions get no registry)."""
    from dermchat.settings import load_settings

    provider.configure(load_settings().provider_options(provider.id))
    return provider


def summary_ms(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 2), "p95": round(percentile(values, 0.95), 2), "n": len(values)}


def exemplar_latency(provider: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Cold load (atlas features from cache or built) and per-turn retrieval latency, target <= 100 ms."""
    ok, reason = provider.available()
    if not ok:
        return {"skipped": reason}
    image = Image.open(options["image"]).convert("RGB")
    started = time.perf_counter()
    provider.load()
    load_s = time.perf_counter() - started
    runs = max(5, int(options.get("runs", 10)) * 3)
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="dermchat-bench-") as tmp:
        for i in range(runs):
            ctx = bench_context(image, Path(tmp) / str(i))
            start = time.perf_counter()
            refs = provider.references(ctx)
            times.append((time.perf_counter() - start) * 1000)
    atlas = provider.atlas
    return {
        "retrieval_ms": summary_ms(times),
        "target_ms": 100,
        "references_per_turn": len(refs),
        "atlas_images": len(atlas) if atlas is not None else 0,
        "load_s": round(load_s, 3),
        **feature_cache_figures(atlas),
        "note": "fixed differential nv/mel/bkl, k=settings.references_per_condition, includes copying files",
    }


def feature_cache_figures(atlas: Any) -> dict[str, Any]:
    """The atlas feature build time, named for what it is: measured now only when this process built it.

    A build time read back from the cache file was measured on another day, maybe another machine; it is
    reported with its date under a name that says so, never as a figure of this run.
    """
    if atlas is None or atlas.build_seconds is None:
        return {}
    seconds = round(float(atlas.build_seconds), 1)
    if atlas.built_in_this_process:
        return {"feature_cache_build_s": seconds}
    return {"feature_cache_build_s_when_built": seconds, "feature_cache_built_at": atlas.built_at}


TINY_FIGURE = "per_step_ms (tiny random pipeline: no real diffusion weights available locally)"


def diffusion_step_time(provider: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Per-step denoising time of the configured generator, or of a tiny random pipeline when the configured
    weights are not available here (the figure's name says which)."""
    from dermchat.references.tiny import TINY_SAMPLE_SIZE, build_tiny_sd

    ok, reason = provider.available()
    image = Image.open(options["image"]).convert("RGB")
    with tempfile.TemporaryDirectory(prefix="dermchat-bench-sd-") as tmp:
        generator = type(provider)()  # a second one, so the configured provider's options stay as they are
        base = provider.opts.model_dump() | {"cache": False, "verify": False}
        if ok:
            generator.configure(base)
            figure, runs = "per_step_ms", 1
        else:
            model = build_tiny_sd(Path(tmp) / "tiny-sd")
            generator.configure(
                base | {"model": str(model), "lora": None, "size": TINY_SAMPLE_SIZE, "steps": 10, "device": "cpu"}
            )
            figure, runs = TINY_FIGURE, 3
        started = time.perf_counter()
        generator.load()
        load_s = time.perf_counter() - started
        steps: list[float] = []
        for run in range(runs):
            ctx = bench_context(image, Path(tmp) / f"turn{run}")
            ctx.settings = Settings(reference_conditions=1)
            refs = generator.references(ctx)
            steps.extend(refs[0].extra["step_ms"][1 if run == 0 else 0 :])  # the very first step warms up
        opts = generator.opts
        return {
            figure: summary_ms(steps),
            "model": opts.model if ok else "tiny random SD (built in a temp dir)",
            "configured_model_unavailable": None if ok else reason,
            "mode": opts.mode,
            "scheduler": opts.scheduler,
            "size": opts.size,
            "steps_per_image": opts.steps,
            "device": generator.device,
            "load_s": round(load_s, 2),
        }
