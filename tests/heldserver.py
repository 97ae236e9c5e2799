"""A local HTTP server whose answers wait for the test: every GET is counted on arrival and held
until release(), so a test can signal a process while a known set of its requests is in flight.

    with HeldServer() as srv:
        srv.url("/p/1"); srv.wait_for(3) → the 3 paths held; srv.release(); srv.arrived
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

#: Seconds wait_for gives up after: a bound for a broken test only, never reached by a passing one.
BROKEN = 120.0


class _Handler(BaseHTTPRequestHandler):
    server: HeldServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        srv = self.server
        with srv.cond:
            srv.arrived.append(self.path)
            srv.cond.notify_all()
        srv.released.wait()
        body = f"<html><head><title>page {self.path}</title></head><body>ok</body>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class HeldServer(ThreadingHTTPServer):
    """Answers 200 with a small page to every GET, once release() is called."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.cond = threading.Condition()
        self.arrived: list[str] = []
        self.released = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def wait_for(self, n: int) -> list[str]:
        """Block until n requests have arrived (all held); their paths."""
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.arrived) >= n, timeout=BROKEN):
                raise AssertionError(f"only {len(self.arrived)} of {n} requests arrived")
            return list(self.arrived)

    def release(self) -> None:
        """Let every held request (and every later one) be answered."""
        self.released.set()

    def __enter__(self) -> HeldServer:
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
        self.shutdown()
        self.server_close()
