"""The arm64 test userlands: cached Debian rootfs (bookworm and trixie), aarch64 wheelhouses, venvs, chroot runs under qemu-user.

Everything slow is cached outside the clone (in $MNV1_EDGE_TEST_CACHE, default
/var/cache/mnv1-edge-test) and rebuilt only when its recipe changes. Needs root (debootstrap,
binfmt_misc, chroot, mounts). Every run gets its mounts in a private mount namespace of its own
(`unshare --mount`), so they vanish with the process, whatever way it ends.

`python tests/arm64/arm64_env.py` builds (or checks) the cache and prints the time of each step.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from tests.pi.image import ensure_rootfs as ensure_trixie_rootfs

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MNV1_EDGE_TEST_CACHE", "/var/cache/mnv1-edge-test"))
ROOTFS = CACHE / "arm64-rootfs"
MIRROR = os.environ.get("MNV1_EDGE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"  # what 64-bit Raspberry Pi OS was built on until late 2025 (Python 3.11, glibc 2.36)
DEBOOTSTRAP = ("debootstrap", "--arch=arm64", "--variant=minbase", "--include=python3,python3-venv", SUITE)
BINFMT = Path("/proc/sys/fs/binfmt_misc")
# Debian's qemu-user-static registration; its flags (OPF) include F: the kernel opens the
# interpreter at registration, so it works inside a chroot that does not contain it.
BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
PYTHON = "3.11"  # bookworm's python3
# pip matches --platform tags exactly; bookworm's glibc 2.36 runs every manylinux tag up to it.
PLATFORMS = ("manylinux2014_aarch64", *(f"manylinux_2_{minor}_aarch64" for minor in range(17, 37)))


@dataclass(frozen=True)
class Os:
    """A Debian release as a chroot: its Python, the manylinux tags its glibc runs, where venvs go in it."""

    name: str
    python: str
    platforms: tuple[str, ...]
    venv_prefix: str


BOOKWORM = Os("bookworm", PYTHON, PLATFORMS, "/opt/mnv1-edge")
# Today's Raspberry Pi OS: Python 3.13, glibc 2.41. Its rootfs is the emulated Pi's (tests/pi/image.py),
# shared so it is built once; venvs go where the Pi's image leaves them out.
TRIXIE = Os("trixie", "3.13", ("manylinux2014_aarch64", *(f"manylinux_2_{minor}_aarch64" for minor in range(17, 42))), "/opt/mnv1-edge-test")
# Where the chroot sees the checkout, the shared data and the test's output folder.
IN_REPO, IN_SHARED, IN_OUT = "/mnt/repo", "/mnt/shared", "/mnt/out"
PYCACHE = "/var/cache/mnv1-edge-pycache"  # the repo is mounted read-only; bytecode goes here


class Arm64Error(Exception):
    """The arm64 userland could not be built or entered."""


def _host_pin(dist: str, fallback: str) -> str:
    """The version this host runs, so the two architectures are compared on the same releases."""
    try:
        return f"{dist}=={version(dist)}"
    except PackageNotFoundError:
        return fallback


@dataclass(frozen=True)
class Venv:
    name: str
    runtime: str  # the MNV1_EDGE_RUNTIME it runs with
    requirements: tuple[str, ...]
    os: Os = BOOKWORM

    @property
    def key(self) -> str:
        recipe = "\n".join((*self.requirements, *self.os.platforms, self.os.python))
        return hashlib.sha256(recipe.encode()).hexdigest()[:12]

    @property
    def path(self) -> str:
        """The venv's path inside the rootfs."""
        return f"{self.os.venv_prefix}/venv-{self.name}"


CURRENT = Venv(
    "current",
    "ai-edge-litert",
    (_host_pin("ai-edge-litert", "ai-edge-litert"), _host_pin("numpy", "numpy"), _host_pin("pillow", "pillow"), "paho-mqtt>=2,<3", "pytest>=8"),
)
# Many Pi OS bookworm images carry tflite-runtime 2.14, built against NumPy 1.x.
LEGACY = Venv("legacy", "tflite-runtime", ("tflite-runtime==2.14.*", "numpy<2", _host_pin("pillow", "pillow"), "paho-mqtt>=2,<3", "pytest>=8"))
# On trixie with the NumPy Debian ships (2.2, what python3-picamera2 brings); tflite-runtime stops at
# Python 3.11 (no cp313 wheel exists), so trixie has no legacy venv.
TRIXIE_CURRENT = Venv(
    "trixie",
    "ai-edge-litert",
    (_host_pin("ai-edge-litert", "ai-edge-litert"), "numpy==2.2.*", _host_pin("pillow", "pillow"), "paho-mqtt>=2,<3", "pytest>=8"),
    TRIXIE,
)
VENVS = (CURRENT, LEGACY, TRIXIE_CURRENT)


@dataclass(frozen=True)
class Cpu:
    """An emulated Raspberry Pi CPU: qemu's model (QEMU_CPU) and the /proc/cpuinfo a Pi shows."""

    qemu: str
    part: str  # MIDR part number
    features: str
    boards: str

    def cpuinfo(self, count: int) -> str:
        # qemu-user passes the host's x86 /proc/cpuinfo through; XNNPACK's cpuinfo library then
        # crashes (with /sys) or gives up and XNNPACK is not applied (without /sys).
        block = (
            "processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
            "CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 1\n\n"
        )
        return "".join(block.format(n=n, features=self.features, part=self.part) for n in range(count))


CPUS = {
    "cortex-a53": Cpu("cortex-a53", "0xd03", "fp asimd evtstrm crc32 cpuid", "Pi 3, Zero 2 W"),
    "cortex-a72": Cpu("cortex-a72", "0xd08", "fp asimd evtstrm crc32 cpuid", "Pi 4, Pi 400, CM4"),
    "cortex-a76": Cpu(
        "cortex-a76", "0xd0b", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp", "Pi 5"
    ),
}

# Runs as PID 1 of nothing special: mounts in its own namespace, then becomes the chroot's command.
MOUNT_SCRIPT = r"""
root=$1 repo=$2 shared=$3 out=$4 cpuinfo=$5; shift 5
mount -t proc proc "$root/proc"
mount --bind "$cpuinfo" "$root/proc/cpuinfo"
mount --bind /sys "$root/sys"; mount -o remount,bind,ro "$root/sys"
mount --bind /dev "$root/dev"
mount -t tmpfs -o size=1g tmpfs "$root/tmp"
mount --bind "$repo" "$root/mnt/repo"; mount -o remount,bind,ro "$root/mnt/repo"
mount --bind "$shared" "$root/mnt/shared"; mount -o remount,bind,ro "$root/mnt/shared"
mount --bind "$out" "$root/mnt/out"
exec chroot "$root" "$@"
"""


@dataclass(frozen=True)
class Arm64:
    """A prepared arm64 userland; `command` builds the argv of one run inside it."""

    rootfs: Path
    trixie_rootfs: Path
    shared: Path
    host_legacy_python: Path  # an x86_64 venv with the legacy venv's requirements
    timings: Mapping[str, float]

    def command(self, venv: Venv, argv: Sequence[str], out: Path, cpu: str = "cortex-a72", env: Mapping[str, str] | None = None) -> list[str]:
        """argv that runs `argv` in the chroot with `venv` on PATH, under qemu's `cpu`; `out` is /mnt/out."""
        model = CPUS[cpu]
        cpuinfo = out / f".cpuinfo-{cpu}"
        cpuinfo.write_text(model.cpuinfo(os.cpu_count() or 1))
        environment = {
            "PATH": f"{venv.path}/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONPATH": IN_REPO,
            "PYTHONPYCACHEPREFIX": PYCACHE,
            "PYTHONUNBUFFERED": "1",
            "MNV1_EDGE_SHARED": IN_SHARED,
            "MNV1_EDGE_RUNTIME": venv.runtime,
            "QEMU_CPU": model.qemu,
            **(env or {}),
        }
        rootfs = self.trixie_rootfs if venv.os is TRIXIE else self.rootfs
        mounts = [str(rootfs), str(REPO), str(self.shared), str(out), str(cpuinfo)]
        chroot_argv = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in environment.items()), *argv]
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", MOUNT_SCRIPT, "sh", *mounts, *chroot_argv]

    def run(self, venv: Venv, argv: Sequence[str], out: Path, cpu: str = "cortex-a72", timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(venv, argv, out, cpu), capture_output=True, text=True, timeout=timeout, check=False)


@contextmanager
def locked() -> Iterator[None]:
    """One user of the cache at a time (a developer's run and CI's may overlap)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "arm64.lock", "w") as fd:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def prepare(shared: Path) -> Arm64:
    """Build what is missing (binfmt entry, rootfs, wheelhouses, venvs); call with `locked()` held."""
    timings: dict[str, float] = {}
    with _timed(timings, "binfmt"):
        ensure_binfmt()
    with _timed(timings, "rootfs"):
        ensure_rootfs()
    with _timed(timings, "rootfs-trixie"):
        trixie = ensure_trixie_rootfs()
        _mount_points(trixie)
    for venv in VENVS:
        with _timed(timings, f"wheels-{venv.name}"):
            wheels = ensure_wheelhouse(venv)
        with _timed(timings, f"venv-{venv.name}"):
            ensure_venv(venv, wheels, trixie if venv.os is TRIXIE else ROOTFS)
    with _timed(timings, "host-venv-legacy"):
        legacy_python = ensure_host_venv(LEGACY)
    return Arm64(ROOTFS, trixie, shared, legacy_python, timings)


def ensure_binfmt() -> None:
    if not (BINFMT / "status").exists():
        _check(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], "mount binfmt_misc")
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists():
        if not BINFMT_CONF.is_file():
            raise Arm64Error(f"{BINFMT_CONF} missing: apt-get install qemu-user-static")
        (BINFMT / "register").write_text(BINFMT_CONF.read_text().strip())
    fields = dict(line.partition(" ")[::2] for line in entry.read_text().splitlines())
    if "enabled" not in fields or "F" not in fields.get("flags:", ""):
        raise Arm64Error(f"{entry}: qemu-aarch64 is registered without the F flag or disabled; re-register it from {BINFMT_CONF}")


def ensure_rootfs() -> None:
    stamp = ROOTFS / ".mnv1-edge-rootfs"
    recipe = " ".join(DEBOOTSTRAP)
    if stamp.is_file() and stamp.read_text() == recipe:
        _mount_points(ROOTFS)
        return
    for stale in CACHE.glob("arm64-rootfs.tmp*"):
        shutil.rmtree(stale)
    tmp = CACHE / f"arm64-rootfs.tmp{os.getpid()}"
    log = CACHE / "arm64-debootstrap.log"
    # debootstrap mounts /proc and /sys in the target; a private namespace drops them on any exit
    with open(log, "w") as fd:
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "--", *DEBOOTSTRAP, str(tmp), MIRROR], stdout=fd, stderr=fd, check=False
        )
    if done.returncode:
        raise Arm64Error(f"debootstrap failed ({done.returncode}); see {log}: {_tail(log)}")
    if ROOTFS.exists():
        shutil.rmtree(ROOTFS)
    tmp.rename(ROOTFS)
    _mount_points(ROOTFS)
    stamp.write_text(recipe)


def ensure_wheelhouse(venv: Venv) -> Path:
    """aarch64 wheels downloaded on the host (pip would compile nothing: --only-binary)."""
    house = CACHE / "wheels-aarch64" / f"{venv.name}-{venv.key}"
    if (house / ".complete").is_file():
        return house
    tmp = house.with_name(f"{house.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    platforms = [arg for platform in venv.os.platforms for arg in ("--platform", platform)]
    _check(
        [sys.executable, "-m", "pip", "download", "-q", "--dest", str(tmp), "--only-binary=:all:", "--python-version", venv.os.python, *platforms,
         *venv.requirements],
        f"download the aarch64 wheels of the {venv.name} venv",
    )  # fmt: skip
    (tmp / ".complete").write_text("\n".join(venv.requirements))
    shutil.rmtree(house, ignore_errors=True)
    tmp.rename(house)
    return house


def ensure_venv(venv: Venv, wheels: Path, rootfs: Path = ROOTFS) -> None:
    """A venv made in the rootfs by its own python, filled from the wheelhouse by the host's pip.

    pip inside the emulated chroot takes ~45 s per venv (all of it interpreting pip); the host's
    pip writes the same files in a few seconds, and compiles the bytecode natively for the same
    Python minor version.
    """
    where = rootfs / venv.path.lstrip("/")
    stamp = where / ".mnv1-edge-venv"
    if stamp.is_file() and stamp.read_text() == venv.key:
        return
    shutil.rmtree(where, ignore_errors=True)
    _check(
        ["chroot", str(rootfs), "/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "python3", "-m", "venv", "--without-pip", venv.path], "create the venv"
    )
    python = venv.os.python
    site = where / "lib" / f"python{python}" / "site-packages"
    platforms = [arg for platform in venv.os.platforms for arg in ("--platform", platform)]
    # Only the wheelhouse: no index, no configured find-links (PIP_CONFIG_FILE=/dev/null).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}
    _check(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels), "--only-binary=:all:", "--python-version", python,
         "--implementation", "cp", "--abi", f"cp{python.replace('.', '')}", *platforms, "--target", str(site), *venv.requirements],
        f"install the {venv.name} venv",
        env=env,
    )  # fmt: skip
    stamp.write_text(venv.key)


def ensure_host_venv(venv: Venv) -> Path:
    """The same requirements in an x86_64 venv on the host (tflite-runtime 2.14 has x86_64 wheels
    too); returns its python. The x86_64 side of the legacy comparison."""
    where = CACHE / f"x86_64-venv-{venv.name}-{venv.key}"
    python = where / "bin" / "python"
    if (where / ".complete").is_file():
        return python
    shutil.rmtree(where, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)  # the interpreter behind this venv
    _check([base, "-m", "venv", str(where)], f"create the host {venv.name} venv")
    _check([str(python), "-m", "pip", "install", "-q", "--only-binary=:all:", *venv.requirements], f"install the host {venv.name} venv")
    (where / ".complete").write_text(venv.key)
    return python


def _mount_points(root: Path) -> None:
    for point in (IN_REPO, IN_SHARED, IN_OUT):
        (root / point.lstrip("/")).mkdir(parents=True, exist_ok=True)


def _check(argv: list[str], what: str, env: Mapping[str, str] | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise Arm64Error(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")


def _tail(path: Path, lines: int = 5) -> str:
    return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.monotonic()
    yield
    timings[name] = round(time.monotonic() - t0, 1)


if __name__ == "__main__":
    from edge import paths

    with locked():
        prepared = prepare(paths.shared_dir())
    for step, seconds in prepared.timings.items():
        print(f"{step:16} {seconds:7.1f} s")
