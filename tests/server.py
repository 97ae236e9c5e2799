"""A real HTTP server for the tests, on 127.0.0.1, with scrapy-mockserver-style routes.

Routes:
  /status/{code}              that status, small HTML body
  /redirect/{code}?to=URL     a redirect with that code
  /chain/{n}                  n redirects, then a page
  /loop                       redirects to itself via /loop2
  /slow?s=SECONDS             waits, then a page
  /held?s=SECONDS             the same, kept for the tests that count requests in flight
  /drip?s=SECONDS             headers at once, then one byte per second for s seconds
  /drop                       closes the connection without answering
  /flaky/{key}?fail=N&code=C  C (503) N times for that key, then a page
  /retry-after?s=VALUE        429 with Retry-After: VALUE the first time per query, then a page
  /page/{name}                a named page from PAGES (content-type included)
  /big?kb=N                   an N-KB HTML page
  /binary                     a PNG-typed body
  /echo                       a page; the request's headers (names lower-cased) go to `seen_headers`
  /wayback/available?url=U    the Wayback availability API, a snapshot of U from 2020-01-01
The server counts hits per path (with query) and the peak of requests in flight, overall and per
first path segment (`peaks["slow"]`), so a test is not confused by another test's leftovers.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def wechat_article(title: str, desc: str, body: str = "") -> bytes:
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<meta property="og:title" content="{title}" /><meta property="og:description" content="{desc}" />
<title></title><script>var msg_title = '{title}'.html(false); var msg_desc = "{desc}";</script>
</head><body id="activity-detail"><div class="rich_media_area_primary">
<h1 class="rich_media_title" id="activity-name">{title}</h1>
<div class="rich_media_content" id="js_content"><p>{desc}</p><p>{body}</p></div></div></body></html>""".encode()


def wechat_notice(text: str) -> bytes:
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title></title></head>
<body><div class="weui_msg"><div class="weui_text_area"><h2 class="weui_msg_title">{text}</h2>
</div></div><script>var msg_title = '';</script></body></html>""".encode()


WECHAT_VERIFY = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>微信公众平台</title></head>
<body><div class="weui-msg"><div class="weui-msg__text-area"><h2 class="weui-msg__title">环境异常</h2>
<p class="weui-msg__desc">当前环境异常，完成验证后即可继续访问。</p></div>
<a href="javascript:;" class="weui-btn weui-btn_primary" id="js_verify">去验证</a></div>
<script src="https://res.wx.qq.com/mmbizappmsg/zh_CN/htmledition/js/secitptpage/verify.js"></script>
</body></html>""".encode()

GBK_PAGE = """<!DOCTYPE html><html><head>
<meta http-equiv="Content-Type" content="text/html; charset=gbk" />
<title>基于深度学习的语音识别_百度文库</title>
<meta name="description" content="语音识别技术就是让机器把语音信号转变为文本的技术。" />
</head><body><h1><span class="doc-header-title">基于深度学习的语音识别</span></h1></body></html>
""".encode("gbk")

HTML = "text/html; charset=utf-8"

#: name → (status, content type, body)
PAGES: dict[str, tuple[int, str, bytes]] = {
    "article": (200, HTML, wechat_article("语音识别的最新进展", "本文介绍语音识别的最新进展。")),
    "article-quoting-notice": (
        200,
        HTML,
        wechat_article(
            "如何判断文章被删除",
            "讲解删除提示。",
            "当你看到“该内容已被发布者删除”时，说明文章已经不在了。",
        ),
    ),
    "removed": (200, HTML, wechat_notice("该内容已被发布者删除")),
    "banned": (200, HTML, wechat_notice("此内容因违规无法查看")),
    "verify": (200, HTML, WECHAT_VERIFY),
    "gbk": (200, "text/html", GBK_PAGE),
    "zhihu-403": (
        403,
        "application/json; charset=utf-8",
        '{"error":{"code":40362,"message":"您当前请求存在异常，暂时限制本次访问。",'
        '"name":"ERR_ACCESS_RESTRICTED"}}'.encode(),
    ),
    "plain": (
        200,
        HTML,
        b"<html><head><title>Plain page</title></head><body><p>x</p></body></html>",
    ),
}


class _Handler(BaseHTTPRequestHandler):
    server: LocalServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        self.send_response(405)
        self.send_header("Allow", "GET")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        srv = self.server
        with srv.lock:
            srv.hits[self.path] += 1
            srv.user_agents.append(self.headers.get("User-Agent", ""))
            srv.inflight += 1
            srv.peak = max(srv.peak, srv.inflight)
            self._route_key = self.path.split("?")[0].split("/")[1] if "/" in self.path else ""
            srv.inflight_by[self._route_key] += 1
            srv.peaks[self._route_key] = max(
                srv.peaks[self._route_key], srv.inflight_by[self._route_key]
            )
            n = srv.hits[self.path]
        self._counted = True
        try:
            self._route(n)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            self._done()

    def _done(self) -> None:
        # Called before the answer is written: once the client has the answer it may send the
        # next request, which must not find this one still counted as in flight.
        if self._counted:
            self._counted = False
            with self.server.lock:
                self.server.inflight -= 1
                self.server.inflight_by[self._route_key] -= 1

    def _send(
        self, status: int, ctype: str, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self._done()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _page(self, title: str = "OK page") -> None:
        self._send(
            200, HTML, f"<html><head><title>{title}</title></head><body></body></html>".encode()
        )

    def _route(self, n: int) -> None:
        parts = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        seg = [s for s in parts.path.split("/") if s]
        head = seg[0] if seg else ""
        if head == "status":
            code = int(seg[1])
            self._send(code, HTML, f"<html><head><title>{code}</title></head></html>".encode())
        elif head == "redirect":
            self._send(int(seg[1]), HTML, b"", {"Location": q.get("to", "/page/plain")})
        elif head == "chain":
            left = int(seg[1])
            if left <= 0:
                self._page("end of chain")
            else:
                self._send(302, HTML, b"", {"Location": f"/chain/{left - 1}"})
        elif head == "loop":
            self._send(302, HTML, b"", {"Location": "/loop2"})
        elif head == "loop2":
            self._send(302, HTML, b"", {"Location": "/loop"})
        elif head in ("slow", "held"):
            time.sleep(float(q.get("s", "0.2")))
            self._page("slow page")
        elif head == "drip":
            self.send_response(200)
            self.send_header("Content-Type", HTML)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            end = time.monotonic() + float(q.get("s", "5"))
            while time.monotonic() < end:
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.2)
            self.close_connection = True
        elif head == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
        elif head == "flaky":
            if n <= int(q.get("fail", "2")):
                self._send(int(q.get("code", "503")), "text/plain", b"Service Unavailable")
            else:
                self._page("recovered")
        elif head == "retry-after":
            if n == 1:
                self._send(429, "text/plain", b"slow down", {"Retry-After": q.get("s", "1")})
            else:
                self._page("after the wait")
        elif head == "page":
            status, ctype, body = PAGES[seg[1]]
            self._send(status, ctype, body)
        elif head == "big":
            kb = int(q.get("kb", "100"))
            self._send(200, HTML, b"<html><head><title>big</title></head><body>" + b"x" * kb * 1024)
        elif head == "echo":
            with self.server.lock:
                self.server.seen_headers.append(
                    (
                        self.headers.get("Host", ""),
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                    )
                )
            self._page("echo")
        elif head == "wayback":
            # The Wayback availability API: one snapshot, on 2020-01-01.
            target = q.get("url", "")
            doc = {
                "url": target,
                "archived_snapshots": {
                    "closest": {
                        "status": "200",
                        "available": True,
                        "url": f"http://web.archive.org/web/20200101000000/{target}",
                        "timestamp": "20200101000000",
                    }
                },
            }
            self._send(200, "application/json", json.dumps(doc).encode())
        elif head == "binary":
            self._send(200, "image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 1000)
        else:
            self._send(404, HTML, b"<html><head><title>404 Not Found</title></head></html>")


class LocalServer(ThreadingHTTPServer):
    """The test server; start() runs it in a daemon thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__((host, 0), _Handler)
        self.lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.user_agents: list[str] = []
        self.seen_headers: list[
            tuple[str, str, dict[str, str]]
        ] = []  # /echo: (Host, path, headers)
        self.inflight = 0
        self.peak = 0
        self.inflight_by: Counter[str] = Counter()  # by first path segment
        self.peaks: Counter[str] = Counter()
        self._thread: threading.Thread | None = None

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up (timeouts, deadlines) are part of the tests

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def reset(self) -> None:
        with self.lock:
            self.hits.clear()
            self.user_agents.clear()
            self.seen_headers.clear()
            self.peak = self.inflight
            self.peaks.clear()

    def start(self) -> LocalServer:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
