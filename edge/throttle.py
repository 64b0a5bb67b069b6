"""The Raspberry Pi firmware's under-voltage and throttling flags (get_throttled): one reader for `doctor` and the stats."""

# The firmware keeps a bit mask (Raspberry Pi documentation, "vcgencmd get_throttled"): bits 0-3 say
# what holds now, bits 16-19 whether it happened since boot. Two ways to ask it: `vcgencmd
# get_throttled` (raspi-utils, a mailbox call) and the firmware driver's sysfs file, which current
# Raspberry Pi kernels mark deprecated (its first read in a boot logs a kernel warning:
# drivers/firmware/raspberrypi.c, get_throttled_show), so vcgencmd comes first. The daemon asks once
# per stats interval (one short-lived process); the way that answered first is kept, and a machine
# with neither (not a Pi) is found out at the first read and never asked again.

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SYSFS = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")
BITS = {0: "under-voltage", 1: "ARM frequency capped", 2: "throttled", 3: "soft temperature limit"}
SINCE_BOOT = 16  # bit + 16: the same condition, at any time since boot
TIMEOUT_S = 2.0


def decode(value: int) -> tuple[list[str], list[str]]:
    """(flags set now, flags set since boot) of a get_throttled mask."""
    now = [name for bit, name in BITS.items() if value >> bit & 1]
    since = [name for bit, name in BITS.items() if value >> (bit + SINCE_BOOT) & 1]
    return now, since


class FirmwareFlags:
    """`read()`: the mask and where it came from, or None (not a Pi, or this read failed)."""

    def __init__(self, vcgencmd: str | None = None, sysfs: Path = SYSFS) -> None:
        self._vcgencmd = vcgencmd  # None: looked up on PATH at the first read
        self._sysfs = sysfs
        self._way: str | None = None  # "vcgencmd", "sysfs", or "none" once the first read found neither

    def read(self) -> tuple[int, str] | None:
        if self._way is None:
            self._vcgencmd = self._vcgencmd or shutil.which("vcgencmd")
            for way in ("vcgencmd", "sysfs"):
                found = self._ask(way)
                if found is not None:
                    self._way = way
                    return found
            self._way = "none"
            return None
        return None if self._way == "none" else self._ask(self._way)

    def _ask(self, way: str) -> tuple[int, str] | None:
        if way == "vcgencmd":
            if not self._vcgencmd:
                return None
            try:
                run = subprocess.run([self._vcgencmd, "get_throttled"], capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
                return int(run.stdout.split("=", 1)[1].strip(), 16), "vcgencmd get_throttled"  # throttled=0x50005
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return None
        try:
            return int(self._sysfs.read_text().strip(), 16), str(self._sysfs)
        except (OSError, ValueError):
            return None
