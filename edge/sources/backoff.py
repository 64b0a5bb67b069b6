"""Exponential back-off between reconnect attempts, interruptible from another thread."""

from __future__ import annotations

import threading


class Backoff:
    """1 s, 2 s, 4 s … capped at `cap_s`; `reset` after a success; `wait` returns False once
    interrupted so a stopping daemon is never stuck in a sleep."""

    def __init__(self, cap_s: float, first_s: float = 1.0) -> None:
        self.first_s = min(first_s, cap_s) if cap_s > 0 else first_s
        self.cap_s = max(cap_s, self.first_s)
        self._next = self.first_s
        self.stop = threading.Event()

    def reset(self) -> None:
        self._next = self.first_s

    def wait(self) -> bool:
        delay = self._next
        self._next = min(self._next * 2, self.cap_s)
        return not self.stop.wait(delay)
