"""Fetch stage: URL → FetchResult, politely, with redirects recorded and retries.

Cut by job, as httpx and lychee-lib cut theirs:

  errors.py      the HTTP stacks' exceptions → ErrorKind (one table; an unknown one is a bug)
  retry.py       which results get another attempt and how long to wait (tenacity, Retry-After)
  politeness.py  per-host gates: requests in flight, interval, pauses; the network watch
  guard.py       --no-private: the addresses refused, before each request and at connect time
  client.py      the httpx client on aiohttp (httpx-aiohttp), proxies, cookies, redirect hook
  body.py        the headers kept and a text body read with a cap (bounded gzip/deflate)
  fetcher.py     Fetcher: fetch → attempt → follow redirects → get; fetch_pages
"""

from crawler.fetch.client import load_cookie_jar, make_client
from crawler.fetch.errors import classify_exception, error_table
from crawler.fetch.fetcher import Fetcher, check_url, fetch_pages, redirect_target
from crawler.fetch.guard import ForbiddenAddress, IPAddress, forbidden_address, private_url
from crawler.fetch.politeness import (
    NETWORK_DOWN_HOSTS,
    HostGate,
    HostPause,
    NetworkWatch,
    host_key,
    interleave_by_host,
)
from crawler.fetch.retry import parse_retry_after

__all__ = [
    "NETWORK_DOWN_HOSTS",
    "Fetcher",
    "ForbiddenAddress",
    "HostGate",
    "HostPause",
    "IPAddress",
    "NetworkWatch",
    "check_url",
    "classify_exception",
    "error_table",
    "fetch_pages",
    "forbidden_address",
    "host_key",
    "interleave_by_host",
    "load_cookie_jar",
    "make_client",
    "parse_retry_after",
    "private_url",
    "redirect_target",
]
