"""A fresh Raspberry Pi OS-like Debian 13 trixie arm64 system as a disk image for qemu-system-aarch64, built once and cached.

The root filesystem (debootstrap --arch=arm64 under qemu-user, ~7 minutes) is cached as a directory,
$MNV1_EDGE_TEST_CACHE/arm64-trixie-rootfs-KEY (the arm64 userland stage also uses it as a chroot);
the boot image (ext4 made with `mkfs.ext4 -d`, no loop mount), Debian's arm64 kernel and initrd, and
the key the tests log in with sit beside it in pi-trixie-arm64-KEY/. Each recipe is keyed by what
goes into it, so a changed recipe builds anew and never reuses a stale cache.

`python -m tests.pi.image` builds (or checks) the cache and prints the time of each step.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("MNV1_EDGE_TEST_CACHE", "/var/cache/mnv1-edge-test"))
MIRROR = os.environ.get("MNV1_EDGE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "trixie"  # what Raspberry Pi OS is built on since late 2025: Python 3.13, glibc 2.41
# What a fresh Raspberry Pi OS Lite has that matters here: systemd, sshd, sudo, Python 3.13 with venv,
# and the Debian Python packages python3-picamera2 pulls in (NumPy 2.2 above all: with
# --system-site-packages the service's venv uses it as on a Pi); python3-apt and python3-packaging
# for Ansible's apt and pip modules. Plus what a VM needs to boot: Debian's arm64 kernel and initrd.
PACKAGES = (
    "dbus",
    "initramfs-tools",
    "iproute2",
    "kmod",
    "linux-image-arm64",
    "openssh-server",
    "procps",
    "python3",
    "python3-apt",
    "python3-numpy",
    "python3-packaging",
    "python3-venv",
    "sudo",
    "systemd",
    "systemd-sysv",
    "udev",
)
# Units with nothing to do in a test VM that only cost boot time or write in the background.
MASKED = ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer", "man-db.timer", "dpkg-db-backup.timer")
# The image's free space: the venv, the wheels and the journal of a day of tests.
IMAGE_SIZE = "4G"
HOSTNAME = "raspberrypi"
USER = "pi"  # Raspberry Pi OS's first user: in sudo (no password) and video


class ImageError(Exception):
    """The image could not be built."""


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def rootfs_dir() -> Path:
    return CACHE / f"arm64-{SUITE}-rootfs-{_key(SUITE, *PACKAGES)}"


@dataclass(frozen=True)
class Image:
    """What a boot needs: the root filesystem image, the kernel and initrd, the login key."""

    disk: Path  # raw ext4; each boot writes to a qcow2 overlay of its own
    kernel: Path
    initrd: Path
    key: Path  # ed25519 private key authorised for root and pi


def ensure_rootfs(log: Path | None = None) -> Path:
    """The pristine trixie arm64 tree (debootstrap under qemu-user's binfmt entry)."""
    root = rootfs_dir()
    if (root / ".complete").is_file():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f"{root.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    log = log or CACHE / f"{root.name}.debootstrap.log"
    cmd = ["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(tmp), MIRROR]
    # INITRD=No: the kernel's postinst hook makes no initramfs. Debian's default (MODULES=most) takes ~7 minutes
    # under qemu-user, twice (kernel, then initramfs-tools' trigger); the image makes a small one instead.
    env = {**os.environ, "INITRD": "No"}
    try:
        with open(log, "w") as out:
            # debootstrap mounts /proc and /sys in the target; a private mount namespace drops them on any exit
            done = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", *cmd], stdout=out, stderr=out, env=env, check=False)
        if done.returncode:
            tail = " | ".join(log.read_text(errors="replace").splitlines()[-5:])
            raise ImageError(f"debootstrap {SUITE} arm64 failed ({done.returncode}); see {log}: {tail}")
        (tmp / ".complete").write_text(" ".join(cmd) + "\n")
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def image_dir() -> Path:
    recipe = (_prepare.__doc__ or "", HOSTNAME, USER, IMAGE_SIZE, *MASKED, NETWORK, SSHD, *INITRAMFS_MODULES)
    return CACHE / f"pi-{SUITE}-arm64-{_key(rootfs_dir().name, *recipe)}"


def ensure_image() -> Image:
    """The boot image, kernel, initrd and key, made from a copy of the rootfs (which stays pristine)."""
    rootfs = ensure_rootfs()
    where = image_dir()
    image = Image(where / "root.ext4", where / "vmlinuz", where / "initrd.img", where / "id_ed25519")
    if (where / ".complete").is_file():
        return image
    tmp = where.with_name(f"{where.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    staging = tmp / "root"
    try:
        staging.mkdir(parents=True)
        # The userland stage keeps its venvs and bytecode in the same tree: they are not part of a fresh Pi.
        _run(["tar", "-C", str(rootfs), "--exclude=./opt/mnv1-edge-test", "--exclude=./var/cache/mnv1-edge-pycache", "--exclude=./.complete",
              "-cf", "-", "."], "copy the rootfs", pipe_to=["tar", "-C", str(staging), "-xpf", "-"])  # fmt: skip
        kernels = sorted((staging / "boot").glob("vmlinuz-*"))
        if not kernels:
            raise ImageError(f"{rootfs}/boot has no vmlinuz-*: linux-image-arm64 did not install")
        shutil.copy2(kernels[-1], tmp / "vmlinuz")
        shutil.copy2(_initramfs(staging, kernels[-1].name.removeprefix("vmlinuz-")), tmp / "initrd.img")
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mnv1-edge-test-pi", "-f", str(tmp / "id_ed25519")], "make the login key")
        _prepare(staging, (tmp / "id_ed25519.pub").read_text())
        _run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(staging), str(tmp / "root.ext4"), IMAGE_SIZE], "make the ext4 image")
        shutil.rmtree(staging)
        (tmp / ".complete").write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} from {rootfs.name}\n")
        shutil.rmtree(where, ignore_errors=True)
        tmp.rename(where)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return image


NETWORK = "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n"
SSHD = "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n"


def _prepare(root: Path, public_key: str) -> None:
    """A fresh Pi's first boot: host name, user pi (sudo without password, video), root disk, DHCP, sshd by key only."""
    (root / "etc/hostname").write_text(f"{HOSTNAME}\n")
    (root / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {HOSTNAME}\n")
    (root / "etc/fstab").write_text("/dev/vda / ext4 defaults,noatime 0 1\n")
    (root / "etc/machine-id").write_text("")  # made at first boot, as on a freshly flashed card
    (root / "etc/systemd/network/20-wired.network").write_text(NETWORK)
    (root / "etc/ssh/sshd_config.d/test.conf").write_text(SSHD)
    _chroot(root, "useradd --create-home --shell /bin/bash --groups sudo,video " + USER)
    (root / f"etc/sudoers.d/010_{USER}-nopasswd").write_text(f"{USER} ALL=(ALL) NOPASSWD: ALL\n")
    (root / f"etc/sudoers.d/010_{USER}-nopasswd").chmod(0o440)
    _chroot(root, "systemctl enable -q systemd-networkd.service")
    for unit in MASKED:
        (root / "etc/systemd/system" / unit).unlink(missing_ok=True)
        (root / "etc/systemd/system" / unit).symlink_to("/dev/null")
    for home, owner in ((root / "root", "root"), (root / "home" / USER, USER)):
        ssh = home / ".ssh"
        ssh.mkdir(mode=0o700, exist_ok=True)
        (ssh / "authorized_keys").write_text(public_key)
        (ssh / "authorized_keys").chmod(0o600)
        _chroot(root, f"chown -R {owner}: /{ssh.relative_to(root).as_posix()}")


# What the VM's initramfs needs to mount the root disk (QEMU's virt machine, a virtio disk, ext4).
INITRAMFS_MODULES = ("virtio_blk", "virtio_mmio", "ext4")


def _initramfs(root: Path, kernel: str) -> Path:
    """A small initramfs for the VM (MODULES=list: ~1 minute under qemu-user instead of ~7 for Debian's default)."""
    (root / "etc/initramfs-tools/conf.d/mnv1-edge-vm.conf").write_text("MODULES=list\n")
    (root / "etc/initramfs-tools/modules").write_text("\n".join(INITRAMFS_MODULES) + "\n")
    _run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec",
          f'mount -t proc proc "$0/proc"; exec chroot "$0" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin update-initramfs -c -k {kernel}',
          str(root)], "make the initramfs")  # fmt: skip
    return root / f"boot/initrd.img-{kernel}"


def _chroot(root: Path, script: str) -> None:
    _run(["chroot", str(root), "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "sh", "-ec", script], script)


def _run(argv: list[str], what: str, pipe_to: list[str] | None = None) -> None:
    if pipe_to:
        first = subprocess.Popen(argv, stdout=subprocess.PIPE)
        done = subprocess.run(pipe_to, stdin=first.stdout, capture_output=True, text=True, check=False)
        first.wait()
        failed = first.returncode or done.returncode
    else:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        failed = done.returncode
    if failed:
        raise ImageError(f"{what} failed: {(done.stderr or done.stdout).strip()[-2000:]}")


if __name__ == "__main__":
    t0 = time.monotonic()
    print(f"rootfs {ensure_rootfs()} ({time.monotonic() - t0:.1f} s)")
    t1 = time.monotonic()
    print(f"image  {ensure_image().disk} ({time.monotonic() - t1:.1f} s)")
