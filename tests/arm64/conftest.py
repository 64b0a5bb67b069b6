"""The arm64 userland stage's fixture: the emulated arm64 chroots and their venvs, prepared once per module under the shared lock."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.arm64.arm64_env import Arm64, locked, prepare


@pytest.fixture(scope="module")
def arm64(shared: Path) -> Iterator[Arm64]:
    if os.geteuid() != 0:
        pytest.skip("the arm64 stage needs root (debootstrap, binfmt_misc, chroot, mounts); CI runs as root")
    for tool in ("debootstrap", "unshare", "chroot", "qemu-aarch64-static"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} missing: apt-get install debootstrap qemu-user-static (`make apt-test` does)")
    with locked():
        yield prepare(shared)
