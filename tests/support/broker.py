"""A private mosquitto for tests (never shipped): free loopback port, generated config, stop/restart on the same port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """One broker process on 127.0.0.1; `persistence` keeps sessions and queued messages across restarts."""

    def __init__(self, workdir: Path, *, password: tuple[str, str] | None = None, tls: tuple[Path, Path, Path] | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = self.workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "autosave_interval 0",  # saved at shutdown only
            "max_queued_messages 0",  # no limit: an offline persistent subscriber must get everything
            "max_inflight_messages 100",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to `mosquitto`, which cannot write our tmp dirs
        if password is not None:
            passwd = self.workdir / "passwd"
            subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), *password], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if tls is not None:
            ca, cert, key = tls
            lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"]
        self.conf = self.workdir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> None:
        assert self.proc is None, "already running"
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = ""
                if self.proc.stderr:
                    err = self.proc.stderr.read().decode(errors="replace")
                    self.proc.stderr.close()
                self.proc = None
                raise RuntimeError(f"mosquitto exited at start: {err} {self.log_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout} s")

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its persistence file), then SIGKILL if it lingers; by PID."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_certs(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for DNS:localhost only (not for 127.0.0.1)."""
    ca, ca_key, cert, key, csr = (directory / n for n in ("ca.crt", "ca.key", "server.crt", "server.key", "server.csr"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-subj", "/CN=mnv1-edge test CA", "-days", "1")
    run("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    sign = ["-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "1", "-extfile", str(directory / "san.ext")]
    run("x509", "-req", "-in", str(csr), "-out", str(cert), *sign)
    return ca, cert, key
