"""One fan-out over the sinks: it opens them, keeps or replaces them on a reload, and gives every
sink every call; a sink that raises cannot stop the others."""

# A sink is meant to count its own transient faults and never raise (see edge.sinks.Sink); one that
# raises anyway is a bug or a fault it cannot survive. It is logged once when it starts failing and
# once when it recovers (not once per frame), and every failure is counted in the stats.

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from edge.record import Record
from edge.sinks import Sink, SinkSpec, SnapshotPublisher, make_sink
from edge.stats import SinkCounters, StatsReport

log = logging.getLogger("edge.daemon")


class SinkFanout:
    def __init__(self) -> None:
        self.sinks: list[Sink] = []
        self.specs: dict[str, SinkSpec] = {}  # sink name → the spec it was made from
        self.errors: dict[str, int] = {}  # sink name → calls that raised
        self._failing: set[str] = set()

    def open(self, specs: Sequence[SinkSpec], previous: SinkFanout | None = None) -> None:
        """Open a sink per spec, in order. A sink `previous` runs with an equal spec is taken over as it
        runs; one of the same name with another spec is closed first, because a spool directory and an
        MQTT client id cannot be held twice. What is left in `previous` is for its own `close`. On a
        failure the sinks this call opened are closed again and the error is raised."""
        opened: list[Sink] = []
        try:
            for spec in specs:
                running, was = previous._take(spec.name) if previous is not None else (None, None)
                if running is None or was != spec:
                    if previous is not None and running is not None:
                        previous._each("close", lambda s: s.close(), [running])
                    running = make_sink(spec)
                    running.open()
                    opened.append(running)
                self.sinks.append(running)
                self.specs[spec.name] = spec
        except BaseException:
            self._each("close", lambda s: s.close(), opened)
            for sink in opened:
                self._take(sink.name)
            raise

    def _take(self, name: str) -> tuple[Sink | None, SinkSpec | None]:
        """Remove the sink of this name from this fan-out, still open, with its spec."""
        for sink in self.sinks:
            if sink.name == name:
                self.sinks.remove(sink)
                return sink, self.specs.pop(name, None)
        return None, None

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

    def publish_snapshot(self, jpeg: bytes) -> None:
        """From the snapshot writer's thread: the JPEG to the sinks that publish images (MQTT)."""
        for sink in list(self.sinks):
            if isinstance(sink, SnapshotPublisher):
                sink.snapshot(jpeg)

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

    def close(self) -> None:
        self._each("close", lambda s: s.close())
