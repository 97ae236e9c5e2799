"""Named defaults and the frozen Settings a run is made with. Imports nothing from the package."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from crawler import __version__
from crawler.cpus import can_fork as can_fork
from crawler.cpus import usable_cpus as usable_cpus

DEFAULT_MAX_CONCURRENCY = 16  # requests in flight over all hosts
# The most requests in flight to one host (a ceiling: crawler/pace.py starts a host at 2 and
# grows only after clean answers). WeChat shows its 环境异常 verification page above its limit
# (4 to 6 measured on the simulated webs): 8 lets the pace find it, and no unknown host gets
# more than 8.
DEFAULT_HOST_CONCURRENCY = 8
DEFAULT_HOST_INTERVAL = 0.2  # seconds between request starts on one host, at first (see pace.py)
DEFAULT_TIMEOUT = 10.0  # seconds for connect and for each read
DEFAULT_DEADLINE_FACTOR = 3.0  # total time one attempt may take, as a multiple of the timeout
DEFAULT_RETRIES = 2  # initial request + 2 retries = 3 attempts
DEFAULT_BACKOFF_INITIAL = 1.0
DEFAULT_BACKOFF_MAX = 20.0
DEFAULT_RETRY_AFTER_MAX = 60.0  # longest Retry-After we honour, seconds
DEFAULT_MAX_REDIRECTS = 10
DEFAULT_MAX_BODY = 2 * 1024 * 1024  # bytes of a page kept for extraction
DEFAULT_USER_AGENT = (
    f"Mozilla/5.0 (compatible; link-crawler/{__version__}; +https://github.com/link-crawler)"
)
DEFAULT_REPORT_DIR = "reports"
# httpx's API over aiohttp's connection pool: 0.2 ms of CPU a request against 1.4 ms on httpx's own
# transport, and keep-alive connections reused across many hosts (bench/, issue #6).
DEFAULT_TRANSPORT = "aiohttp"

#: Statuses worth another attempt. 521/522/524 are Cloudflare's origin failures and CSDN's
#: anti-robot answer, which sometimes passes on a slower retry.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})


@dataclass(frozen=True, slots=True)
class HostRule:
    """Settings for one host (and its subdomains), from the configuration file.

    Headers and cookies given here are secrets of that host: they are sent to it and to no
    other, not even across a redirect, and never written to reports or the history.
    """

    headers: Mapping[str, str] = field(default_factory=dict)
    cookies: Mapping[str, str] = field(default_factory=dict)
    user_agent: str | None = None
    concurrency: int | None = None
    interval: float | None = None
    accept: frozenset[int] = frozenset()  # statuses that count as alive for this host


def host_rule(hosts: Mapping[str, HostRule], host: str) -> HostRule | None:
    """The rule for host: an exact entry, else the longest parent-domain entry."""
    host = host.lower().rstrip(".")
    best: tuple[int, HostRule] | None = None
    for name, rule in hosts.items():
        key = name.lower().lstrip(".")
        if (host == key or host.endswith("." + key)) and (best is None or len(key) > best[0]):
            best = (len(key), rule)
    return best[1] if best else None


@dataclass(frozen=True, slots=True)
class FetchSettings:
    """Everything the fetcher needs to know."""

    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    host_concurrency: int = DEFAULT_HOST_CONCURRENCY
    host_interval: float = DEFAULT_HOST_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    deadline: float | None = None  # per attempt; None means timeout * DEFAULT_DEADLINE_FACTOR
    retries: int = DEFAULT_RETRIES
    backoff_initial: float = DEFAULT_BACKOFF_INITIAL
    backoff_max: float = DEFAULT_BACKOFF_MAX
    retry_after_max: float = DEFAULT_RETRY_AFTER_MAX
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    max_body: int = DEFAULT_MAX_BODY
    user_agent: str = DEFAULT_USER_AGENT
    transport: str = DEFAULT_TRANSPORT
    hosts: Mapping[str, HostRule] = field(default_factory=dict)
    accept: frozenset[int] = frozenset()  # statuses that count as alive on every host
    cookie_jar: str | None = None  # a Netscape cookies.txt file
    no_private: bool = False  # refuse hosts that resolve to loopback/private/link-local/metadata
    workers: int | None = 1  # worker processes; None: automatic; 0: only `crawler worker`s
    headers: Mapping[str, str] = field(default_factory=dict)  # sent to every host (--header)

    @property
    def attempt_deadline(self) -> float:
        """Seconds one attempt (with its redirects) may take in total."""
        return (
            self.deadline if self.deadline is not None else self.timeout * DEFAULT_DEADLINE_FACTOR
        )


# History (crawler/store.py, crawler/history.py).
DEFAULT_DB = ".crawler/history.sqlite"
DEFAULT_CONFIRM_RUNS = 3  # failing runs before an uncertain failure counts as dead ...
DEFAULT_CONFIRM_DAYS = 3.0  # ... spanning at least this many days
RECENT_RUNS = 10  # runs shown in a link's strip
TREND_RUNS = 30  # runs shown in the post's health chart

# Reports and enrich.
DEFAULT_FORMATS = ("json", "md", "html")
#: Every report format there is (junit and sarif for CI systems, on request).
ALL_FORMATS = (*DEFAULT_FORMATS, "junit", "sarif", "issue")
DEFAULT_ARCHIVE_ENDPOINT = "https://archive.org/wayback/available"
#: Verdicts that make `crawler check` exit 3 (--fail-on). Only `dead`: an `error` (could not
#: tell this time) that persists becomes `dead` by the confirm rule, so a passing timeout does
#: not fail a daily run.
DEFAULT_FAIL_ON = ("dead",)
#: The verdicts --fail-on accepts (ok never fails a run).
FAIL_ON_CHOICES = ("dead", "error", "changed", "blocked", "redirected")
