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
  /drop-reused                closes it without answering when it answered on it before (a
                              kept-alive connection the server closed as it was reused); a page
  /flaky/{key}?fail=N&code=C  C (503) N times for that key, then a page
  /retry-after?s=VALUE&code=C C (429) with Retry-After: VALUE the first time per query, then a page
  /titled/{key}               a page titled `titles[key]` (set by the test; default: key)
  /page/{name}                a named page from PAGES (content-type included); hostile-text
                              has a title and description full of escapes and markup
  /big?kb=N                   an N-KB HTML page
  /binary                     a PNG-typed body
  /echo                       a page; the request's headers (names lower-cased) go to `seen_headers`
  /wayback/available?url=U    the Wayback availability API, a snapshot of U from 2020-01-01
  /mp/wappoc_appmsgcaptcha    WeChat's verification page (its path, as the server of a proxy)
Hostile routes (tests/test_hostile.py):
  /silent?s=SECONDS           reads the request and never answers (until s or the client leaves)
  /endless                    a chunked HTML body that never ends (until the client leaves)
  /bomb/{gzip|deflate|br}?mb=N  N MB of HTML (default 200) compressed to a few hundred KB;
                              br is a real brotli bomb when `brotli` is installed, else bytes
                              that are not brotli, labelled br all the same
  /location/{name}            a 302 whose Location is one of LOCATIONS, written as raw bytes
  /reset?after=N              headers promising 100000 bytes, N bytes, then a TCP reset
  /lying-length?claim=N&real=M  Content-Length N, M bytes of body, then the connection closes
  /http10                     an HTTP/1.0 answer with no Content-Length: read to the close
  /charset/{name}             a page from CHARSET_PAGES (wrong or unknown charset labels)
  /random?kb=N&seed=S         N KB of random bytes served as text/html
  /invalid-html               markup that breaks every rule, with a findable title
  /huge-title?mb=N            a page whose <title> is N MB long
  /nested?depth=N             N nested <div>s
  /many/{i}?hold=S            a tiny page after S seconds (0.001), for 10,000 links
The server counts hits per path (with query), notes when each path first arrived, and the peak of requests in flight, overall and per
first path segment (`peaks["slow"]`), so a test is not confused by another test's leftovers.
`LocalServer("::1")` listens on IPv6 loopback; `LocalServer(tls=ctx)` speaks HTTPS.
"""

from __future__ import annotations

import json
import random
import select
import socket
import socketserver
import ssl
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from functools import cache
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

HOSTILE_TITLE = (
    "\x1b[31mRED\x1b[0m\x1b]8;;http://evil.example\x07link\x1b]8;;\x07\u202eevil\u202c\x07 "
    "<script>alert(1)</script> <img src=x onerror=alert(2)> | col | "
    "[click](javascript:alert(3)) ![i](http://evil.example/t.png) # heading `code` *em*"
)
HOSTILE_PAGE = (
    "<html><head><meta charset=utf-8><title>"
    + HOSTILE_TITLE.replace("<", "&lt;")
    + '</title><meta name="description" content="'
    + HOSTILE_TITLE.replace("<", "&lt;").replace('"', "&quot;")
    + '"></head><body><p>x</p></body></html>'
).encode()

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
    # Zhihu's 404 page: its title is the site's, not the linked page's.
    "zhihu-404": (
        404,
        HTML,
        "<html><head><title>页面不存在 - 知乎</title></head><body><p>你似乎来到了没有知识存在的荒原</p>"
        "</body></html>".encode(),
    ),
    "plain": (
        200,
        HTML,
        b"<html><head><title>Plain page</title></head><body><p>x</p></body></html>",
    ),
    # Fetched text that tries to inject: ANSI and OSC escapes, a bidi override, HTML, Markdown.
    "hostile-text": (200, HTML, HOSTILE_PAGE),
}


#: /location/{name}: raw Location header values, bytes as they go on the wire.
LOCATIONS: dict[str, bytes] = {
    "bracket": b"http://[::1",
    "space-in-host": b"http://exa mple.com/x",
    "ftp": b"ftp://example.com/file",
    "file": b"file:///etc/passwd",
    "javascript": b"javascript:alert(1)",
    "no-host": b"http:///x",
    "bad-port": b"http://127.0.0.1:99999/",
    "empty": b"",
    "bytes": b"\xff\xfe/\xc0x",
    "control": b"/a\x01b",
    "huge": b"/" + b"x" * 100_000,
}

#: /charset/{name}: (Content-Type, body). Every page's title is 标题测试.
_TITLE_PAGE = (
    "<html><head>{meta}<title>标题测试</title></head><body><p>正文内容。</p></body></html>"
)
CHARSET_PAGES: dict[str, tuple[str, bytes]] = {
    # The header says UTF-8; the bytes are GBK.
    "utf8-label-gbk-body": ("text/html; charset=utf-8", _TITLE_PAGE.format(meta="").encode("gbk")),
    # A label no codec knows, in the header and in the page.
    "unknown-label": (
        "text/html; charset=x-unknown",
        _TITLE_PAGE.format(meta='<meta charset="x-unknown">').encode("utf-8"),
    ),
    # The meta tag says GBK; the bytes are UTF-8.
    "meta-lies": (
        "text/html",
        _TITLE_PAGE.format(meta='<meta charset="gbk">').encode("utf-8"),
    ),
    # A label that names a real codec Python has but the web does not use.
    "odd-codec": (
        "text/html; charset=rot13",
        _TITLE_PAGE.format(meta="").encode("utf-8"),
    ),
}

INVALID_HTML = (
    b"<html><head><title>Broken <b>but</b> titled</title><meta charset=utf-8 content=>"
    b"<meta property=og:description content='unterminated><body><div><p><table><tr><td>"
    b'<a href="javascript:x"><p>cell</td></span></i></html></html><title>second</title>'
    b"<script>var s = '</title>'; <!-- <script> --></script><![CDATA[ x ]]><?php echo 1; ?>"
    b"&#xFFFFFF; &#0; &bogus; <div <div <div></p></p></p>"
) + b"\x00\x01\x02 <\xff\xfe> \xc0\xaf"


@cache
@cache  # compressing 200 MB takes seconds on a loaded machine: longer than a client waits
def bomb(coding: str, mb: int) -> bytes:
    """About `mb` MB of HTML, compressed: a few hundred KB that expand a thousandfold."""
    head = b"<html><head><title>bomb</title></head><body>"
    block = b" " * (1 << 20)
    if coding == "gzip":
        z = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    elif coding == "deflate":
        z = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS)
    else:
        try:
            import brotli  # type: ignore[import-not-found]
        except ImportError:
            # No brotli here: a body that is not brotli (a gzip bomb), labelled br all the same.
            return bomb("gzip", mb)
        return bytes(brotli.compress(head + block * mb, quality=5))
    return z.compress(head) + b"".join(z.compress(block) for _ in range(mb)) + z.flush()


def client_gone(conn: socket.socket, wait: float) -> bool:
    """True when the client hung up (or `wait` seconds passed with nothing to read)."""
    r, _, _ = select.select([conn], [], [], wait)
    if not r:
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


#: Notified whenever a request reaches any server of this process: tests wait on it (wait_for)
#: instead of sleeping between looks at the counters.
ARRIVED = threading.Condition()


def wait_for(ready: Callable[[], bool], running: Callable[[], bool], what: str) -> None:
    """Wait until ready() (checked each time a request arrives), failing as soon as running()
    is false. No deadline: a run that never gets there ends by itself, and a loaded machine only
    makes the wait longer. The short wake-ups only look at running()."""
    with ARRIVED:
        while not ready():
            if not running():
                if ready():
                    return
                raise AssertionError(f"the run ended before {what}")
            ARRIVED.wait(0.1)


class _Handler(BaseHTTPRequestHandler):
    server: LocalServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def _hold(self, seconds: float) -> bool:
        """Wait `seconds`, or until the client hangs up (False): a request its client gave up on
        (a stopped check's) does not stay in flight for the tests that come after it."""
        end = time.monotonic() + seconds
        sock = self.connection
        while (left := end - time.monotonic()) > 0:
            if isinstance(sock, ssl.SSLSocket):  # no peeking under TLS: just wait
                time.sleep(left)
                break
            readable, _, _ = select.select([sock], [], [], min(left, 0.5))
            if readable:
                try:
                    if sock.recv(1, socket.MSG_PEEK) == b"":
                        return False
                except OSError:
                    return False
                time.sleep(min(left, 0.05))  # a pipelined request waiting: keep holding
        return True

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        self.send_response(405)
        self.send_header("Allow", "GET")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        srv = self.server
        with srv.lock:
            srv.hits[self.path] += 1
            srv.arrived.setdefault(self.path, time.monotonic())
            srv.user_agents.append(self.headers.get("User-Agent", ""))
            srv.inflight += 1
            srv.peak = max(srv.peak, srv.inflight)
            self._route_key = self.path.split("?")[0].split("/")[1] if "/" in self.path else ""
            srv.inflight_by[self._route_key] += 1
            srv.peaks[self._route_key] = max(
                srv.peaks[self._route_key], srv.inflight_by[self._route_key]
            )
            n = srv.hits[self.path]
        with ARRIVED:
            ARRIVED.notify_all()
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
        self._answered = getattr(self, "_answered", 0) + 1  # on this connection
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
        elif head == "cookie-gate":  # as some sites do: set a cookie, send on, let it in
            if seg[-1] != "in":
                self._send(
                    302, HTML, b"", {"Location": f"{parts.path}/in", "Set-Cookie": "gate=open"}
                )
            elif "gate=open" in (self.headers.get("Cookie") or ""):
                self._page("past the gate")
            else:
                self._send(403, HTML, b"<html><head><title>no cookie</title></head></html>")
        elif head == "loop":
            self._send(302, HTML, b"", {"Location": "/loop2"})
        elif head == "loop2":
            self._send(302, HTML, b"", {"Location": "/loop"})
        elif head in ("slow", "held"):
            if self._hold(float(q.get("s", "0.2"))):
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
        elif head == "drop-reused":
            if getattr(self, "_answered", 0):
                self.close_connection = True
                self.connection.shutdown(2)
            else:
                self._page("a fresh connection")
        elif head == "flaky":
            if n <= int(q.get("fail", "2")):
                self._send(int(q.get("code", "503")), "text/plain", b"Service Unavailable")
            else:
                self._page("recovered")
        elif head == "retry-after":
            if n == 1:
                code = int(q.get("code", "429"))
                self._send(code, "text/plain", b"slow down", {"Retry-After": q.get("s", "1")})
            else:
                self._page("after the wait")
        elif head == "titled":
            with self.server.lock:
                title = self.server.titles.get(seg[1], seg[1])
            self._page(title)
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
        elif parts.path == "/mp/wappoc_appmsgcaptcha":
            self._send(200, HTML, WECHAT_VERIFY)
        elif head == "binary":
            self._send(200, "image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 1000)
        elif not self._hostile(head, seg, q):
            self._send(404, HTML, b"<html><head><title>404 Not Found</title></head></html>")

    def _raw(self, data: bytes) -> None:
        """Bytes on the wire as they are; the connection closes afterwards."""
        self._done()
        self.close_connection = True
        self.wfile.write(data)
        self.wfile.flush()

    def _hostile(self, head: str, seg: list[str], q: dict[str, str]) -> bool:
        """The misbehaving routes; False for an unknown path."""
        if head == "silent":
            self._done()
            self.close_connection = True
            end = time.monotonic() + float(q.get("s", "10"))
            while time.monotonic() < end and not client_gone(self.connection, 0.05):
                pass
        elif head == "endless":
            self._done()
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", HTML)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            part = b"<html><head><title>endless</title></head><body>"
            filler = b"<p>" + b"and more " * 1000 + b"</p>\n"
            end = time.monotonic() + 60  # a bound for the server, never reached by a test
            while time.monotonic() < end:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                part = filler
        elif head == "bomb":
            coding = seg[1] if len(seg) > 1 else "gzip"
            body = bomb(coding, int(q.get("mb", "200")))
            self._send(200, HTML, body, {"Content-Encoding": coding})
        elif head == "location" and len(seg) > 1 and seg[1] in LOCATIONS:
            value = LOCATIONS[seg[1]]
            self._raw(
                b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\nContent-Type: text/html\r\n"
                b"Location: " + value + b"\r\nConnection: close\r\n\r\n"
            )
        elif head == "reset":
            after = int(q.get("after", "1000"))
            self._done()
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", HTML)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(
                (b"<html><head><title>reset</title></head><body>" + b"x" * after)[:after]
            )
            self.wfile.flush()
            # SO_LINGER 0: close() sends RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        elif head == "lying-length":
            # Without Connection: close, as a keep-alive server whose length counts characters.
            claim, real = int(q.get("claim", "10000")), int(q.get("real", "100"))
            body = b"<html><head><title>lying length</title></head><body>"
            body = (body + b"y" * max(0, real - len(body)))[:real]
            self._raw(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (claim, body)
            )
        elif head == "http10":
            self._raw(
                b"HTTP/1.0 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
                b"<html><head><title>HTTP/1.0 page</title></head><body>"
                + b"<p>no length, read to the close</p>" * 2000
                + b"</body></html>"
            )
        elif head == "charset" and len(seg) > 1 and seg[1] in CHARSET_PAGES:
            ctype, body = CHARSET_PAGES[seg[1]]
            self._send(200, ctype, body)
        elif head == "random":
            rnd = random.Random(int(q.get("seed", "0")))
            self._send(200, HTML, rnd.randbytes(int(q.get("kb", "64")) * 1024))
        elif head == "invalid-html":
            self._send(200, "text/html", INVALID_HTML)
        elif head == "huge-title":
            size = int(float(q.get("mb", "5")) * (1 << 20))
            body = b"<html><head><title>" + b"T" * size + b"</title></head><body>x</body></html>"
            self._send(200, HTML, body)
        elif head == "nested":
            depth = int(q.get("depth", "100000"))
            body = b"<html><head><title>nested</title></head><body>" + b"<div>" * depth + b"deep"
            self._send(200, HTML, body)
        elif head == "many":
            time.sleep(float(q.get("hold", "0.001")))  # long enough to be seen in flight
            self._page("many")
        else:
            return False
        return True


class LocalServer(ThreadingHTTPServer):
    """The test server; start() runs it in a daemon thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.host = host
        self.tls = tls
        super().__init__((host, 0), _Handler)
        self.lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.user_agents: list[str] = []
        self.seen_headers: list[
            tuple[str, str, dict[str, str]]
        ] = []  # /echo: (Host, path, headers)
        self.titles: dict[str, str] = {}  # /titled/{key}
        self.arrived: dict[str, float] = {}  # path → time.monotonic() of its first request
        self.inflight = 0
        self.peak = 0
        self.inflight_by: Counter[str] = Counter()  # by first path segment
        self.peaks: Counter[str] = Counter()
        self._thread: threading.Thread | None = None

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks the resolver for the host's FQDN, which can hang on ::1.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.host, self.port

    def get_request(self) -> tuple[socket.socket, object]:
        sock, addr = self.socket.accept()
        # Headers and body go out in two writes: without this, Nagle's algorithm holds the body
        # until the client's delayed ACK, some 20-40 ms a request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            # The handshake happens in the request's thread (first read), not in the accept loop.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            sock.settimeout(5)
        return sock, addr

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up (timeouts, deadlines, refused certificates) are expected

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str, host: str | None = None) -> str:
        if host is None:
            host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def reset(self) -> None:
        with self.lock:
            self.hits.clear()
            self.user_agents.clear()
            self.seen_headers.clear()
            self.arrived.clear()
            self.titles.clear()
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
