"""Fetch stage: URL → FetchResult, politely, with redirects recorded and retries.

Cut by job, as httpx and lychee-lib cut theirs:

  errors.py      the HTTP stacks' exceptions → ErrorKind (one table; an unknown one is a bug)
  retry.py       which results get another attempt and how long to wait (tenacity, Retry-After)
  politeness.py  per-host gates: requests in flight, interval, pauses; the network watch
  guard.py       --no-private: the addresses refused, before each request and at connect time
  client.py      the httpx client on aiohttp (httpx-aiohttp), proxies, cookies, redirect hook
  body.py        the headers kept and a text body read with a cap (bounded gzip/deflate)
  fetcher.py     Fetcher: fetch → attempt → follow redirects → get; fetch_pages

The names below load their module on first use: a parent whose worker processes do the
fetching plans a run with `host_key` alone and never loads httpx (7 MB of its memory).
"""

from __future__ import annotations

from crawler.lazy import lazy_names

TYPE_CHECKING = False
if TYPE_CHECKING:
    from crawler.fetch.client import load_cookie_jar as load_cookie_jar
    from crawler.fetch.client import make_client as make_client
    from crawler.fetch.errors import classify_exception as classify_exception
    from crawler.fetch.errors import error_table as error_table
    from crawler.fetch.fetcher import Fetcher as Fetcher
    from crawler.fetch.fetcher import check_url as check_url
    from crawler.fetch.fetcher import fetch_pages as fetch_pages
    from crawler.fetch.fetcher import redirect_target as redirect_target
    from crawler.fetch.guard import ForbiddenAddress as ForbiddenAddress
    from crawler.fetch.guard import IPAddress as IPAddress
    from crawler.fetch.guard import forbidden_address as forbidden_address
    from crawler.fetch.guard import private_url as private_url
    from crawler.fetch.politeness import NETWORK_DOWN_HOSTS as NETWORK_DOWN_HOSTS
    from crawler.fetch.politeness import HostGate as HostGate
    from crawler.fetch.politeness import HostPause as HostPause
    from crawler.fetch.politeness import NetworkWatch as NetworkWatch
    from crawler.fetch.politeness import host_key as host_key
    from crawler.fetch.politeness import interleave_by_host as interleave_by_host
    from crawler.fetch.retry import parse_retry_after as parse_retry_after

_WHERE = {
    "NETWORK_DOWN_HOSTS": "crawler.fetch.politeness",
    "Fetcher": "crawler.fetch.fetcher",
    "ForbiddenAddress": "crawler.fetch.guard",
    "HostGate": "crawler.fetch.politeness",
    "HostPause": "crawler.fetch.politeness",
    "IPAddress": "crawler.fetch.guard",
    "NetworkWatch": "crawler.fetch.politeness",
    "check_url": "crawler.fetch.fetcher",
    "classify_exception": "crawler.fetch.errors",
    "error_table": "crawler.fetch.errors",
    "fetch_pages": "crawler.fetch.fetcher",
    "forbidden_address": "crawler.fetch.guard",
    "host_key": "crawler.fetch.politeness",
    "interleave_by_host": "crawler.fetch.politeness",
    "load_cookie_jar": "crawler.fetch.client",
    "make_client": "crawler.fetch.client",
    "parse_retry_after": "crawler.fetch.retry",
    "private_url": "crawler.fetch.guard",
    "redirect_target": "crawler.fetch.fetcher",
}

__all__ = sorted(_WHERE)


__getattr__ = lazy_names(__name__, _WHERE)
