"""The trixie arm64 image booted as a whole machine: qemu-system-aarch64 (software emulation, a real arm64 kernel
and systemd as PID 1) in a network namespace of its own, with a real mosquitto beside it.

Inside the namespace: mosquitto listens on 127.0.0.1:1883 and the VM's sshd is forwarded to 127.0.0.1:22;
the VM reaches the namespace's loopback as 10.0.2.2 (QEMU's user-mode network) and nothing else, so it
has no internet and everything it installs comes from the bundle copied to it. Everything started is
stopped by PID and everything made (netns, overlay, ssh master) removed, also when a step fails.

The boot itself (~2.6 minutes under emulation) is done once and cached: `saved_boot` boots the image to
`running`, then saves the machine (its memory through QEMU's migration to a file, its disk as a qcow2
overlay); each run resumes a copy-on-write overlay of that disk with that memory in seconds. Only the
wall clock is stale after a resume: `start` sets it from the host, as NTP does on a Pi (no RTC) after boot.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.pi.image import HOSTNAME, Image
from tests.support.booted import clean_up, run, start_broker, stop_process

# A Pi 4 (Cortex-A72, 2 GB); MNV1_EDGE_PI_CPU=cortex-a53 for a Pi 3 / Zero 2 W, cortex-a76 needs QEMU 9.
CPU = os.environ.get("MNV1_EDGE_PI_CPU", "cortex-a72")
MEMORY_MB = 2048
HOST_FROM_VM = "10.0.2.2"  # the namespace's loopback, seen from the VM
SSH_OPTIONS = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes")


@dataclass(frozen=True)
class SavedBoot:
    """A machine saved right after booting to `running`: its disk (a qcow2 overlay of the image) and memory."""

    disk: Path
    memory: Path


@dataclass
class Vm:
    """One machine: `start()`, then `close()` (also on failure); `ssh()` runs a script inside as root or pi.
    With `resume`, `start()` resumes that saved boot instead of booting the image."""

    image: Image
    workdir: Path
    resume: SavedBoot | None = None
    name: str = field(default_factory=lambda: f"mnv1pi-{os.getpid()}")
    _qemu: subprocess.Popen[bytes] | None = None
    _mosquitto: subprocess.Popen[bytes] | None = None
    _netns: bool = False
    state: str = ""  # systemctl is-system-running after the boot
    timings: dict[str, float] = field(default_factory=dict)

    # -- life cycle --------------------------------------------------------------------------
    def start(self, boot_timeout: float = 600) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        overlay = self.workdir / "disk.qcow2"
        base, base_format = (self.resume.disk, "qcow2") if self.resume else (self.image.disk, "raw")
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", base_format, "-b", base, overlay])
        run(["ip", "netns", "add", self.name])
        self._netns = True
        run(["ip", "-n", self.name, "link", "set", "lo", "up"])
        self._start_mosquitto()
        self._write_ssh_config()
        t0 = time.monotonic()
        console = open(self.workdir / "console.log", "wb")  # noqa: SIM115 - lives as long as the VM
        cmd = [*machine(self.image), "-drive", f"if=none,id=hd0,file={overlay},format=qcow2", "-qmp", f"unix:{self._qmp_path},server=on,wait=off"]
        if self.resume:
            cmd += ["-incoming", f"exec:cat {shlex.quote(str(self.resume.memory))}"]
        self._qemu = subprocess.Popen(self.in_netns(cmd), stdin=subprocess.DEVNULL, stdout=console, stderr=console, start_new_session=True)
        deadline = time.monotonic() + boot_timeout
        while not self._answers():
            if self._qemu.poll() is not None:
                raise RuntimeError(f"qemu exited {self._qemu.returncode}: {self.console()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no ssh into the VM after {boot_timeout} s: {self.console()[-3000:]}")
            time.sleep(2)
        self.timings["boot_to_ssh"] = time.monotonic() - t0
        if self.resume:
            self.ssh(f"date -s @{time.time():.3f} >/dev/null")
        self.state = self.ssh("systemctl is-system-running --wait", check=False, timeout=boot_timeout).stdout.strip()
        self.timings["boot_to_running"] = time.monotonic() - t0

    @property
    def _qmp_path(self) -> Path:
        return self.workdir / "qmp.sock"

    def save(self, memory: Path, timeout: float = 300) -> None:
        """Save the running machine's memory to a file (QEMU stops it first) and quit QEMU; its disk overlay
        (workdir/disk.qcow2), flushed by the migration, is the disk that goes with that memory."""
        self._qmp({"execute": "migrate", "arguments": {"uri": f"exec:cat > {shlex.quote(str(memory))}"}})
        deadline = time.monotonic() + timeout
        while (status := self._qmp({"execute": "query-migrate"})["return"].get("status")) != "completed":
            if status in ("failed", "cancelled") or time.monotonic() > deadline:
                raise RuntimeError(f"saving the VM's memory: migration {status}")
            time.sleep(0.5)
        self._qmp({"execute": "quit"})
        assert self._qemu is not None
        self._qemu.wait(60)

    def _qmp(self, command: dict[str, object]) -> dict[str, object]:
        """One command to QEMU's machine protocol (QMP) on its unix socket; its reply."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self._qmp_path))
            stream = sock.makefile("rw")
            stream.readline()  # the greeting
            reply: dict[str, object] = {}
            for cmd in ({"execute": "qmp_capabilities"}, command):
                stream.write(json.dumps(cmd) + "\n")
                stream.flush()
                while not ({"return", "error"} & set(reply := json.loads(stream.readline()))):
                    pass  # an asynchronous event
                if "error" in reply:
                    raise RuntimeError(f"QMP {cmd['execute']}: {reply['error']}")
            return reply

    def _answers(self) -> bool:
        """Whether sshd answers (QEMU accepts the forwarded connection before the guest listens: time out)."""
        probe = self.in_netns(["ssh", "-i", self.image.key, *SSH_OPTIONS, "-o", "ConnectTimeout=10", "root@127.0.0.1", "true"])
        try:
            return run(probe, check=False, timeout=30, stdin=subprocess.DEVNULL).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def close(self) -> None:
        """Power the VM off (an orderly shutdown), then stop what we started; each step runs even if another failed."""
        clean_up((self._power_off, self._stop_ssh_masters, self._stop_mosquitto, self._delete_netns))

    def _start_mosquitto(self) -> None:
        self._mosquitto = start_broker(self.workdir, self.in_netns)

    def _power_off(self) -> None:
        if self._qemu is None or self._qemu.poll() is not None:
            return
        try:
            self.ssh("systemctl poweroff", check=False, timeout=30)
        finally:
            stop_process_after(self._qemu, 120)

    def _stop_ssh_masters(self) -> None:
        for user in ("root", "pi"):
            control = self.workdir / f"cm-{user}"
            if control.exists():
                run(self.in_netns(["ssh", "-S", control, "-O", "exit", "127.0.0.1"]), check=False)

    def _stop_mosquitto(self) -> None:
        stop_process(self._mosquitto, 10)

    def _delete_netns(self) -> None:
        if self._netns:
            run(["ip", "netns", "del", self.name])
            self._netns = False

    # -- using it -----------------------------------------------------------------------------
    def in_netns(self, cmd: Sequence[str | os.PathLike[str]]) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.name}", *map(str, cmd)]

    def ssh_argv(self, user: str = "root") -> list[str]:
        """ssh into the VM; one master connection per user (a handshake under emulation costs ~1 s)."""
        control = ("-o", "ControlMaster=auto", "-o", f"ControlPath={self.workdir}/cm-{user}", "-o", "ControlPersist=900")
        return self.in_netns(["ssh", "-i", self.image.key, *SSH_OPTIONS, *control, f"{user}@127.0.0.1"])

    def ssh(self, script: str, user: str = "root", check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A shell script run in the VM by `user`'s login shell, as typed at the Pi."""
        return run([*self.ssh_argv(user), script], check=check, timeout=timeout, stdin=subprocess.DEVNULL)

    def console(self) -> str:
        return (self.workdir / "console.log").read_text(errors="replace")

    def _write_ssh_config(self) -> None:
        """What makes `scp FILE pi@raspberrypi.local:` of the README reach this VM: an ssh_config.d of our own,
        bind-mounted over the host's for that one command (see `host_shell`); the connection goes through
        the namespace's loopback, where the VM's sshd is forwarded."""
        conf = self.workdir / "ssh_config.d"
        conf.mkdir(exist_ok=True)
        relay = "exec 3<>/dev/tcp/127.0.0.1/22; cat <&3 & cat >&3; kill $!"
        (conf / "mnv1-edge-test.conf").write_text(
            f"Host {HOSTNAME}.local\n  ProxyCommand nsenter --net=/run/netns/{self.name} bash -c '{relay}'\n  IdentityFile {self.image.key}\n"
            "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  BatchMode yes\n"
        )

    def host_shell(self, line: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """A README line typed on the workstation, unchanged: on this host (its network: pip reaches PyPI), in a
        private mount namespace where /etc/ssh/ssh_config.d is ours (raspberrypi.local = the VM)."""
        conf = shlex.quote(str(self.workdir / "ssh_config.d"))
        script = f'mount --bind {conf} /etc/ssh/ssh_config.d && cd {shlex.quote(str(cwd))} && exec sh -ec "$0"'
        return run(["unshare", "--mount", "--propagation", "private", "sh", "-ec", script, line], check=False, timeout=timeout)


def machine(image: Image) -> list[str]:
    """QEMU's command line but for the disk: a saved boot resumes only on the very same machine."""
    return [
        "qemu-system-aarch64", "-M", "virt", "-cpu", CPU, "-smp", "2", "-m", str(MEMORY_MB), "-accel", "tcg,thread=multi",
        "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd),
        "-append", "root=/dev/vda rw console=ttyAMA0 panic=-1",
        "-device", "virtio-blk-pci,drive=hd0",
        "-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:22-:22", "-device", "virtio-net-pci,netdev=n0,romfile=",
        "-device", "virtio-rng-pci",
    ]  # fmt: skip


def saved_boot(image: Image) -> SavedBoot:
    """The image booted to `running` and saved (made once, ~3 minutes, beside the image; keyed by the machine)."""
    key = hashlib.sha256("\n".join(machine(image)).encode()).hexdigest()[:12]
    where = image.disk.parent / f"booted-{key}"
    if not (where / ".complete").is_file():
        tmp = where.with_name(f"{where.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        # The boot's working directory is short: ssh's control sockets live there and must fit a socket address.
        scratch = Path(tempfile.mkdtemp(prefix="mnv1pi-save-"))
        try:
            vm = Vm(image, scratch)
            try:
                vm.start()
                if vm.state != "running":
                    failed = vm.ssh("systemctl --failed --no-legend", check=False).stdout
                    raise RuntimeError(f"the VM booted to {vm.state!r}, not running: {failed}")
                vm.save(tmp / "memory")
            finally:
                vm.close()
            shutil.move(scratch / "disk.qcow2", tmp / "disk.qcow2")  # the disk that goes with that memory
            (tmp / ".complete").write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {json.dumps(vm.timings)}\n")
            shutil.rmtree(where, ignore_errors=True)
            tmp.rename(where)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            shutil.rmtree(tmp, ignore_errors=True)
    return SavedBoot(where / "disk.qcow2", where / "memory")


def stop_process_after(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait for a process we started to exit by itself, then stop it."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)
    stop_process(proc, 10)


@contextlib.contextmanager
def booted(image: Image, workdir: Path) -> Iterator[Vm]:
    vm = Vm(image, workdir)
    try:
        vm.start()
        yield vm
    finally:
        vm.close()
