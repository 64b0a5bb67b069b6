"""Loopback servers that accept TCP but are no MQTT broker: a silent one and an HTTP one."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


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


@contextmanager
def black_hole() -> Iterator[int]:
    """A loopback port where TCP connects hang, as with a black-holed address: a listener that never
    accepts, its (zero-length) queue filled, so the kernel drops further SYNs. Yields the port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = int(server.getsockname()[1])
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()
