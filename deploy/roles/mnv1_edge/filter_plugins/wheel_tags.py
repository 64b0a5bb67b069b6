"""Ansible filter: whether a wheelhouse's wheels install on a device's Python, glibc and CPU (their file-name tags)."""

from __future__ import annotations

import re
from typing import Any

# PEP 600 legacy aliases: the glibc each old manylinux tag stands for.
_LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_PLATFORM = re.compile(r"^(?:manylinux_(\d+)_(\d+)|(manylinux1|manylinux2010|manylinux2014))_(\w+)$")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _python_fits(python_tag: str, abi_tag: str, python: tuple[int, ...]) -> bool:
    """py3 / py3N pure wheels, cp3N for exactly this Python, abi3 for this Python or older."""
    major, minor = python[:2]
    for tag in python_tag.split("."):
        found = re.fullmatch(r"(py|cp)(\d)(\d*)", tag)
        if not found or int(found.group(2)) != major:
            continue
        kind, tag_minor = found.group(1), int(found.group(3) or 0)
        if kind == "py" and (not found.group(3) or tag_minor <= minor):
            return True
        if kind == "cp" and (tag_minor == minor or ("abi3" in abi_tag.split(".") and tag_minor <= minor)):
            return True
    return False


def _platform_fits(platform_tag: str, glibc: tuple[int, ...], machine: str) -> bool:
    for tag in platform_tag.split("."):
        if tag == "any":
            return True
        found = _PLATFORM.match(tag)
        if found and found.group(4) == machine:
            need = _LEGACY[found.group(3)] if found.group(3) else (int(found.group(1)), int(found.group(2)))
            if need <= glibc[:2]:
                return True
    return False


def _built_for(wheels: list[str]) -> str:
    """What the compiled wheels of a wheelhouse ask for, e.g. 'CPython 3.11, glibc >= 2.28, aarch64'."""
    pythons, glibcs, machines = set(), set(), set()
    for name in wheels:
        parts = name[: -len(".whl")].split("-")
        pythons |= {f"{t[2]}.{t[3:]}" for t in parts[-3].split(".") if re.fullmatch(r"cp\d\d+", t) and parts[-2] != "abi3"}
        needs = []  # a wheel with several tags needs the oldest glibc among them
        for tag in parts[-1].split("."):
            found = _PLATFORM.match(tag)
            if found:
                machines.add(found.group(4))
                needs.append(_LEGACY[found.group(3)] if found.group(3) else (int(found.group(1)), int(found.group(2))))
        if needs:
            glibcs.add(min(needs))
    python = "CPython " + "/".join(sorted(pythons, key=_version)) if pythons else "any Python 3"
    glibc = f"glibc >= {max(glibcs)[0]}.{max(glibcs)[1]}" if glibcs else "any glibc"
    return ", ".join((python, glibc, "/".join(sorted(machines)) or "any CPU"))


def wheelhouse_fit(wheels: list[str], python: str, glibc: str, machine: str) -> dict[str, Any]:
    """{'misfits': wheel names that cannot install on Python `python` (X.Y.Z) with glibc `glibc` on
    `machine`, 'built_for': what the wheelhouse's wheels ask for}; `wheels` are file names or paths."""
    names = [w.rsplit("/", 1)[-1] for w in wheels]
    py, libc = _version(python), _version(glibc)
    misfits = []
    for name in names:
        parts = name[: -len(".whl")].split("-")
        if len(parts) < 5:
            misfits.append(name)
            continue
        if not (_python_fits(parts[-3], parts[-2], py) and _platform_fits(parts[-1], libc, machine)):
            misfits.append(name)
    return {"misfits": sorted(misfits), "built_for": _built_for(names)}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"mnv1_edge_wheelhouse_fit": wheelhouse_fit}
