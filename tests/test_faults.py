"""Bad inputs and faults from issue #14, each through the real CLI: one clear line and a sysexits status."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edge import paths
from tests.support.daemon import EXE


@pytest.fixture(scope="module")
def model(request: pytest.FixtureRequest) -> Path:
    """Our converted model when it has been built, else Google's with a manifest (same contract)."""
    name = "converted_model" if paths.default_model().is_file() else "reference_model"
    return Path(request.getfixturevalue(name))


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error" in line.lower()]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("classify", "--top-k", "0", "x.jpg"), "--top-k: expected a positive integer, got '0'"),
        (("classify", "--top-k", "-5", "x.jpg"), "--top-k: expected a positive integer, got '-5'"),
        (("classify", "--threads", "0", "x.jpg"), "--threads: expected a positive integer, got '0'"),
        (("classify", "--threads", "100000", "x.jpg"), "--threads: expected at most"),
        (("run", "--max-frames", "0"), "--max-frames: expected a positive integer, got '0'"),
        (("run", "--max-frames", "-1"), "--max-frames: expected a positive integer, got '-1'"),
        (("bench", "--frames", "0"), "--frames: expected a positive integer, got '0'"),
        (("bench", "--batches", "0"), "--batches: expected a positive integer, got '0'"),
    ],
)
def test_counts_out_of_range_are_usage_errors(args: tuple[str, ...], message: str) -> None:
    run = cli(*args)
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
