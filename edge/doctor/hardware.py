"""The board: CPU features the int8 kernels use, and the firmware's under-voltage and throttling flags."""

from __future__ import annotations

import platform
from pathlib import Path

from edge.doctor.check import OK, SKIP, WARN, Check
from edge.throttle import FirmwareFlags, decode


def checks() -> list[Check]:
    return [cpu_check(platform.machine(), _cpu_flags()), throttle_check()]


def _cpu_flags() -> set[str]:
    """The `Features` (aarch64) or `flags` (x86) of the first CPU in /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("Features", "flags"):
            return set(value.split())
    return set()


def cpu_check(machine: str, flags: set[str]) -> Check:
    if machine in ("aarch64", "arm64"):
        if "asimddp" in flags:
            return Check("cpu", OK, "aarch64 with dot product (asimddp, Cortex-A76 / Pi 5): XNNPACK's fast int8 kernels")
        return Check(
            "cpu",
            OK,
            "aarch64 without dot product (Cortex-A72/A53, Pi 4 and earlier): int8 on plain NEON kernels",
        )
    if machine.startswith("arm"):
        return Check(
            "cpu", WARN, f"{machine}: a 32-bit OS; ai-edge-litert ships no 32-bit ARM wheels", "install the 64-bit Raspberry Pi OS (bookworm)"
        )
    if machine in ("x86_64", "AMD64"):
        have = [f for f in ("avx2", "avx512_vnni", "avx_vnni") if f in flags]
        detail = f"x86_64 with {', '.join(have)}" if have else "x86_64 without AVX2: XNNPACK falls back to SSE kernels"
        return Check("cpu", OK, detail)
    return Check("cpu", WARN, f"{machine}: not a CPU mnv1-edge is tested on", "")


def throttle_check() -> Check:
    found = FirmwareFlags().read()
    if found is None:
        return Check("power", SKIP, "no vcgencmd and no firmware get_throttled file: not a Raspberry Pi")
    return throttle_verdict(*found)


def throttle_verdict(value: int, where: str) -> Check:
    now, since = decode(value)
    if not now and not since:
        return Check("power", OK, f"{where}: 0x{value:x}, no under-voltage or throttling since boot")
    detail = f"{where}: 0x{value:x}; now: {', '.join(now) or 'none'}; since boot: {', '.join(since) or 'none'}"
    fix = "use the official power supply (5 V 3 A for a Pi 4, 5 V 5 A for a Pi 5) and a short cable" if "under-voltage" in now + since else ""
    if any(f in now + since for f in ("soft temperature limit", "throttled")):
        fix = (fix + "; " if fix else "") + "add a heatsink or fan, or give the case air"
    return Check("power", WARN, detail, fix)
