"""``dermchat bench``: per-step latency, cold start and peak memory, plus figures plugins register.

A command that prints numbers, not a timed test: shared CI machines are too noisy for assertions on speed.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from dermchat.paths import default_data_dir
from dermchat.request import TurnRequest


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def default_bench_image() -> Path:
    images = sorted((default_data_dir() / "images").glob("*.jpg"))
    if not images:
        raise SystemExit(f"no images found in {default_data_dir() / 'images'}; pass --image PATH")
    return images[0]


def run_bench(runs: int = 10, image: str | None = None) -> dict[str, Any]:
    from dermchat.engine import DermChat

    path = Path(image) if image else default_bench_image()
    t0 = time.perf_counter()
    app = DermChat()
    t_plugins = time.perf_counter()
    problems = app.warm_up()
    t_loaded = time.perf_counter()
    first = app.run_turn_sync(TurnRequest(image=path, audience="clinician", force=True))
    t_first = time.perf_counter()
    steps: dict[str, list[float]] = {}
    totals: list[float] = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        result = app.run_turn_sync(TurnRequest(image=path, audience="clinician", force=True))
        totals.append((time.perf_counter() - start) * 1000)
        for step, ms in result.timings_ms.items():
            steps.setdefault(step, []).append(ms)
    figures: dict[str, Any] = {
        "image": str(path),
        "runs": runs,
        "providers": {
            k: (v.model_dump() if hasattr(v, "model_dump") else [r.model_dump() for r in v])
            for k, v in first.providers.items()
        },
        "cold_start_s": {
            "plugins": round(t_plugins - t0, 3),
            "load_models": round(t_loaded - t_plugins, 3),
            "first_turn": round(t_first - t_loaded, 3),
            "total": round(t_first - t0, 3),
        },
        "warm_up_problems": problems,
        "turn_ms": {"p50": round(statistics.median(totals), 1), "p95": round(percentile(totals, 0.95), 1)},
        "step_ms": {
            step: {"p50": round(statistics.median(v), 1), "p95": round(percentile(v, 0.95), 1)}
            for step, v in steps.items()
        },
    }
    plugin_figures: dict[str, Any] = {}
    for name, fn in sorted(app.registry.benchmarks.items()):
        try:
            plugin_figures[name] = fn({"image": str(path), "runs": runs})
        except Exception as exc:  # noqa: BLE001 - one plugin's benchmark must not hide the others
            plugin_figures[name] = {"error": f"{type(exc).__name__}: {exc}"}
    figures["plugins"] = plugin_figures
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return figures
