"""One fan-out over the sinks: every sink gets every call, and a sink that raises cannot stop the others."""

# A sink is meant to count its own transient faults and never raise (see edge.sinks.Sink); one that
# raises anyway is a bug or a fault it cannot survive. It is logged once when it starts failing and
# once when it recovers (not once per frame), and every failure is counted in the stats.

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from edge.record import Record
from edge.sinks import Sink
from edge.stats import SinkCounters, StatsReport

log = logging.getLogger("edge.daemon")


class SinkFanout:
    def __init__(self) -> None:
        self.sinks: list[Sink] = []
        self.errors: dict[str, int] = {}  # sink name → calls that raised
        self._failing: set[str] = set()

    def _each(self, what: str, call: Callable[[Sink], None], sinks: list[Sink] | None = None) -> None:
        for sink in self.sinks if sinks is None else sinks:
            try:
                call(sink)
            except Exception as exc:
                self.errors[sink.name] = self.errors.get(sink.name, 0) + 1
                if sink.name not in self._failing:
                    self._failing.add(sink.name)
                    log.error("sink %s: %s failed: %s (logged once; counted in stats as sink_errors)", sink.name, what, exc)
            else:
                if sink.name in self._failing:
                    self._failing.discard(sink.name)
                    log.info("sink %s: %s works again", sink.name, what)

    def write(self, record: Record) -> None:
        self._each("write", lambda s: s.write(record))

    def report(self, stats: StatsReport) -> None:
        self._each("report", lambda s: s.report(stats))

    def flush(self) -> None:
        self._each("flush", lambda s: s.flush())

    def stats(self) -> dict[str, SinkCounters]:
        """Each sink's counters by its name; every call it raised on counts as lost and as an error."""
        out: dict[str, SinkCounters] = {}

        def collect(sink: Sink) -> None:
            out[sink.name] = sink.stats()

        self._each("stats", collect)
        for name, raised in self.errors.items():
            own = out.get(name, SinkCounters({}))  # none of its own when its stats() raised
            out[name] = replace(own, lost=own.lost + raised, errors=own.errors + raised, raised=raised)
        return out

    def close(self, keep: set[str] | frozenset[str] = frozenset()) -> None:
        self._each("close", lambda s: s.close(), [s for s in self.sinks if s.name not in keep])

    def close_one(self, sink: Sink) -> None:
        self._each("close", lambda s: s.close(), [sink])
