"""Exponential back-off between attempts (1 s, 2 s, 4 s … up to a cap), interruptible from another thread."""

from __future__ import annotations

import threading


class Backoff:
    """`wait` sleeps the next delay and returns False once `stop` is set, so a stopping daemon is never
    stuck in a sleep; `next_delay` only tells it (for a client that sleeps on its own: paho); `reset`
    after a success."""

    def __init__(self, cap_s: float, first_s: float = 1.0) -> None:
        self.first_s = min(first_s, cap_s) if cap_s > 0 else first_s
        self.cap_s = max(cap_s, self.first_s)
        self._next = self.first_s
        self.stop = threading.Event()

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.cap_s)
        return delay

    def reset(self) -> None:
        self._next = self.first_s

    def wait(self) -> bool:
        return not self.stop.wait(self.next_delay())
