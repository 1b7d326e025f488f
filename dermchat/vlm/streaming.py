"""Relay a model's answer to the chat while it is generated, showing the rationale and never raw JSON.

The prompt asks for prose first and JSON second, so the prose before the first ``{`` or code fence is the
rationale. Models that put the JSON first still stream: the partial value of its ``"rationale"`` field is
shown instead. Each progress message carries the rationale so far (replace, not append), throttled so a
fast server does not flood the UI with one event per token.

Why this stays after the move to the ``openai`` SDK: the SDK (like transformers' streamer on the local route)
delivers raw text deltas, JSON included; deciding which part of a half-written answer a patient may see is
DermChat's policy, not transport. The partial ``"rationale"`` field is read by json-repair, which closes the
cut-off string and decodes its escapes (``test_structured_streamed_answer_and_exif_free_image`` shows the
chat never receives the JSON the server streams).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

from dermchat.vlm.jsonrepair import loads_lenient

ProgressFn = Callable[[str, "float | None"], None]

_JSON_START = re.compile(r"```|\{")


def visible_rationale(text: str) -> str:
    """What of a partial answer is fit to show: prose before the JSON, else the partial rationale field."""
    match = _JSON_START.search(text)
    prose = (text[: match.start()] if match else text).strip()
    prose = re.sub(r"^(rationale|answer)\s*:\s*", "", prose, flags=re.I)
    if prose:
        return prose
    field = (loads_lenient(text) or {}).get("rationale") if match else None
    return field.strip() if isinstance(field, str) else ""


class RationaleStream:
    """Collects streamed chunks and reports the visible rationale through ``progress`` (thread-safe)."""

    def __init__(self, progress: ProgressFn, *, prefix: str = "", min_interval_s: float = 0.15) -> None:
        self._progress = progress
        self._prefix = prefix
        self._min_interval = min_interval_s
        self._chunks: list[str] = []
        self._shown = ""
        self._last_emit = 0.0
        self._lock = threading.Lock()

    def __call__(self, chunk: str) -> None:
        self.add(chunk)

    def add(self, chunk: str) -> None:
        if not chunk:
            return
        with self._lock:
            self._chunks.append(chunk)
            now = time.monotonic()
            if now - self._last_emit >= self._min_interval:
                self._emit(now)

    def finish(self) -> str:
        """Flush the last visible text; returns the whole answer."""
        with self._lock:
            self._emit(time.monotonic())
            return "".join(self._chunks)

    @property
    def text(self) -> str:
        with self._lock:
            return "".join(self._chunks)

    def _emit(self, now: float) -> None:
        visible = visible_rationale("".join(self._chunks))
        if visible and visible != self._shown:
            self._shown = visible
            self._last_emit = now
            self._progress(self._prefix + visible, None)
