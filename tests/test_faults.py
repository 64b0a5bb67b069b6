"""Bad inputs and faults through the real CLI: one clear line and a sysexits status (docs/design/faults.md lists them)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.daemon import base_config, write_config
from tests.support.faults import cli, model, png_bomb, small_disk

__all__ = ["model", "small_disk"]  # fixtures


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
        (("bench", "--mqtt", "localhost:abc"), "--mqtt: expected HOST or HOST:PORT with a port from 1 to 65535, got 'localhost:abc'"),
        (("convert", "--min-agreement", "nan"), "--min-agreement: expected a number from 0 to 100, got 'nan'"),
        (("convert", "--max-top1-drop", "-1"), "--max-top1-drop: expected a number from 0 to 100, got '-1'"),
        (("fleet", "--wait", "inf"), "--wait: expected a number from 0 to 3600, got 'inf'"),
        (("fleet", "--stale-after", "nan"), "--stale-after: expected a number from 1 to 2592000, got 'nan'"),
        (("fleet", "--watch", "--interval", "0"), "--interval: expected a number from 0.1 to 86400, got '0'"),
    ],
)
def test_counts_out_of_range_are_usage_errors(args: tuple[str, ...], message: str) -> None:
    run = cli(*args)
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def tampered_model(tmp_path: Path, model: Path, change: object) -> Path:
    """A copy of `model` whose manifest `change` (a callable on the parsed JSON, returning the new JSON) altered."""
    import json
    import shutil

    copy = tmp_path / "m.tflite"
    shutil.copy(model, copy)
    data = json.loads(Path(f"{model}.json").read_text())
    assert callable(change)
    Path(f"{copy}.json").write_text(json.dumps(change(data)))
    return copy


def _set(data: dict[str, object], key: str, value: object) -> dict[str, object]:
    data[key] = value
    return data


def _self_test_png(data: dict[str, dict[str, str]], text: str) -> dict[str, dict[str, str]]:
    data["self_test"]["image_png_base64"] = text
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: [d], "m.tflite.json: not an mnv1-edge manifest (a JSON list, expected an object)"),
        (lambda d: _self_test_png(d, d["self_test"]["image_png_base64"][:400]), "m.tflite.json: self_test.image_png_base64 is not a readable PNG"),
        (lambda d: _self_test_png(d, "not base64 at all!"), "m.tflite.json: self_test.image_png_base64 is not a readable PNG"),
        (lambda d: _set(d, "input_shape", [1, 224, 224, 3]), "the manifest says input 1x224x224x3 uint8, the model has 1x128x128x3 uint8"),
        (lambda d: _set(d, "output_dtype", "int8"), "the manifest says output 1x1001 int8 with 1001 labels, the model has 1x1001 uint8"),
    ],
    ids=["json-list", "truncated-png", "not-base64", "wrong-input", "wrong-output"],
)
def test_a_broken_manifest_is_one_line_naming_the_manifest(tmp_path: Path, model: Path, shared: Path, change: object, message: str) -> None:
    broken = tampered_model(tmp_path, model, change)
    run = cli("classify", "--model", str(broken), str(shared / "data" / "samples" / "owl.jpg"))
    assert run.returncode == 65, run.stderr  # EX_DATAERR
    assert "Traceback" not in run.stderr and message in run.stderr, run.stderr
    assert error_lines(run.stderr) == [line for line in run.stderr.splitlines() if line.startswith("mnv1-edge classify: error:")]


@pytest.mark.slow
def test_the_runtime_chatter_stays_out_of_stderr_unless_debug(tmp_path: Path, model: Path, shared: Path) -> None:
    run = cli("classify", "--model", str(model), str(shared / "data" / "samples" / "owl.jpg"))
    assert run.returncode == 0 and run.stderr == "", run.stderr
    config = write_config(tmp_path / "c.toml", base_config(tmp_path, model, frames=2))
    quiet = cli("run", "--config", str(config))
    assert quiet.returncode == 0 and "XNNPACK delegate" not in quiet.stderr, quiet.stderr
    debug = cli("run", "--config", str(config), "--log-level", "debug")
    assert debug.returncode == 0, debug.stderr
    assert "DEBUG edge.model.runtime: runtime: Created TensorFlow Lite XNNPACK delegate for CPU." in debug.stderr, debug.stderr
    assert "INFO: Created" not in debug.stderr


def images_config(tmp_path: Path, model: Path, path: Path) -> Path:
    data = base_config(tmp_path, model)
    data["source"] = {"kind": "images", "images": {"path": str(path)}}
    return write_config(tmp_path / "c.toml", data)


@pytest.mark.parametrize("single_file", [False, True], ids=["folder-all-unreadable", "one-non-image-file"])
def test_an_images_source_with_nothing_readable_fails(tmp_path: Path, model: Path, single_file: bool) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"not a jpeg")
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    notes = tmp_path / "notes.txt"
    notes.write_text("a text file given as the images path\n")
    run = cli("run", "--config", str(images_config(tmp_path, model, notes if single_file else folder)))
    assert run.returncode == 69, run.stderr  # EX_UNAVAILABLE, like any source that cannot give a frame
    assert "mnv1-edge run: error: source.images.path: no readable image in" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("key", "message", "status"),
    [
        ("file", "sinks.file.path: cannot create the folder of {blocker}/sub/r.jsonl ({blocker} is a file, not a folder)", 73),
        ("state", "state_dir: cannot create {blocker}/state ({blocker} is a file, not a folder)", 78),
    ],
)
def test_a_file_where_a_folder_must_be_is_named(tmp_path: Path, model: Path, key: str, message: str, status: int) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder must be\n")
    data = base_config(tmp_path, model, frames=1)
    if key == "file":
        data["sinks"]["file"]["path"] = str(blocker / "sub" / "r.jsonl")
    else:
        data["state_dir"] = str(blocker / "state")
    run = cli("run", "--config", str(write_config(tmp_path / "c.toml", data)))
    assert run.returncode == status and message.format(blocker=blocker) in run.stderr, run.stderr
    assert "File exists" not in run.stderr


@pytest.mark.slow
def test_a_second_daemon_on_one_state_dir_is_refused(tmp_path: Path, model: Path) -> None:
    import json
    import time

    from tests.support.daemon import NotifySocket, running

    data = base_config(tmp_path, model, fps=20.0)
    first_config = write_config(tmp_path / "first.toml", data)
    data["sinks"]["file"]["path"] = str(tmp_path / "second.jsonl")
    second_config = write_config(tmp_path / "second.toml", data)
    with running(first_config, notify=NotifySocket(tmp_path / "notify")) as first:
        deadline = time.monotonic() + 30
        while not (tmp_path / "results.jsonl").is_file() or not (tmp_path / "results.jsonl").read_text():
            assert first.poll() is None and time.monotonic() < deadline, "the first daemon did not start"
            time.sleep(0.1)
        second = cli("run", "--config", str(second_config), "--max-frames", "5")
        assert first.poll() is None
    assert second.returncode == 75, second.stderr  # EX_TEMPFAIL: systemd may retry once the other stops
    line = f"mnv1-edge run: error: state_dir: {tmp_path / 'state'} is in use by another mnv1-edge (pid {first.pid}); stop it first"
    assert line in second.stderr, second.stderr
    assert not (tmp_path / "second.jsonl").exists()  # refused before any record was numbered or written
    seqs = [json.loads(x)["seq"] for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert seqs == list(range(len(seqs)))
    # Once the first is gone, the lock is free again (the kernel drops it even after a kill -9).
    after = cli("run", "--config", str(second_config), "--max-frames", "3")
    assert after.returncode == 0, after.stderr
    assert json.loads((tmp_path / "second.jsonl").read_text().splitlines()[0])["seq"] > seqs[-1]


@pytest.mark.slow
def test_records_lost_on_a_full_disk_are_counted_everywhere(tmp_path: Path, model: Path, small_disk: Path) -> None:
    import json
    import re

    from tests.support.broker import Mosquitto

    (small_disk / "filler").write_bytes(b"\0" * 48 * 1024)  # a few records fit, the rest do not
    data = base_config(tmp_path, model, frames=400, fps=100.0)
    data["device_id"] = "cam"
    data["sinks"]["file"]["path"] = str(small_disk / "r.jsonl")
    with Mosquitto(tmp_path / "broker") as broker:
        data["sinks"]["mqtt"] = {"enabled": True, "port": broker.port, "stats_interval_s": 1.0, "spool": {"path": str(tmp_path / "spool")}}
        sub = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", "mnv1-edge/cam/stats"], stdout=subprocess.PIPE, text=True
        )
        try:
            run = cli("run", "--config", str(write_config(tmp_path / "c.toml", data)))
        finally:
            sub.terminate()
            out, _ = sub.communicate(timeout=10)
    assert run.returncode == 0, run.stderr
    written = len((small_disk / "r.jsonl").read_text().splitlines())
    final = re.search(r"final stats: .* published (\d+), .*; file: written (\d+), .*records lost (\d+), .*; mqtt: ", run.stderr)
    assert final is not None, run.stderr
    published, file_written, file_lost = map(int, final.groups())
    assert 0 < written == file_written and file_lost == published - written > 0
    assert f"WARNING edge.daemon: sink file: {file_lost} of {published} published records lost in this run" in run.stderr
    assert "WARNING edge.sinks.file:" in run.stderr and "records_lost" in run.stderr
    stats = [json.loads(line) for line in out.splitlines()]
    assert stats and stats[-1]["file"]["records_lost"] > 0, out
    assert stats[-1]["file"]["written"] + stats[-1]["file"]["records_lost"] == stats[-1]["published"]


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    import json
    import sys

    bomb = png_bomb(tmp_path / "bomb.png", 13000, 13000)  # 169 M pixels, under Pillow's limit
    assert bomb.stat().st_size < 1_000_000
    probe = (
        "import json, logging, sys\n"
        "from pathlib import Path\n"
        "from edge.errors import SourceError\n"
        "from edge.model.preprocess import load_image\n"
        "logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format='%(levelname)s %(name)s: %(message)s')\n"
        "try:\n"
        "    load_image(Path(sys.argv[1]))\n"
        "    error = ''\n"
        "except SourceError as exc:\n"
        "    error = str(exc)\n"
        # VmHWM, this process's own peak: getrusage's ru_maxrss also counts the parent's (Linux
        # carries it over exec from a vfork'ed parent: the pytest worker, 130-200 MB).
        "hwm = next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM:'))\n"
        "print(json.dumps({'error': error, 'maxrss_kb': hwm}))\n"
    )
    run = subprocess.run([sys.executable, "-c", probe, str(bomb)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert "13000x13000 pixels (169 M) is more than the decode budget of 16 M pixels" in result["error"]
    assert result["maxrss_kb"] < 100_000, result  # a full decode took 730 MB; reading a PNG's EXIF, 200 MB
    # Pillow's own warning goes through the log, not straight to stderr.
    assert "WARNING edge.model.decode:" in run.stdout and "DecompressionBombWarning" not in run.stderr, (run.stdout, run.stderr)


@pytest.mark.slow
def test_a_daemon_skips_a_bomb_and_goes_on(tmp_path: Path, model: Path, shared: Path) -> None:
    import json

    folder = tmp_path / "in"
    folder.mkdir()
    png_bomb(folder / "a-bomb.png", 13000, 13000)
    (folder / "b-owl.jpg").write_bytes((shared / "data" / "samples" / "owl.jpg").read_bytes())
    data = base_config(tmp_path, model)
    data["source"] = {"kind": "images", "images": {"path": str(folder)}}
    run = cli("run", "--config", str(write_config(tmp_path / "c.toml", data)))
    assert run.returncode == 0, run.stderr
    assert "skipped unreadable image:" in run.stderr and "a-bomb.png: 13000x13000 pixels" in run.stderr
    assert [json.loads(x)["source"] for x in (tmp_path / "results.jsonl").read_text().splitlines()] == ["b-owl.jpg"]


def check_config(tmp_path: Path, data: dict[str, object]) -> subprocess.CompletedProcess[str]:
    return cli("check-config", str(write_config(tmp_path / "c.toml", data)))


def test_check_config_of_an_empty_file_names_the_missing_model(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    run = cli("check-config", str(empty))
    assert run.returncode == 78, run.stdout + run.stderr
    assert f"mnv1-edge check-config: error: {empty}: model.path: cannot read /opt/mnv1-edge/models/" in run.stderr
    assert "every key is at its default (an empty config?)" in run.stderr and "OK" not in run.stdout


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("model", "model.path: cannot read {tmp}/missing.tflite (No such file or directory)"),
        ("password", "sinks.mqtt.password_file: cannot read {tmp}/nope.secret (No such file or directory)"),
        ("tls", "sinks.mqtt.tls.ca_file: cannot read {tmp}/ca.pem (No such file or directory)"),
        ("images", "source.images.path: no images in {tmp}/empty"),
        ("state", "state_dir: {tmp}/blocker is a file, not a folder"),
        ("spool", "sinks.mqtt.spool.path: {tmp}/blocker is a file, not a folder"),
        ("file", "sinks.file.path: {tmp} is a folder; give a file path"),
        ("snapshots", "snapshots.path: {tmp}/blocker is a file, not a folder"),
        ("prometheus", "sinks.prometheus.path: {tmp}/no-such-dir/m.prom: cannot write Prometheus metrics: folder {tmp}/no-such-dir does not exist"),
    ],
)
def test_check_config_checks_what_run_needs(tmp_path: Path, model: Path, key: str, message: str) -> None:
    (tmp_path / "blocker").write_text("a file\n")
    (tmp_path / "empty").mkdir()
    data = base_config(tmp_path, model)
    mqtt: dict[str, object] = {"enabled": True, "spool": {"path": str(tmp_path / "spool")}}
    if key == "model":
        data["model"]["path"] = str(tmp_path / "missing.tflite")
    elif key == "password":
        data["sinks"]["mqtt"] = {**mqtt, "username": "cam", "password_file": str(tmp_path / "nope.secret")}
    elif key == "tls":
        data["sinks"]["mqtt"] = {**mqtt, "tls": {"enabled": True, "ca_file": str(tmp_path / "ca.pem")}}
    elif key == "images":
        data["source"] = {"kind": "images", "images": {"path": str(tmp_path / "empty")}}
    elif key == "state":
        data["state_dir"] = str(tmp_path / "blocker" / "state")
    elif key == "spool":
        data["sinks"]["mqtt"] = {**mqtt, "spool": {"path": str(tmp_path / "blocker" / "spool")}}
    elif key == "file":
        data["sinks"]["file"]["path"] = str(tmp_path)
    elif key == "snapshots":
        data["snapshots"] = {"enabled": True, "path": str(tmp_path / "blocker" / "snaps")}
    elif key == "prometheus":
        data["sinks"]["prometheus"] = {"enabled": True, "path": str(tmp_path / "no-such-dir" / "m.prom")}
    run = check_config(tmp_path, data)
    assert run.returncode == 78, run.stdout + run.stderr
    assert f"mnv1-edge check-config: error: {tmp_path / 'c.toml'}: {message.format(tmp=tmp_path)}\n" in run.stderr, run.stderr


@pytest.mark.slow
def test_check_config_says_what_it_checked_and_what_it_could_not(tmp_path: Path, model: Path) -> None:
    import os

    data = base_config(tmp_path, model)
    data["sinks"]["mqtt"] = {"enabled": True, "spool": {"path": str(tmp_path / "spool")}}
    run = check_config(tmp_path, data)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"{tmp_path / 'c.toml'}: OK (")
    assert "checked: model.path and its manifest; state_dir; sinks.file.path; sinks.mqtt files" in run.stdout
    assert "not checked: loading the model into the TFLite runtime" in run.stdout
    assert "connecting to the MQTT broker 127.0.0.1:1883 (only `run` does)" in run.stdout
    if os.geteuid() == 0:
        assert "permissions as the service user mnv1-edge (checked as root" in run.stdout
    syntax = cli("check-config", "--syntax-only", str(tmp_path / "c.toml"))
    assert syntax.returncode == 0 and "syntax OK" in syntax.stdout and "not checked (--syntax-only)" in syntax.stdout


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"state_dir": ""}, "state_dir: must not be empty (it would be the current directory)"),
        ({"sinks": {"mqtt": {"host": ""}}}, "sinks.mqtt.host: expected a host name or address"),
        ({"device_id": "cam\u0085"}, "device_id: must not contain / # + spaces or control characters"),
        ({"sinks": {"mqtt": {"client_id": "cam\ufffe"}}}, "sinks.mqtt.client_id: must not contain # + or control characters"),
        ({"source": {"stall_timeout_s": 0.001}}, "source.stall_timeout_s: must be at least 1, got 0.001"),
        ({"sinks": {"file": {"max_bytes": 1, "keep": 0}}}, "sinks.file.max_bytes: must be 0 (never rotate) or at least 65536, got 1"),
    ],
)
def test_values_that_misbehaved_at_run_time_are_config_errors(tmp_path: Path, change: dict[str, object], message: str) -> None:
    config = tmp_path / "c.toml"
    write_config(config, change)
    run = cli("check-config", "--syntax-only", str(config))
    assert run.returncode == 78 and f"{config}: {message}" in run.stderr, run.stderr


def test_a_folder_given_as_the_model_is_named_as_such(tmp_path: Path, shared: Path) -> None:
    run = cli("classify", "--model", str(tmp_path), str(shared / "data" / "samples" / "owl.jpg"))
    assert run.returncode == 65 and f"{tmp_path}: is a folder; give the model file (.tflite)" in run.stderr, run.stderr


def test_check_config_loads_the_tls_files_and_notes_relative_paths(tmp_path: Path, model: Path) -> None:
    not_pem = tmp_path / "client.pem"
    not_pem.write_text("not a certificate\n")
    data = base_config(tmp_path, model)
    data["sinks"]["file"]["path"] = "results.jsonl"
    data["sinks"]["mqtt"] = {
        "enabled": True,
        "spool": {"path": str(tmp_path / "spool")},
        "tls": {"enabled": True, "cert_file": str(not_pem), "key_file": str(not_pem)},
    }
    run = check_config(tmp_path, data)
    assert run.returncode == 78, run.stdout + run.stderr
    assert "sinks.mqtt.tls: cannot load the CA or client certificate" in run.stderr
    assert "note: sinks.file.path: results.jsonl is relative: resolved against the current directory" in run.stderr


def test_check_config_knows_when_picamera2_cannot_be_imported(tmp_path: Path, model: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("picamera2") is not None:
        pytest.skip("picamera2 is installed here")
    data = base_config(tmp_path, model)
    data["source"] = {"kind": "picamera2"}
    run = check_config(tmp_path, data)
    assert run.returncode == 78 and 'source.kind: "picamera2" but the picamera2 library is not importable' in run.stderr, run.stderr


def test_a_config_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_bytes(b'\xef\xbb\xbfdevice_id = "cam"\r\n')  # as Notepad saves "UTF-8 with BOM"
    run = cli("check-config", "--syntax-only", str(config))
    assert run.returncode == 0 and "syntax OK (device cam" in run.stdout, run.stderr


def test_info_accepts_an_upper_case_sha256_pin(tmp_path: Path, model: Path) -> None:
    from edge.fsutil import sha256_file

    config = write_config(tmp_path / "c.toml", {"model": {"path": str(model), "sha256": sha256_file(model).upper()}})
    run = cli("info", "--config", str(config))
    assert run.returncode == 0 and "delegate" in run.stdout, run.stderr


def test_a_lock_file_the_daemon_cannot_write_still_locks(tmp_path: Path, model: Path) -> None:
    """A lock file left by a run as another user (here made immutable with chattr, since root may
    write anything) is still flock'ed through a read-only descriptor."""
    import os

    state = tmp_path / "state"
    state.mkdir()
    lock = state / "lock"
    lock.write_text("999999999\n")  # a pid from a run long gone
    if os.geteuid() != 0 or subprocess.run(["chattr", "+i", str(lock)], capture_output=True).returncode != 0:
        pytest.skip("needs root and a file system with chattr +i")
    try:
        config = write_config(tmp_path / "c.toml", base_config(tmp_path, model, frames=3))
        run = cli("run", "--config", str(config))
        assert run.returncode == 0, run.stderr
        assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 3
    finally:
        subprocess.run(["chattr", "-i", str(lock)], check=True)


@pytest.mark.slow
def test_a_video_source_that_is_not_a_video_is_one_readable_line(tmp_path: Path, model: Path) -> None:
    not_video = tmp_path / "clip.mp4"
    not_video.write_text("not a video\n")
    data = base_config(tmp_path, model)
    data["source"] = {"kind": "video", "video": {"url": str(not_video)}}
    run = cli("run", "--config", str(write_config(tmp_path / "c.toml", data)))
    assert run.returncode == 69, run.stderr
    assert f"mnv1-edge run: error: video:{not_video}: cannot open (Invalid data found when processing input); is it a video file" in run.stderr
    assert "Errno" not in run.stderr


def test_eval_refuses_a_class_index_no_model_has(tmp_path: Path, model: Path, shared: Path) -> None:
    folder = tmp_path / "labelled"
    folder.mkdir()
    (folder / "owl.jpg").write_bytes((shared / "data" / "samples" / "owl.jpg").read_bytes())
    (folder / "labels.csv").write_text("file,synset,class_index,class_name\nowl.jpg,n01621127,5000,owl\n")
    run = cli("eval", "--images", str(folder), "--rounds", "0", str(model))
    assert run.returncode == 69, run.stdout + run.stderr  # was 0, scoring the image as a miss
    assert f"{folder / 'labels.csv'}: malformed row at line 2 (class_index 5000 out of range 0-1000)" in run.stderr


def test_python_warnings_reach_the_journal_as_warnings() -> None:
    import os
    import sys

    code = "from edge.log import setup; setup(); import warnings; warnings.warn('a library complains')"
    env = {**os.environ, "MNV1_EDGE_LOG_FORMAT": "journal"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 0 and run.stderr.startswith("<4>py.warnings: "), run.stderr
    assert "UserWarning: a library complains" in run.stderr


@pytest.mark.slow
def test_a_reload_to_a_config_check_config_refuses_keeps_the_running_one(tmp_path: Path, model: Path) -> None:
    """A missing password file used to surface only after the running sinks were released: the
    daemon then exited. Now the reload is refused up front and the old configuration keeps running."""
    import json
    import signal
    import time

    from tests.support.daemon import NotifySocket, running

    notify = NotifySocket(tmp_path / "notify")
    data = base_config(tmp_path, model, fps=20.0)
    config = write_config(tmp_path / "c.toml", data)
    with running(config, notify=notify) as proc:
        notify.wait_for("READY=1")
        mqtt = {"enabled": True, "username": "cam", "password_file": str(tmp_path / "missing.secret")}
        write_config(config, {**data, "sinks": {**data["sinks"], "mqtt": {**mqtt, "spool": {"path": str(tmp_path / "spool")}}}})
        t = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING=1", after=t)
        notify.wait_for("READY=1", after=reloading)
        before = len((tmp_path / "results.jsonl").read_text().splitlines())
        time.sleep(0.5)
        assert proc.poll() is None and len((tmp_path / "results.jsonl").read_text().splitlines()) > before
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "reload failed, still running the previous configuration: sinks.mqtt.password_file: cannot read" in stderr, stderr
    seqs = [json.loads(line)["seq"] for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_each_sink_says_what_it_lost_and_a_call_that_raised_counts_too(tmp_path: Path) -> None:
    from edge.config import FileSinkConfig, parse
    from edge.daemon.fanout import SinkFanout
    from edge.sinks.file import FileSink
    from edge.sinks.mqtt.sink import MqttSink
    from edge.sinks.stdout import StdoutSink

    file = FileSink(FileSinkConfig(path=str(tmp_path / "r.jsonl")))
    file._write_errors, file._fsync_errors = 3, 1  # a failed write loses its record; a failed fsync does not
    mqtt = MqttSink(parse({"sinks": {"mqtt": {"enabled": True, "spool": {"path": str(tmp_path / "spool")}}}}).sinks.mqtt, "cam")
    mqtt.spool.counters.update(dropped_full=4, write_errors=2)  # dropped from the spool, or never stored
    mqtt.counters["dropped_closed"] = 1  # written while closing
    stdout = StdoutSink()
    stdout.write = lambda record: 1 / 0  # type: ignore[method-assign,assignment,misc]
    fanout = SinkFanout()
    fanout.sinks += [stdout]
    for _ in range(2):
        fanout.write(None)  # type: ignore[arg-type]
    fanout.sinks[:0] = [file, mqtt]
    sinks = fanout.stats()
    assert {name: sink.lost for name, sink in sinks.items()} == {"file": 3, "mqtt": 7, "stdout": 2}
    assert {name: sink.errors for name, sink in sinks.items()} == {"file": 4, "mqtt": 2, "stdout": 2}
    assert sinks["stdout"].raised == 2 and sinks["file"].raised == 0
