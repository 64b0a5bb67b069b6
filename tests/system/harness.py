"""A real systemd target: a cached Debian bookworm rootfs booted with systemd-nspawn in a network namespace of its own.

Everything it starts (container, mosquitto) is stopped by PID, and everything it creates (overlay mount,
network namespace, cgroup directories, temporary files) is removed, also when a step fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.booted import clean_up, run, start_broker, stop_process, wait_port

# Cached outside the clone so a fresh checkout (CI) reuses it; override with $MNV1_EDGE_TEST_CACHE.
CACHE_DIR = Path(os.environ.get("MNV1_EDGE_TEST_CACHE", "/var/cache/mnv1-edge-test"))
SUITE = "bookworm"
MIRROR = os.environ.get("MNV1_EDGE_TEST_MIRROR", "http://deb.debian.org/debian")
# What a fresh Raspberry Pi OS Lite / Debian has, plus what the role needs already present so that the
# role's apt task is a no-op without internet: python3-venv (the role's venv), python3-apt and
# python3-packaging (Ansible's apt and pip modules). The role needs nothing else from apt when the source is not picamera2.
PACKAGES = (
    "dbus",
    "iproute2",
    "kmod",
    "openssh-server",
    "procps",
    "python3",
    "python3-apt",
    "python3-packaging",
    "python3-venv",
    "sudo",
    "systemd",
    "systemd-sysv",
    "udev",
)
INNER_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def rootfs_key() -> str:
    digest = hashlib.sha256(" ".join((SUITE, *sorted(PACKAGES))).encode()).hexdigest()[:12]
    return f"{SUITE}-{digest}"


def ensure_rootfs(cache: Path = CACHE_DIR) -> Path:
    """The pristine rootfs for this package list, built with debootstrap once and then reused."""
    root = cache / f"rootfs-{rootfs_key()}"
    if (root / ".complete").is_file():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f"{root.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, tmp, MIRROR],
            timeout=1200,
        )
        _prepare_rootfs(tmp)
        (tmp / ".complete").write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _prepare_rootfs(root: Path) -> None:
    """Settings every booted copy shares: no apt downloads in the background, a quiet console, root over SSH by key only."""
    (root / "etc/hostname").write_text("edge1\n")
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 edge1\n")
    (root / "etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/ssh/sshd_config.d/test.conf").write_text("PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n")
    # Units that do nothing useful in a container and only slow the boot or fail noisily.
    for unit in ("apt-daily.timer", "apt-daily-upgrade.timer", "systemd-timesyncd.service", "e2scrub_all.timer", "fstrim.timer"):
        (root / "etc/systemd/system" / unit).unlink(missing_ok=True)
        (root / "etc/systemd/system" / unit).symlink_to("/dev/null")
    (root / "etc/machine-id").write_text("")  # a fresh one per boot


@dataclass
class Target:
    """One booted container: `start()` then `close()` (also on failure); commands run inside with `sh()`."""

    rootfs: Path
    workdir: Path
    name: str = field(default_factory=lambda: f"mnv1e-{os.getpid()}")
    netns: str = ""
    merged: Path = field(init=False)
    key: Path = field(init=False)
    pid1: int = 0
    _nspawn: subprocess.Popen[bytes] | None = None
    _mosquitto: subprocess.Popen[bytes] | None = None
    _cgroups: list[Path] = field(default_factory=list)
    _mounted: bool = False

    def __post_init__(self) -> None:
        self.netns = self.netns or self.name
        self.merged = self.workdir / "root"
        self.key = self.workdir / "id_ed25519"

    # -- life cycle --------------------------------------------------------------------------
    def start(self, boot_timeout: float = 60) -> None:
        self._overlay()
        self._ssh_key()
        run(["ip", "netns", "add", self.netns])
        run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        self._start_mosquitto()
        self._boot(boot_timeout)

    def close(self) -> None:
        """Stop what we started, by PID, and remove what we created; each step runs even if another failed."""
        clean_up((self._stop_container, self._stop_mosquitto, self._remove_cgroups, self._unmount, self._delete_netns))

    def _overlay(self) -> None:
        upper, work = self.workdir / "upper", self.workdir / "work"
        for d in (upper, work, self.merged):
            d.mkdir(parents=True, exist_ok=True)
        run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={self.rootfs},upperdir={upper},workdir={work}", self.merged])
        self._mounted = True

    def _ssh_key(self) -> None:
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"mnv1-edge-test-{self.name}", "-f", self.key])
        ssh = self.merged / "root/.ssh"
        ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        (ssh / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        (ssh / "authorized_keys").chmod(0o600)

    def _start_mosquitto(self) -> None:
        self._mosquitto = start_broker(self.workdir, self.in_netns)

    def _boot(self, timeout: float) -> None:
        # With --keep-unit nspawn stays in its caller's cgroup: give this container directories of its own
        # so two of them (or a leftover) never collide.
        for hierarchy in ("systemd", "unified"):
            base = Path("/sys/fs/cgroup") / hierarchy
            if base.is_dir():
                cg = base / f"nspawn-{self.name}"
                cg.mkdir(exist_ok=True)
                self._cgroups.append(cg)
        cgroups = list(self._cgroups)

        def enter_cgroups() -> None:
            for cg in cgroups:
                (cg / "cgroup.procs").write_text(str(os.getpid()))

        log = open(self.workdir / "console.log", "wb")  # noqa: SIM115 - lives as long as the container
        cmd = [
            "nsenter",
            f"--net=/run/netns/{self.netns}",
            "systemd-nspawn",
            "--quiet",
            "-D",
            str(self.merged),
            "-b",
            "--register=no",
            "--keep-unit",
            f"--machine={self.name}",
            "--hostname=edge1",
            "--console=pipe",
        ]
        self._nspawn = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=enter_cgroups)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._nspawn.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited {self._nspawn.returncode}: {(self.workdir / 'console.log').read_text()[-2000:]}")
            self.pid1 = self.pid1 or _container_init(self._nspawn.pid)
            if self.pid1:
                state = self.sh("systemctl is-system-running --wait", check=False, timeout=timeout).stdout.strip()
                if state in ("running", "degraded"):
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"container did not boot in {timeout} s")
        wait_port(self.in_netns, 22, 20)

    def _stop_container(self) -> None:
        # SIGTERM makes nspawn ask the container's systemd for an orderly halt.
        stop_process(self._nspawn, 30, kill_timeout=10)

    def _stop_mosquitto(self) -> None:
        stop_process(self._mosquitto, 10)

    def _remove_cgroups(self) -> None:
        for cg in self._cgroups:
            if cg.is_dir():
                # Leaf-first: the container's systemd made sub-groups of its own.
                for sub in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                    with contextlib.suppress(OSError):
                        sub.rmdir()
                cg.rmdir()
        self._cgroups.clear()

    def _unmount(self) -> None:
        if self._mounted:
            run(["umount", self.merged], check=False)
            if os.path.ismount(self.merged):
                run(["umount", "-l", self.merged])
            self._mounted = False

    def _delete_netns(self) -> None:
        if Path(f"/run/netns/{self.netns}").exists():
            run(["ip", "netns", "del", self.netns])

    # -- using it -----------------------------------------------------------------------------
    def sh(self, script: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a shell script inside the container (all its namespaces), with a clean environment."""
        return run(["nsenter", "-t", str(self.pid1), "-a", "env", "-i", INNER_PATH, "LANG=C.UTF-8", "sh", "-c", script], check=check, timeout=timeout)

    def in_netns(self, cmd: Sequence[str | os.PathLike[str]]) -> list[str]:
        """A host command line that runs in the container's network namespace (ssh, ansible, mosquitto_sub)."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", *map(str, cmd)]

    def journal(self, *args: str) -> str:
        """journalctl inside the container (no pager, no hostname noise)."""
        return self.sh("journalctl --no-pager -q " + " ".join(args), check=False).stdout

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.sh(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _container_init(nspawn_pid: int) -> int:
    """The host PID of the container's PID 1: a descendant of nspawn that is PID 1 in its own PID namespace."""
    todo = [nspawn_pid]
    while todo:
        pid = todo.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
        if len(nspid) >= 2 and nspid[-1] == "1":
            return pid
        todo.extend(int(c) for c in children)
    return 0


@contextlib.contextmanager
def booted(rootfs: Path, workdir: Path) -> Iterator[Target]:
    target = Target(rootfs, workdir)
    try:
        target.start()
        yield target
    finally:
        target.close()
