"""The versioned result record every sink receives (schema documented in README, "Result record")."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from edge.model.contract import Prediction
from edge.model.groups import NONE, GroupScore

# 2: `answer` (the tracked answer: the top group, or without groups the stable top-1 label; "none"
# under results.threshold) and `groups` ([{"name", "score"}] best first, [] without groups);
# optional `snapshot` (the evidence JPEG's file name, only on records that have one).
SCHEMA_VERSION = 2


def rfc3339(epoch: float) -> str:
    """UTC, millisecond precision, trailing Z: 2026-11-24T01:27:54.123Z."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Record:
    seq: int  # monotonic per device, persisted across restarts; consumers dedupe by it
    ts: float  # when the result was produced (epoch seconds)
    frame_ts: float  # when the source captured or read the frame (epoch seconds)
    device_id: str
    source: str
    top_k: tuple[Prediction, ...]
    inference_ms: float
    model_sha256: str
    answer: str = ""  # "" = derive it from top_k (the stable label, or "none")
    groups: tuple[GroupScore, ...] = ()
    snapshot: str | None = None  # the snapshot's file name (snapshots.path), when one was taken for this record

    @property
    def the_answer(self) -> str:
        return self.answer or (self.top_k[0].label if self.top_k else NONE)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "seq": self.seq,
            "ts": rfc3339(self.ts),
            "frame_ts": rfc3339(self.frame_ts),
            "device_id": self.device_id,
            "source": self.source,
            "answer": self.the_answer,
            "groups": [{"name": g.name, "score": round(g.score, 6)} for g in self.groups],
            "top_k": [{"class_index": p.class_index, "label": p.label, "score": round(p.score, 6)} for p in self.top_k],
            "inference_ms": round(self.inference_ms, 3),
            "model_sha256": self.model_sha256,
        }
        if self.snapshot is not None:
            out["snapshot"] = self.snapshot
        return out

    def to_json(self) -> str:
        """One line of compact JSON, no trailing newline."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)
