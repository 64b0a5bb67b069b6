"""An MJPEG-over-HTTP camera for the system tests that can be told to stall: while the file named by
--stall exists it keeps every connection open but sends no frame, like a hung IP camera."""

from __future__ import annotations

import argparse
import itertools
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BOUNDARY = "mnv1edgeframe"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--stall", type=Path, required=True, help="while this file exists, send nothing")
    p.add_argument("--fps", type=float, default=5.0)
    p.add_argument("jpegs", nargs="+", type=Path)
    args = p.parse_args()
    frames = [j.read_bytes() for j in args.jpegs]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY}")
            self.end_headers()
            try:
                for jpeg in itertools.cycle(frames):
                    while args.stall.exists():
                        time.sleep(0.1)
                    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                    self.wfile.write(head + jpeg + b"\r\n")
                    self.wfile.flush()
                    time.sleep(1 / args.fps)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, format: str, *a: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
