"""Stdout sink: each record as one JSON line (for pipes) or one line for people (demos, a terminal), on standard output."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from edge.stats import SinkCounters

if TYPE_CHECKING:
    from edge.record import Record
    from edge.stats import StatsReport

log = logging.getLogger("edge.sinks.stdout")


class StdoutSink:
    """One os.write per line, so lines from a pipe reader's view are never interleaved or split."""

    name = "stdout"

    def __init__(self, fd: int = 1, text: bool = False) -> None:
        self._fd = fd
        self._text = text
        self._written = 0
        self._errors = 0

    def open(self) -> None:
        pass

    def write(self, record: Record) -> None:
        line = ((text_line(record) if self._text else record.to_json()) + "\n").encode()
        try:
            view = memoryview(line)
            while view:  # a pipe may take a long line in parts
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self._errors += 1
            log.warning("stdout: write failed (%s)", exc.strerror or exc)
            return
        self._written += 1

    def report(self, stats: StatsReport) -> None:
        pass  # stats go to the log, not into the result stream

    def stats(self) -> SinkCounters:
        counters = {"written": self._written, "errors": self._errors, "records_lost": self._errors}
        return SinkCounters(counters, lost=self._errors, errors=self._errors)

    def flush(self) -> None:
        pass  # unbuffered

    def close(self) -> None:
        pass


def text_line(record: Record) -> str:
    """`parrot.jpg: bird 0.93  (top label: macaw 0.91)`: the answer as the operator configured it,
    with the model's own best label beside it (without groups the answer is that label)."""
    top = record.top_k[0] if record.top_k else None
    score = next((g.score for g in record.groups if g.name == record.the_answer), None)
    if score is None and top is not None and top.label == record.the_answer:
        score = top.score
    answer = record.the_answer + (f" {score:.2f}" if score is not None else "")
    beside = f"  (top label: {top.label} {top.score:.2f})" if top is not None and record.groups else ""
    return f"{record.source}: {answer}{beside}"
