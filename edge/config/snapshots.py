"""The `[snapshots]` settings: evidence JPEGs of the frames that changed the answer, kept in a bounded folder."""

from __future__ import annotations

from dataclasses import dataclass

from edge.config.fields import Need, setting


@dataclass(frozen=True)
class SnapshotsConfig:
    # Off by default: every snapshot is several writes to the SD card, and a camera's pictures kept
    # on disk (and sent to the broker) are a privacy decision the operator has to make.
    enabled: bool = setting(False, "save the frame behind each change of the answer (the model's input and a larger view) as JPEG")
    path: str = setting("/var/lib/mnv1-edge/snapshots", "the folder; created if missing; only this daemon's snapshot files in it are ever removed")
    every_s: float = setting(0.0, "also save a snapshot with a published record when this many seconds passed since the last; 0 = changes only", ge=0)
    max_side: int = setting(640, "the larger view's longest side in pixels (the source's frame, scaled down)", ge=128, le=4096)
    quality: int = setting(85, "JPEG quality", ge=10, le=95)
    max_bytes: int = setting(50_000_000, "the folder's snapshot files stay under this many bytes; the oldest are deleted", ge=100_000)
    max_files: int = setting(1000, "and under this many files (each snapshot is 2 or 3: input JPEG, record JSON, view JPEG)", ge=3)
    publish: bool = setting(True, "with the MQTT sink: publish the newest JPEG retained on <prefix>snapshot (a Home Assistant image entity)")

    @property
    def published(self) -> bool:
        """Whether the MQTT sink publishes the JPEGs (and announces Home Assistant's image entity)."""
        return self.enabled and self.publish

    def check(self, need: Need) -> None:
        need(not self.enabled or bool(self.path), "path", "required when snapshots are enabled")
