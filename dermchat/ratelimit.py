"""A global backoff after repeated failures (researcher password, participant codes), knowing nothing of who.

Why: guessing was only slowed by a second per wrong password, and code entry not at all. Per-client limits
would need IP addresses, which DermChat never records; this lock is shared by everyone instead: after
``threshold`` failures each further failure locks for ``base_s`` seconds, doubling every time up to
``max_s``. A success (``succeed``) or ``forget_after_s`` without failures starts the count over.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        threshold: int = 5,
        base_s: float = 30.0,
        max_s: float = 3600.0,
        forget_after_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.base_s = base_s
        self.max_s = max_s
        self.forget_after_s = forget_after_s
        self.clock = clock
        self.failures = 0
        self._locked_until = 0.0
        self._last_failure = 0.0
        self._lock = threading.Lock()

    def remaining(self) -> float:
        """Seconds until attempts are accepted again (0 when open)."""
        with self._lock:
            return max(0.0, self._locked_until - self.clock())

    def fail(self) -> float:
        """Count a failure; returns the seconds of the lock it starts (0 while under the threshold)."""
        with self._lock:
            now = self.clock()
            if now - self._last_failure > max(self.forget_after_s, self._locked_until - self._last_failure):
                self.failures = 0
            self.failures += 1
            self._last_failure = now
            if self.failures < self.threshold:
                return 0.0
            seconds = min(self.base_s * 2.0 ** (self.failures - self.threshold), self.max_s)
            self._locked_until = now + seconds
            return seconds

    def succeed(self) -> None:
        with self._lock:
            self.failures = 0
            self._locked_until = 0.0
