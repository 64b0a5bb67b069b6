"""`mnv1-edge run` as a real subprocess: results equal `classify`, systemd notify/watchdog,
SIGHUP reload (good and bad config), SIGTERM, stall detection, config errors."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from edge import paths
from tests.support.daemon import EXE, NotifySocket, base_config, running, wait_for_line, write_config


@pytest.fixture(scope="module")
def model(request: pytest.FixtureRequest) -> Path:
    """Our converted model when it has been built, else Google's with a manifest (same contract)."""
    name = "converted_model" if paths.default_model().is_file() else "reference_model"
    return Path(request.getfixturevalue(name))


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_results_on_the_sample_photos_equal_classify(tmp_path: Path, model: Path, shared: Path) -> None:
    samples = shared / "data" / "samples"
    config = write_config(
        tmp_path / "c.toml",
        {
            "state_dir": str(tmp_path / "state"),
            "model": {"path": str(model)},
            "source": {"kind": "images", "images": {"path": str(samples)}},
            "results": {"top_k": 5, "smoothing": "none", "publish": "every"},  # each photo a record of its own
            "sinks": {"stdout": {"enabled": True}, "file": {"enabled": False}},
        },
    )
    run = subprocess.run([EXE, "run", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    got = {r["source"]: r["top_k"] for r in map(json.loads, run.stdout.splitlines())}
    images = sorted(str(p) for p in samples.iterdir() if p.suffix in (".jpg", ".bmp"))
    ref = subprocess.run([EXE, "classify", "--json", "--top-k", "5", "--model", str(model), *images], capture_output=True, text=True, timeout=60)
    assert ref.returncode == 0, ref.stderr
    expected = {Path(r["image"]).name: r["top_k"] for r in map(json.loads, ref.stdout.splitlines())}
    assert len(expected) == 8 and got == expected
    assert "source images:" in run.stderr and "ended; 8 frames classified" in run.stderr


@pytest.mark.slow
def test_systemd_lifecycle_reload_and_stop(tmp_path: Path, model: Path) -> None:
    notify = NotifySocket(tmp_path / "notify")
    data = base_config(tmp_path, model, fps=40.0)
    config = write_config(tmp_path / "c.toml", data)
    with running(config, notify=notify, watchdog_usec=400_000) as proc:
        ready = notify.wait_for("READY=1")
        notify.wait_for("WATCHDOG=1", after=ready, timeout=5)
        assert notify.count("WATCHDOG=1", 0, ready) == 0  # no ping before the first frame was classified

        # SIGHUP with a new config: RELOADING=1, then READY=1; the new top_k applies, nothing lost.
        data["results"]["top_k"] = 2
        write_config(config, data)
        t = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING=1", after=t)
        notify.wait_for("READY=1", after=reloading)
        deadline = time.monotonic() + 10
        while not any(len(r["top_k"]) == 2 for r in records(tmp_path / "results.jsonl")[-3:]):  # type: ignore[arg-type]
            assert time.monotonic() < deadline, "reload did not take effect"
            time.sleep(0.1)

        # A broken config: the old one keeps running and the error is logged.
        config.write_text(config.read_text() + "\n[sinks.nope]\nx = 1\n")
        t = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING=1", after=t)
        notify.wait_for("READY=1", after=reloading)
        before = len(records(tmp_path / "results.jsonl"))
        time.sleep(0.5)
        assert len(records(tmp_path / "results.jsonl")) > before

        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=5)
        stopped = time.monotonic() - t
        notify.wait_for("STOPPING=1", after=t, timeout=1)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert rc == 0 and stopped < 5, stderr
    assert "reload failed, still running the previous configuration" in stderr and "sinks.nope: unknown key" in stderr
    started = [line for line in stderr.splitlines() if " started: " in line]
    assert len(started) == 1
    for part in ("runtime ai-edge-litert", "delegate XNNPACK", "threads 1", f"model {model} sha256 ", "source synthetic", "sinks file:"):
        assert part in started[0]
    assert "stats: " in stderr and " fps, inference p50 " in stderr
    seqs = [r["seq"] for r in records(tmp_path / "results.jsonl")]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # every frame published once, across both reloads
    assert int((tmp_path / "state" / "seq").read_text()) == seqs[-1] + 1


@pytest.mark.slow
def test_a_stalled_source_stops_the_watchdog(tmp_path: Path, model: Path) -> None:
    notify = NotifySocket(tmp_path / "notify")
    data = base_config(tmp_path, model, fps=0.2)  # one frame, then nothing for 5 s
    data["source"]["stall_timeout_s"] = 1.0
    with running(write_config(tmp_path / "c.toml", data), notify=notify, watchdog_usec=200_000) as proc:
        ready = notify.wait_for("READY=1")
        time.sleep(2.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    assert notify.count("WATCHDOG=1", ready, ready + 0.9) >= 3
    assert notify.count("WATCHDOG=1", ready + 1.3, ready + 2.5) == 0
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "no frame from synthetic:seed=0 for 1 s (source.stall_timeout_s)" in stderr


@pytest.mark.slow
def test_once_and_config_errors(tmp_path: Path, model: Path) -> None:
    config = write_config(tmp_path / "c.toml", base_config(tmp_path, model))
    run = subprocess.run([EXE, "run", "--config", str(config), "--once"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert len(records(tmp_path / "results.jsonl")) == 1

    bad = tmp_path / "bad.toml"
    bad.write_text('[source]\nkind = "webcam"\n')
    run = subprocess.run([EXE, "run", "--config", str(bad)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 78 and f"{bad}: source.kind: expected one of" in run.stderr

    data = base_config(tmp_path, tmp_path / "missing.tflite")
    run = subprocess.run([EXE, "run", "--config", str(write_config(bad, data))], capture_output=True, text=True, timeout=30)
    assert run.returncode == 65 and "missing.tflite: model file not found" in run.stderr


@pytest.mark.slow
def test_max_fps_caps_the_classification_rate(tmp_path: Path, model: Path) -> None:
    """A synthetic source as fast as it can go, capped at 20 fps: records are ≥ 50 ms apart."""
    data = base_config(tmp_path, model)
    data["source"]["max_fps"] = 20.0
    config = write_config(tmp_path / "c.toml", data)
    run = subprocess.run([EXE, "run", "--config", str(config), "--max-frames", "8"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    from datetime import datetime

    stamps = [datetime.fromisoformat(str(r["ts"]).replace("Z", "+00:00")).timestamp() for r in records(tmp_path / "results.jsonl")]
    assert len(stamps) == 8
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.045, gaps  # 1/20 s, less the record timestamps' millisecond rounding


@pytest.mark.slow
def test_reload_replaces_the_sinks_and_the_source_without_losing_a_result(tmp_path: Path, model: Path) -> None:
    """A reload that changes the file path, the MQTT sink (same spool, same client id) and the
    source: each old one is released before its successor opens; every seq lands exactly once."""
    from tests.support.broker import Mosquitto

    notify = NotifySocket(tmp_path / "notify")
    with Mosquitto(tmp_path / "broker") as broker:
        sub = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-t", "mnv1-edge/dev/classification"],
            stdout=subprocess.PIPE,
            text=True,
        )
        data = base_config(tmp_path, model, fps=40.0)
        data["device_id"] = "dev"
        data["sinks"]["mqtt"] = {"enabled": True, "port": broker.port, "spool": {"path": str(tmp_path / "spool")}}
        config = write_config(tmp_path / "c.toml", data)
        with running(config, notify=notify) as proc:
            ready = notify.wait_for("READY=1")
            time.sleep(0.5)
            data["source"]["synthetic"]["seed"] = 7
            data["sinks"]["file"]["path"] = str(tmp_path / "results2.jsonl")
            data["sinks"]["mqtt"]["stats_interval_s"] = 30.0
            write_config(config, data)
            proc.send_signal(signal.SIGHUP)
            reloading = notify.wait_for("RELOADING=1", after=ready)
            notify.wait_for("READY=1", after=reloading)
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        time.sleep(0.5)  # let the subscriber take the last acknowledged messages
        sub.terminate()
        received = [json.loads(line)["seq"] for line in sub.communicate(timeout=5)[0].splitlines()]
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "reloaded: " in stderr and "ERROR" not in stderr and "in use" not in stderr, stderr
    before, after = records(tmp_path / "results.jsonl"), records(tmp_path / "results2.jsonl")
    assert before and after and {r["source"].split("#")[0] for r in after} == {"synthetic"}
    seqs = [r["seq"] for r in before + after]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # contiguous across the swap
    assert sorted(set(received)) == seqs  # every record also reached the broker, none lost


@pytest.mark.slow
def test_a_reload_during_start_up_does_not_send_ready_before_the_first_frame(tmp_path: Path, model: Path) -> None:
    """READY=1 means the first frame was classified; a SIGHUP before that must not send it."""
    notify = NotifySocket(tmp_path / "notify")
    data = base_config(tmp_path, model)
    data["source"] = {"kind": "video", "video": {"url": "http://127.0.0.1:9/none.mjpg"}}  # a camera that never answers
    config = write_config(tmp_path / "c.toml", data)
    with running(config, notify=notify) as proc:
        wait_for_line(proc, " started: ")  # the model is loaded and the signals handled; no frame will come
        proc.send_signal(signal.SIGHUP)
        notify.wait_for("STATUS=reloaded; classifying video:http://127.0.0.1:9/none.mjpg", timeout=10)
        assert notify.count("READY=1", 0, time.monotonic()) == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
