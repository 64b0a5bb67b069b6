"""Loopback servers that accept TCP but are no MQTT broker: a silent one and an HTTP one; test certificates."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def listener(answer: bytes | None) -> Iterator[int]:
    """A TCP server on 127.0.0.1; each connection gets `answer` (then is closed) or, with None,
    silence (held open until the server stops). Yields the port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            if answer is None:
                held.append(conn)
                continue
            try:
                conn.settimeout(2)
                conn.recv(4096)
                conn.sendall(answer)
            except OSError:
                pass
            finally:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        server.close()
        for conn in held:
            conn.close()
        thread.join(5)


HTTP_400 = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def make_certs(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for DNS:localhost only (as tests/test_mqtt.py makes)."""
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
