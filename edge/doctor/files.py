"""State, results, spool and metrics directories writable by the service user (not just by whoever runs doctor)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from edge.config import SERVICE_USER
from edge.doctor.check import FAIL, OK, Check, Context

# The unit's StateDirectory=mnv1-edge: systemd creates it, owned by the service user, at each start.
STATE_DIRECTORY = Path("/var/lib/mnv1-edge")


def default_user() -> str:
    """The service user when it exists (a deployed device), else whoever runs doctor (a workstation)."""
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return pwd.getpwuid(os.geteuid()).pw_name
    return SERVICE_USER


def checks(ctx: Context) -> list[Check]:
    if ctx.config is None:
        return []
    c = ctx.config
    wanted = [("state_dir", Path(c.state_dir))]
    if c.sinks.file.enabled:
        wanted.append(("sinks.file.path", Path(c.sinks.file.path).parent))
    if c.sinks.mqtt.enabled:
        wanted.append(("sinks.mqtt.spool.path", Path(c.sinks.mqtt.spool.path)))
    if c.sinks.prometheus.enabled:
        wanted.append(("sinks.prometheus.path", Path(c.sinks.prometheus.path).parent))
    return [writable_check(key, path, ctx.user) for key, path in wanted]


def writable_check(key: str, path: Path, user: str) -> Check:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return Check(
            "files", FAIL, f"{key}: user {user} does not exist", "create it: sudo systemd-sysusers (the role installs systemd/mnv1-edge.sysusers)"
        )
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != path and path.is_relative_to(STATE_DIRECTORY) and existing == STATE_DIRECTORY.parent:
        return Check(
            "files", OK, f"{key}: {path} does not exist yet; systemd creates {STATE_DIRECTORY} for {SERVICE_USER} at start (StateDirectory=)"
        )
    if not existing.is_dir():
        return Check("files", FAIL, f"{key}: {existing} is not a directory", f"point {key} at a directory path")
    ok, how = writable_by(user, existing)
    where = str(path) if existing == path else f"{path} (missing; the daemon creates it in {existing})"
    if ok:
        return Check("files", OK, f"{key}: {where} writable by {user} ({how})")
    fix = f"sudo install -d -o {user} -g {user} -m 0750 {path}"
    return Check("files", FAIL, f"{key}: {where} not writable by {user} ({how})", fix)


def writable_by(user: str, directory: Path) -> tuple[bool, str]:
    """Whether `user` may create files in `directory`, and how that was found out."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    if user == me:
        return os.access(directory, os.W_OK | os.X_OK), "os.access as the current user"
    runuser = shutil.which("runuser")
    if os.geteuid() == 0 and runuser:
        # As the user itself: groups, ACLs and read-only mounts all count.
        proc = subprocess.run([runuser, "-u", user, "--", "test", "-w", str(directory), "-a", "-x", str(directory)], check=False, timeout=10)
        return proc.returncode == 0, f"runuser -u {user} -- test -w"
    return mode_allows(user, directory), "owner, group and mode bits (ACLs not read; run as root for an exact check)"


def mode_allows(user: str, directory: Path) -> bool:
    """Write and search permission from the owner, group and mode bits, as the kernel decides without ACLs."""
    entry = pwd.getpwnam(user)
    if entry.pw_uid == 0:
        return True
    st = directory.stat()
    if st.st_uid == entry.pw_uid:
        bits = st.st_mode >> 6
    elif st.st_gid in os.getgrouplist(user, entry.pw_gid):
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & 0o3 == 0o3
