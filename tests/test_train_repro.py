"""Byte-reproducible conversion: calibrated ranges rounded to a grid, the default model's recorded sha256, two numeric settings."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge import paths
from edge.convert.ranges import GRID_BITS, round_outward

REPO = Path(__file__).resolve().parent.parent


def test_rounding_absorbs_last_bit_differences_and_only_widens() -> None:
    rng = np.random.default_rng(0)
    hi = rng.uniform(0.01, 50.0, 10_000).astype(np.float32)
    lo = -hi
    nudged = np.nextafter(hi, np.float32(np.inf))  # another CPU's last bit
    same = round_outward(hi, up=True) == round_outward(nudged, up=True)
    assert same.mean() > 0.999
    assert np.all(round_outward(hi, up=True) >= hi) and np.all(round_outward(lo, up=False) <= lo)
    assert np.all(round_outward(hi, up=True) <= hi * (1 + 2.0 ** (1 - GRID_BITS)))
    assert round_outward(np.zeros(1, np.float32), up=True)[0] == 0.0
    assert round_outward(np.array([6.0], np.float32), up=True)[0] == 6.0  # ReLU6's bound stays exact


def test_expected_json_names_the_default_model() -> None:
    record = json.loads((REPO / "models" / "expected.json").read_text())
    assert len(record["sha256"]) == 64 and record["tensorflow"]


@pytest.mark.slow
def test_default_conversion_is_byte_identical_under_two_settings_and_matches_the_record(shared: Path, tmp_path: Path) -> None:
    """The `make model` conversion with threads 1 / oneDNN off and threads 2 / oneDNN on."""
    from importlib.metadata import version

    digests = []
    for threads, onednn in (("1", "0"), ("2", "1")):
        out = tmp_path / f"m{threads}.tflite"
        env = os.environ | {
            "PYTHONPATH": str(REPO),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "TF_NUM_INTRAOP_THREADS": threads,
            "OMP_NUM_THREADS": threads,
            "TF_ENABLE_ONEDNN_OPTS": onednn,
        }
        cmd = [sys.executable, "-m", "edge", "convert", "--source", str(paths.float_model()), "--out", str(out), "--latency-rounds", "0"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    record = json.loads((REPO / "models" / "expected.json").read_text())
    if version("tensorflow") != record["tensorflow"]:
        pytest.skip(f"TensorFlow {version('tensorflow')} here, the recorded sha256 is for {record['tensorflow']}")
    assert digests[0] == record["sha256"]
