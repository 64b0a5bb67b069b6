"""A loopback HTTP server standing in for the model archive's host, and .tgz archives built like the official one."""

from __future__ import annotations

import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from edge.convert import source

# The official mobilenet_v1_0.25_128.tgz lists its members as "./name" (checkpoint, frozen graph,
# info and eval files beside the .tflite); only the .tflite matters to the converter.
OTHER_MEMBERS = ("mobilenet_v1_0.25_128_info.txt", "mobilenet_v1_0.25_128_eval.pbtxt")


def make_archive(tflite: bytes, member: str = source.MEMBER) -> bytes:
    """A gzipped tar with `tflite` as ./`member`, beside small text members as in the official archive."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in [(m, f"{m}\n".encode()) for m in OTHER_MEMBERS] + [(member, tflite)]:
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class ArchiveServer:
    """Serves `files` (URL path -> bytes) on 127.0.0.1; a path in `dropped` announces its full length
    but the connection closes after half of it. `requests` lists every GET's path."""

    files: dict[str, bytes] = field(default_factory=dict)
    dropped: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def serving(server: ArchiveServer) -> Iterator[ArchiveServer]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.requests.append(self.path)
            data = server.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-gzip")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2] if self.path in server.dropped else data)
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass  # requests are recorded above; no noise on the test's stderr

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def official_like(float_model: Path) -> bytes:
    """The archive as the official URL serves it, built from the float model in ../shared."""
    return make_archive(float_model.read_bytes())
