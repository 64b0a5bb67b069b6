"""The role's wheelhouse check (deploy/roles/mnv1_edge/filter_plugins/wheel_tags.py): tags against a device's Python, glibc and CPU."""

from __future__ import annotations

import importlib.util

from edge import paths

_spec = importlib.util.spec_from_file_location("wheel_tags", paths.REPO_ROOT / "deploy/roles/mnv1_edge/filter_plugins/wheel_tags.py")
assert _spec and _spec.loader
wheel_tags = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wheel_tags)

BOOKWORM_AARCH64 = [
    "mnv1_edge-0.9.0-py3-none-any.whl",
    "numpy-2.2.6-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
    "ai_edge_litert-2.3.0-cp311-cp311-manylinux_2_27_aarch64.whl",
    "pillow-11.3.0-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl",
    "paho_mqtt-2.1.0-py3-none-any.whl",
]
TRIXIE_AARCH64 = [w.replace("cp311-cp311", "cp313-cp313") for w in BOOKWORM_AARCH64]


def test_a_wheelhouse_for_the_device_fits() -> None:
    fit = wheel_tags.wheelhouse_fit(TRIXIE_AARCH64, "3.13.5", "2.41", "aarch64")
    assert fit == {"misfits": [], "built_for": "CPython 3.13, glibc >= 2.27, aarch64"}
    assert wheel_tags.wheelhouse_fit(BOOKWORM_AARCH64, "3.11.2", "2.36", "aarch64")["misfits"] == []


def test_a_bookworm_wheelhouse_on_trixie_names_both() -> None:
    fit = wheel_tags.wheelhouse_fit([f"/x/{w}" for w in BOOKWORM_AARCH64], "3.13.5", "2.41", "aarch64")
    assert fit["built_for"] == "CPython 3.11, glibc >= 2.27, aarch64"
    assert fit["misfits"] == sorted(w for w in BOOKWORM_AARCH64 if "cp311" in w)


def test_glibc_cpu_and_abi3() -> None:
    new_glibc = "cryptography-46.0.0-cp311-abi3-manylinux_2_34_aarch64.whl"
    assert wheel_tags.wheelhouse_fit([new_glibc], "3.13.5", "2.41", "aarch64")["misfits"] == []  # abi3: any later CPython
    assert wheel_tags.wheelhouse_fit([new_glibc], "3.11.2", "2.31", "aarch64")["misfits"] == [new_glibc]  # glibc too old
    assert wheel_tags.wheelhouse_fit([new_glibc], "3.13.5", "2.41", "x86_64")["misfits"] == [new_glibc]  # other CPU
    assert wheel_tags.wheelhouse_fit([new_glibc], "3.10.12", "2.41", "aarch64")["misfits"] == [new_glibc]  # abi3 from 3.11 on
    legacy = "PyYAML-6.0.2-cp313-cp313-manylinux2014_aarch64.whl"
    assert wheel_tags.wheelhouse_fit([legacy], "3.13.5", "2.17", "aarch64")["misfits"] == []
    assert wheel_tags.wheelhouse_fit(["not-a-wheel.whl"], "3.13.5", "2.41", "aarch64")["misfits"] == ["not-a-wheel.whl"]
