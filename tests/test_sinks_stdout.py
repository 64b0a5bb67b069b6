"""The stdout sink's two formats, through a real `mnv1-edge run` on the sample photos: JSON lines for pipes, one line for people."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.daemon import EXE, base_config, write_config


def _run(tmp_path: Path, model: Path, shared: Path, stdout: dict[str, object]) -> list[str]:
    config = base_config(tmp_path, model)
    config["source"] = {"kind": "images", "images": {"path": str(shared / "data" / "samples" / "parrot.jpg")}}
    config["results"]["groups"] = ["animal", "vehicle", "food"]
    config["sinks"]["stdout"] = {"enabled": True, **stdout}
    run = subprocess.run([EXE, "run", "--config", str(write_config(tmp_path / "c.toml", config))], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


@pytest.mark.slow
def test_text_format_gives_the_group_answer_with_the_top_label_beside_it(tmp_path: Path, converted_model: Path, shared: Path) -> None:
    lines = _run(tmp_path, converted_model, shared, {"format": "text"})
    assert len(lines) == 1
    source, rest = lines[0].split(": ", 1)
    assert source == "parrot.jpg"
    assert rest.startswith("animal 0.9") and rest.endswith(")") and "(top label: macaw 0." in rest, lines


@pytest.mark.slow
def test_json_stays_the_default(tmp_path: Path, converted_model: Path, shared: Path) -> None:
    (line,) = _run(tmp_path, converted_model, shared, {})
    record = json.loads(line)
    assert record["answer"] == "animal" and record["top_k"][0]["label"] == "macaw"
