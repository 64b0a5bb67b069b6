"""Two daemons publishing as one device: each run's instance claim, and telling a live clash from a reboot."""

# A cloned SD card (or device_id = "" on clones with one host name) gives two daemons one device_id:
# their records share the device's topics, and as each numbers its own, one `seq` would name two
# records and a consumer that de-duplicates by `seq` (as the README says to) drops half of them.
#
# Each run of the daemon is an instance with a random id. On every connect the MQTT sink subscribes to
# <prefix>instance and then publishes its claim there (retained, QoS 1): {"instance", "host", "pid",
# "started", "seq"}. What it then receives tells it apart:
# * its own claim coming back: the broker has it; records may flow once another daemon had the time
#   to answer (SETTLE_RTTS round trips, at least SETTLE_MIN_S);
# * the retained claim of an earlier instance (delivered because we just subscribed): the previous
#   run of this device after a reboot or a power cut, or another daemon. Not evidence of a clash, but
#   its `seq` (the highest number it published) is numbers used here: new records are numbered above it;
# * a claim published live by another instance: another daemon is connected as this device now.
#   That is a clash. Both answer each other's claims, so both see it within a round trip, and both
#   hold their records in the durable spool (nothing is lost; no number is published twice) while
#   claims keep coming (each repeats its claim every REPEAT_S during a clash); HOLD_S without one,
#   the other is gone and the records flow again.
# Availability stays "online"/"offline" (what Home Assistant's discovery config names); the instance
# id is in the claim and the retained stats.

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.log import PACED
from edge.record import rfc3339

log = logging.getLogger("edge.sinks.mqtt.sink")

SETTLE_MIN_S = 0.25  # after our claim's echo: how long another daemon has to answer it
SETTLE_RTTS = 3  # … or this many round trips of the claim, whichever is longer
ECHO_TIMEOUT_S = 5.0  # no echo of our claim (a broker ACL that forbids the topic): publish without the check
REPEAT_S = 2.0  # during a clash each side repeats its claim this often, to keep the evidence live
HOLD_S = 3 * REPEAT_S  # no live claim of the other for this long: the clash is over
REPLY_MIN_S = 1.0  # answer another instance's claim at most this often (two daemons must not ping-pong)


def new_instance() -> str:
    """12 hex digits, random per run: two runs (or two clones) never share one."""
    return os.urandom(6).hex()


@dataclass(frozen=True)
class Claim:
    instance: str
    host: str
    pid: int
    started: str
    seq: int | None  # the highest record number this instance has published, if any

    def describe(self) -> str:
        return f"instance {self.instance} on host {self.host} (pid {self.pid}, started {self.started})"

    def to_json(self) -> str:
        return json.dumps({"instance": self.instance, "host": self.host, "pid": self.pid, "started": self.started, "seq": self.seq})

    @staticmethod
    def parse(payload: bytes) -> Claim | None:
        """A claim, or None for anything else (claims are tiny: a large payload is not one)."""
        if len(payload) > 4096:
            return None
        try:
            data = json.loads(payload)
        except (ValueError, RecursionError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("instance"), str):
            return None
        seq = data.get("seq")
        pid = data.get("pid")
        return Claim(
            data["instance"][:32],
            str(data.get("host", "?"))[:64],
            pid if isinstance(pid, int) else 0,
            str(data.get("started", "?"))[:40],
            seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None,
        )


class ClashWatch:
    """This instance's claim, and what the claims it receives say. Fed from paho's network thread,
    read from the pump thread: plain attributes, each written by one side."""

    def __init__(self, instance: str | None = None) -> None:
        self.instance = instance or new_instance()
        self.host = socket.gethostname()
        self.started = rfc3339(time.time())
        self.seq: int | None = None  # the highest seq we published (set by the sink before each claim)
        self.other: Claim | None = None  # the last other instance seen live
        self.other_at = -math.inf  # monotonic time it was last seen live
        self.previous: Claim | None = None  # the retained claim found at connect, when not ours
        self.episodes = 0  # clashes seen (a clash starts when a live claim arrives with none live before)
        self._sent_at = -math.inf  # monotonic time we last published our claim
        self._echo_at: float | None = None  # when our claim came back on this connection
        self._settled_at = math.inf

    def claim(self) -> Claim:
        return Claim(self.instance, self.host, os.getpid(), self.started, self.seq)

    def sent(self, now: float, connect: bool = False) -> None:
        """Our claim was just published (`connect`: as the first message of a new connection)."""
        self._sent_at = now
        if connect:
            self._echo_at = None
            self._settled_at = now + ECHO_TIMEOUT_S  # an echo brings this forward

    def received(self, claim: Claim, retained: bool, now: float) -> bool:
        """Take a claim from the broker; True when it is another instance seen live (a clash)."""
        if claim.instance == self.instance:
            if self._echo_at is None and not retained:
                self._echo_at = now
                self._settled_at = now + max(SETTLE_MIN_S, SETTLE_RTTS * (now - self._sent_at))
            return False
        if retained:
            self.previous = claim  # an earlier run of this device after a reboot, or another daemon: not evidence
            return False
        if not self.clash(now):
            self.episodes += 1
        self.other, self.other_at = claim, now
        return True

    def clash(self, now: float) -> bool:
        """Another instance published its claim within HOLD_S."""
        return now - self.other_at < HOLD_S

    def settled(self, now: float) -> bool:
        """Long enough after this connection's claim for another daemon to have answered it."""
        return now >= self._settled_at

    def reply_due(self, now: float) -> bool:
        """Answer a live claim (so the other sees us too), at most every REPLY_MIN_S."""
        return now - self._sent_at >= REPLY_MIN_S

    def repeat_due(self, now: float) -> bool:
        """During a clash our claim is repeated every REPEAT_S, so each side keeps seeing the other."""
        return self.clash(now) and now - self._sent_at >= REPEAT_S

    def echo_missing(self, now: float) -> bool:
        """No echo of this connection's claim within ECHO_TIMEOUT_S: the check cannot work here."""
        return self._echo_at is None and now >= self._sent_at + ECHO_TIMEOUT_S


class ClashNotices:
    """What the operator reads of a clash: a warning once per back-off step while it lasts (naming
    the other instance), one line when it ends, and one if our own claim never came back."""

    def __init__(self, device_id: str, where: str, topic: str, max_step_s: float) -> None:
        self.device_id, self.where, self.topic = device_id, where, topic
        self.max_step_s = max(1.0, max_step_s)
        self._said_at = -1e18
        self._every = 1.0
        self._said = False
        self._echo_warned = False

    def update(self, watch: ClashWatch, now: float, connected: bool, held: Callable[[], int]) -> None:
        """`held()`: the records waiting in the spool (asked only when said)."""
        if watch.clash(now):
            if now - self._said_at >= self._every:
                self._said_at = now
                self._every = min(2 * self._every, self.max_step_s)
                self._said = True
                other = watch.other.describe() if watch.other else "another instance"
                log.warning(
                    "MQTT sink: another mnv1-edge publishes as device_id %s on %s: %s (this is instance %s on host %s); "
                    "records wait in the spool (%d) until it stops: give each device its own device_id (a cloned SD card also "
                    "an empty state_dir); next notice in %.0f s",
                    self.device_id,
                    self.where,
                    other,
                    watch.instance,
                    watch.host,
                    held(),
                    self._every,
                    extra=PACED,
                )
        elif self._said:
            self._said, self._every = False, 1.0
            log.warning("MQTT sink: no claim from the other instance for %.0f s: it stopped; publishing the %d records held", HOLD_S, held())
        if connected and watch.echo_missing(now) and not self._echo_warned:
            self._echo_warned = True
            log.warning(
                "MQTT sink: our instance claim on %s did not come back within %.0f s (does the broker's ACL allow reading it?): "
                "publishing without the check for another daemon of device_id %s",
                self.topic,
                ECHO_TIMEOUT_S,
                self.device_id,
            )
