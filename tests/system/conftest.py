"""Session fixture for tests/system: one booted bookworm container, one deployment by ansible-playbook over SSH."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator

import pytest

from edge import paths
from tests.support import booted
from tests.system.deployment import DEVICE, IMAGES_IN_TARGET, TOPIC, Deployment, extra_vars, model, require_root_tools, wheelhouse
from tests.system.harness import Target, ensure_rootfs


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    require_root_tools()
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    rootfs = ensure_rootfs()
    timings["rootfs"] = time.monotonic() - t0
    workdir = tmp_path_factory.mktemp("system")
    wheel_dir, model_file = workdir / "wheelhouse", model(workdir / "model")
    wheelhouse(wheel_dir)
    timings["wheelhouse"] = time.monotonic() - t0 - timings["rootfs"]
    target = Target(rootfs, workdir / "target")
    deployment = Deployment(target, workdir, extra_vars(wheel_dir, model_file), timings)
    try:
        t1 = time.monotonic()
        target.start()
        timings["boot"] = time.monotonic() - t1
        images = target.merged / IMAGES_IN_TARGET.lstrip("/")
        images.mkdir(parents=True)
        for photo in sorted(paths.sample_images().iterdir()):
            if photo.suffix.lower() in (".jpg", ".bmp"):
                shutil.copy2(photo, images / photo.name)
        (workdir / "inventory.ini").write_text(
            "[mnv1_edge]\n"
            f"{DEVICE} ansible_host=127.0.0.1 ansible_user=root ansible_ssh_private_key_file={target.key} "
            "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ControlMaster=no -o LogLevel=ERROR'\n"
        )
        deployment.mqtt = booted.Subscriber(workdir, target.in_netns, TOPIC)
        t2 = time.monotonic()
        first = deployment.playbook()
        timings["first_playbook"] = time.monotonic() - t2
        (workdir / "first-playbook.log").write_text(first.stdout)
        timings["total_setup"] = time.monotonic() - t0
        print(f"\nsystem harness timings (s): {json.dumps({k: round(v, 1) for k, v in timings.items()})}", file=sys.stderr)
        yield deployment
    finally:
        if deployment.mqtt is not None:
            deployment.mqtt.stop()
        if os.environ.get("MNV1_EDGE_KEEP_LOGS"):
            shutil.copytree(workdir, os.environ["MNV1_EDGE_KEEP_LOGS"], dirs_exist_ok=True, ignore=shutil.ignore_patterns("root", "upper", "work"))
        target.close()
