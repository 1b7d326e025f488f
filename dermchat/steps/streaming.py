"""Run one provider call in a worker thread and stream its progress as step events.

Providers report progress through a plain callback; the pipeline is a generator. A queue between them lets
``run_turn`` yield "progress" events (denoising steps, streamed VLM rationale) while the call runs, and turns
any exception into a value instead of an unwound generator.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from dermchat.results import StepEvent, StepName

T = TypeVar("T")


@dataclass
class StepOutcome(Generic[T]):
    value: T | None
    error: BaseException | None
    elapsed_ms: float


def run_streaming(
    step: StepName,
    provider_id: str | None,
    call: Callable[[Callable[[str, float | None], None]], T],
) -> Generator[StepEvent, None, StepOutcome[T]]:
    """Yield progress events while ``call(progress)`` runs; return its outcome (``yield from`` gives it)."""
    events: queue.Queue[tuple[str, float | None] | None] = queue.Queue()
    box: dict[str, Any] = {}

    def progress(message: str, fraction: float | None = None) -> None:
        events.put((str(message), fraction))

    def worker() -> None:
        try:
            box["value"] = call(progress)
        except BaseException as exc:  # noqa: BLE001 - reported to the pipeline, which decides
            box["error"] = exc
        finally:
            events.put(None)

    start = time.perf_counter()
    thread = threading.Thread(target=worker, name=f"dermchat-{step}", daemon=True)
    thread.start()
    while True:
        item = events.get()
        if item is None:
            break
        message, fraction = item
        yield StepEvent(step=step, kind="progress", message=message, fraction=fraction, provider_id=provider_id)
    thread.join()
    return StepOutcome(value=box.get("value"), error=box.get("error"), elapsed_ms=(time.perf_counter() - start) * 1000)
