"""What the extractor knows about particular sites, as data: adding a site is adding an entry."""

from __future__ import annotations

from functools import lru_cache

TYPE_CHECKING = False  # typing is not imported at run time: start-up time counts
if TYPE_CHECKING:
    from collections.abc import Collection


class SiteRule:
    """How to read one site's pages and recognise its notice pages, each field a keyword of
    the constructor. A plain class: a typing.NamedTuple of these 22 fields, with the typing
    module, was a sixth of `crawler extract`'s start-up; a dataclass would import the
    dataclasses machinery."""

    def __init__(
        self,
        *,
        name: str,
        hosts: tuple[str, ...],  # host suffixes: "zhihu.com" matches www.zhihu.com and zhihu.com
        site_name: str | None = None,  # shown when the page names no site itself
        # Substrings that identify the site in a page without a URL; `fingerprint_min` must occur.
        fingerprints: tuple[str, ...] = (),
        fingerprint_min: int = 2,
        fingerprint_gate: str = "",  # looked for first: without it the fingerprints are not counted
        # Where the title comes from, in order: "var" (JS variables), "meta" (og:title,
        # twitter:title), "css" (title_selectors), "title" (the <title> element).
        title_order: tuple[str, ...] = ("var", "meta", "css", "title"),
        title_vars: tuple[str, ...] = (),  # JS variables holding the title: var NAME = '...'
        title_selectors: tuple[str, ...] = (),
        title_suffixes: tuple[str, ...] = (),  # regexes matched at the end of a title and cut off
        summary_vars: tuple[str, ...] = (),
        # Content containers for the first-paragraph fallback.
        summary_selectors: tuple[str, ...] = (),
        summary_prefixes: tuple[str, ...] = (),  # regexes cut from the start of a description
        ignored_summaries: tuple[str, ...] = (),  # descriptions starting with these say nothing
        # Selectors whose text proves a real content page; then notice markers are ignored.
        article_selectors: tuple[str, ...] = (),
        # When true, only `article_selectors`, title variables or og:title make an article.
        strict_article: bool = False,
        notice_selectors: tuple[str, ...] = (),  # elements that carry a notice's text
        removed_markers: tuple[str, ...] = (),  # visible text of a removal notice
        anti_robot_markers: tuple[str, ...] = (),  # visible text or source of a verification page
        anti_robot_paths: tuple[str, ...] = (),  # URL paths that are verification pages
        not_found_markers: tuple[str, ...] = (),  # visible text of the site's 404 page
        # Statuses with which this site refuses robots (besides the standard ones).
        blocked_statuses: tuple[int, ...] = (),
    ) -> None:
        self.name = name
        self.hosts = hosts
        self.site_name = site_name
        self.fingerprints = fingerprints
        self.fingerprint_min = fingerprint_min
        self.fingerprint_gate = fingerprint_gate
        self.title_order = title_order
        self.title_vars = title_vars
        self.title_selectors = title_selectors
        self.title_suffixes = title_suffixes
        self.summary_vars = summary_vars
        self.summary_selectors = summary_selectors
        self.summary_prefixes = summary_prefixes
        self.ignored_summaries = ignored_summaries
        self.article_selectors = article_selectors
        self.strict_article = strict_article
        self.notice_selectors = notice_selectors
        self.removed_markers = removed_markers
        self.anti_robot_markers = anti_robot_markers
        self.anti_robot_paths = anti_robot_paths
        self.not_found_markers = not_found_markers
        self.blocked_statuses = blocked_statuses

    def __repr__(self) -> str:
        return f"SiteRule(name={self.name!r})"


WECHAT = SiteRule(
    name="wechat",
    hosts=("mp.weixin.qq.com",),
    site_name="微信公众平台",
    fingerprints=(
        "var msg_title",
        "rich_media",
        "js_content",
        "weui-msg",
        "weui_msg",
        "mp.weixin.qq.com",
        "wx.qq.com",
        "wx.qlogo.cn",
        "mmbiz.qpic.cn",
    ),
    fingerprint_gate="wx.qq.com",
    title_vars=("msg_title",),
    title_selectors=("#activity-name", ".rich_media_title"),
    summary_vars=("msg_desc",),
    summary_selectors=("#js_content", ".rich_media_content"),
    article_selectors=("#js_content", ".rich_media_content", "#activity-name"),
    strict_article=True,
    notice_selectors=(
        ".weui-msg__title",
        ".weui_msg_title",
        ".weui-msg__desc",
        ".weui_msg_desc",
        ".global_error_msg",
        ".msg_title",
        ".mesg-block",
    ),
    removed_markers=(
        "该内容已被发布者删除",
        "此内容因违规无法查看",
        "此内容被投诉且经审核涉嫌侵权",
        "此帐号已自主注销",
        "此账号已自主注销",
        "此帐号已被屏蔽",
        "此账号已被屏蔽",
        "此帐号已被封",
        "此账号已被封",
        "该公众号已迁移",
        "链接已过期",
        "此内容发送失败无法查看",
        "该内容已被删除",
        "此文章已被删除",
        "该内容暂时无法查看",
        "此内容无法查看",
        "内容无法查看",
        "The content has been deleted by the author",
        "This content has been deleted",
        "has been deleted by the author",
        "violated regulations",
        "Unable to view this content",
        "This account has been",
    ),
    anti_robot_markers=(
        "当前环境异常，完成验证后即可继续访问",
        "环境异常",
        "去验证",
        "secitptpage/verify",
        "wappoc_appmsgcaptcha",
    ),
    anti_robot_paths=("/mp/wappoc_appmsgcaptcha",),
)

ZHIHU = SiteRule(
    name="zhihu",
    hosts=("zhihu.com",),
    site_name="知乎",
    fingerprints=("zhihu.com", "zhimg.com", "QuestionHeader", "Post-Title", "知乎", "zh-question"),
    fingerprint_gate="zhihu",
    title_order=("css", "meta", "var", "title"),
    title_selectors=(
        ".QuestionHeader-title",
        ".Post-Title",
        "#zh-question-title .zm-item-title",
        "#zh-question-title",
        ".zm-item-title",
    ),
    title_suffixes=(
        r"\s*[-–—|]\s*知乎专栏\s*$",
        r"\s*[-–—|]\s*[^-–—|]{1,40}的回答\s*[-–—|]\s*知乎\s*$",
        r"\s*[-–—|]\s*知乎\s*$",
    ),
    summary_selectors=(".RichText", ".Post-RichText", ".zm-editable-content"),
    ignored_summaries=("有问题，上知乎", "有问题,上知乎"),
    article_selectors=(
        ".QuestionHeader-title",
        ".Post-Title",
        ".Post-RichText",
        "#zh-question-title",
        ".zm-item-title",
    ),
    notice_selectors=(".ErrorPage", ".ErrorPage-title", ".ErrorPage-subtitle", ".Unhuman"),
    not_found_markers=("你似乎来到了没有知识存在的荒原", "404 - 知乎"),
    anti_robot_markers=(
        "安全验证",
        "ERR_ACCESS_RESTRICTED",
        '"code":40362',
        "您当前请求存在异常",
        "Unhuman-",
    ),
    anti_robot_paths=("/account/unhuman",),
)

CSDN = SiteRule(
    name="csdn",
    hosts=("csdn.net",),
    site_name="CSDN博客",
    fingerprints=("csdn.net", "csdnimg.cn", "CSDN博客", "title-article", "content_views"),
    fingerprint_gate="csdn",
    title_order=("meta", "title", "css", "var"),
    title_selectors=("h1#articleContentId", ".title-article", ".link_title"),
    title_suffixes=(
        r"\s*[-_|]\s*[^-_|]{0,60}的(?:博客|专栏)\s*[-_]\s*CSDN博客(?:\s*[-_].*)?$",
        r"\s*[-_|]\s*CSDN博客(?:\s*[-_].*)?$",
        r"\s*[-_|]\s*[^-_|]{0,60}的专栏\s*(?:[-_|]\s*博客频道\s*[-_|]\s*CSDN\.NET)?$",
        r"\s*-\s*[^-_|]{1,60}\s*-\s*博客频道\s*-\s*CSDN\.NET\s*$",
        r"\s*[-_|]\s*博客频道\s*[-_|]\s*CSDN\.NET\s*$",
        r"\s*[-_|]\s*CSDN\.NET\s*$",
        r"\s*[-_|]\s*CSDN(?:文库|问答|下载|社区|学院)\s*$",
    ),
    summary_selectors=("#content_views", "#article_content"),
    summary_prefixes=(r"^文章浏览阅读[^。]{0,60}次。",),
    article_selectors=(".title-article", "#articleContentId", "#content_views", "#article_content"),
    not_found_markers=("404 - CSDN", "您访问的页面不存在", "该文章已被删除"),
    anti_robot_markers=("请完成安全验证", "安全验证 - CSDN"),
)  # its 521 (Jiasule's challenge) is in STATUS_QUIRKS: Cloudflare's origins answer it too

CNBLOGS = SiteRule(
    name="cnblogs",
    hosts=("cnblogs.com",),
    site_name="博客园",
    fingerprints=("cnblogs.com", "cb_post_title_url", "cnblogs_post_body", "博客园"),
    fingerprint_gate="cnblogs",
    title_order=("meta", "css", "title", "var"),
    title_selectors=("#cb_post_title_url", ".postTitle a", ".postTitle"),
    title_suffixes=(r"\s+-\s+[^-]{1,60}\s+-\s+博客园\s*$", r"\s*[-_|]\s*博客园\s*$"),
    summary_selectors=("#cnblogs_post_body",),
    article_selectors=("#cb_post_title_url", "#cnblogs_post_body"),
    not_found_markers=("404 - 博客园", "抱歉，您访问的页面不存在"),
)

BAIDU_WENKU = SiteRule(
    name="baidu-wenku",
    hosts=("wenku.baidu.com",),
    site_name="百度文库",
    fingerprints=("wenku.baidu.com", "百度文库", "doc-header-title"),
    fingerprint_gate="wenku.baidu",
    title_order=("css", "meta", "title", "var"),
    title_selectors=(".doc-header-title", ".doc-title", "h1.reader-title"),
    title_suffixes=(r"\s*(?:_|\s-\s)\s*百度文库\s*$",),
    summary_selectors=(".doc-reader", ".reader-container", "#reader-container"),
    article_selectors=(".doc-header-title", ".doc-title", ".reader-container"),
    not_found_markers=("文档不存在", "该文档已被删除"),
    anti_robot_markers=("百度安全验证",),
)

BILIBILI = SiteRule(
    name="bilibili",
    hosts=("bilibili.com", "b23.tv"),
    site_name="哔哩哔哩",
    fingerprints=("bilibili.com", "hdslb.com", "哔哩哔哩"),
    fingerprint_gate="bilibili",
    title_order=("meta", "title"),
    title_suffixes=(
        r"\s*_哔哩哔哩_bilibili\s*$",
        r"\s*[-_|]\s*(?:哔哩哔哩|bilibili)(?:\.com)?\s*$",
    ),
    notice_selectors=(".error-container", ".err-text"),
    anti_robot_markers=(
        "由于触发哔哩哔哩安全风控策略",
        "bilibili security control policy",
        '"code":-412',
    ),
    not_found_markers=("啊叻？视频不见了", "视频去哪了呢"),
    blocked_statuses=(412,),  # its risk control's answer to robots
)

#: Every known site, tried in order.
SITES: tuple[SiteRule, ...] = (WECHAT, ZHIHU, CSDN, CNBLOGS, BAIDU_WENKU, BILIBILI)

#: `<title>` texts (case-folded, whole title, or the title without the site's name) of
#: verification pages on any site.
GENERIC_ANTI_ROBOT_TITLES: tuple[str, ...] = (
    "just a moment...",
    "just a moment…",
    "attention required! | cloudflare",
    "access denied",
    "403 forbidden",
    "security check",
    "captcha",
    "verify you are human",
    "are you a robot?",
    "百度安全验证",
    "安全验证",
    "访问验证",
    "人机验证",
    "验证码",
    "滑动验证页面",
    "access to this page has been denied",
)

# ------------------------------------------------------- verification pages of any site
# The families (Sogou's antispider page, Baidu's 安全验证, Tencent's TCaptcha, Aliyun's slider,
# Jiasule's JavaScript challenge, Cloudflare's challenge and Turnstile, PerimeterX, GeeTest …)
# share little text and, besides, a verification word in the title or main heading, or a
# challenge script, or a verification word in the text beside a form to answer it.

#: A page with more visible text than this is no verification page, whatever it mentions.
CHALLENGE_TEXT_MAX = 600
#: Nor is a page bigger than this (bytes): the challenge pages are small.
CHALLENGE_PAGE_MAX = 100_000
#: Lower-case words that name a verification in a title or a main heading.
CHALLENGE_TITLE_WORDS: tuple[str, ...] = (
    "captcha",
    "verify you are human",
    "verifying you are human",
    "verify you are a human",
    "are you a robot",
    "are you human",
    "human verification",
    "security check",
    "bot check",
    "just a moment",
    "access denied",
    "has been denied",
    "验证码",
    "安全验证",
    "人机验证",
    "访问验证",
    "滑动验证",
    "环境异常",
    "异常访问",
)
#: Lower-case phrases that ask for a verification in a page's text (trusted beside a form
#: control to answer them): asking, not mentioning, so that articles about captchas don't count.
CHALLENGE_TEXT_WORDS: tuple[str, ...] = (
    "请输入验证码",
    "输入图中",
    "请完成验证",
    "完成验证后",
    "完成下方",
    "进行验证",
    "拖动滑块",
    "拖动到最右边",
    "按住滑块",
    "异常访问请求",
    "网络环境存在异常",
    "not a robot",
    "not a bot",
    "confirm you are a human",
    "verify you are human",
    "verify you are a human",
    "press & hold",
    "complete the security check",
    "complete the check below",
)
#: Lower-case substrings of the scripts of challenge platforms, which gate a whole page.
CHALLENGE_SCRIPTS: tuple[str, ...] = (
    "tcaptcha.js",
    "tencentcaptcha",
    "captcha.qq.com",
    "_cf_chl_opt",
    "/cdn-cgi/challenge-platform/",
    "g.alicdn.com/sd/nc",
    "nocaptcha(",
    "/static/machine/js/api/mkd.js",
    "passmachine",
    "static.geetest.com",
    "initgeetest",
    "px-captcha",
    "_pxappid",
    "captcha-delivery.com",
    "seccodeimage",
    "/antispider/",
)
#: Lower-case substrings of captcha widgets that also guard ordinary forms (comments,
#: logins): they count only beside a verification phrase.
CAPTCHA_WIDGETS: tuple[str, ...] = (
    "google.com/recaptcha/",
    "recaptcha.net/recaptcha/",
    "g-recaptcha",
    "hcaptcha.com/1/api.js",
    "h-captcha",
    "challenges.cloudflare.com/turnstile",
    "cf-turnstile",
)
#: Jiasule's (and others') first answer: a script that sets a cookie and reloads the page.
#: A regex, with re.S (compiled where used: few pages get that far).
COOKIE_RELOAD_SCRIPT = r"document\.cookie\s*=.{0,2000}?location\.href\s*=\s*location\.pathname"

#: Page-source substrings of verification pages, trusted only on pages that are not articles.
GENERIC_ANTI_ROBOT_MARKERS: tuple[str, ...] = (
    "cf-browser-verification",
    "window._cf_chl_opt",
    "challenge-platform/h/",
    "cf-challenge",
    "Attention Required! | Cloudflare",
    "g-recaptcha",
    "h-captcha",
    "geo.captcha-delivery.com",
    "Please verify you are a human",
)

#: `<title>` texts (case-folded, whole title) of soft-404 pages.
GENERIC_NOT_FOUND_TITLES: tuple[str, ...] = (
    "404",
    "not found",
    "404 not found",
    "404 - not found",
    "page not found",
    "404 page not found",
    "404 - page not found",
    "error 404",
    "页面不存在",
    "404 页面不存在",
    "404 - 页面不存在",
    "您访问的页面不存在",
)


def _host_matches(host: str, suffix: str) -> bool:
    """Whether `host` is `suffix` or a subdomain of it."""
    return host == suffix or host.endswith("." + suffix)


@lru_cache(maxsize=4096)  # a run's pages come from far fewer hosts
def site_for_host(host: str | None) -> SiteRule | None:
    """The rule whose host suffixes cover `host`."""
    if not host:
        return None
    host = host.lower().rstrip(".")
    for rule in SITES:
        if any(_host_matches(host, s) for s in rule.hosts):
            return rule
    return None


def site_for_content(
    data: bytes, end: int | None = None, found: Collection[bytes] | None = None
) -> SiteRule | None:
    """The rule with the most fingerprints in `data[:end]` (UTF-8), if it has enough of them.

    `found`: which of fingerprint_needles() occur in `data[:end]`, when a scanner has looked
    for them all in one pass; without it each is searched for here.
    """
    end = len(data) if end is None else min(end, len(data))
    best: SiteRule | None = None
    best_hits = 0
    for rule in SITES:
        gate, needles = _needles(rule)
        if found is None:
            if gate and data.find(gate, 0, end) < 0:
                continue
            hits = sum(1 for f in needles if data.find(f, 0, end) >= 0)
        else:
            if gate and gate not in found:
                continue
            hits = sum(1 for f in needles if f in found)
        if hits >= rule.fingerprint_min and hits > best_hits:
            best, best_hits = rule, hits
    return best


def _needles(rule: SiteRule) -> tuple[bytes, tuple[bytes, ...]]:
    """The rule's gate and fingerprints in UTF-8 (encoded once)."""
    needles = _FINGERPRINT_BYTES.get(rule.name)
    if needles is None:
        gate = rule.fingerprint_gate.encode()
        needles = _FINGERPRINT_BYTES[rule.name] = (
            gate,
            tuple(f.encode() for f in rule.fingerprints),
        )
    return needles


def fingerprint_needles() -> tuple[bytes, ...]:
    """Every rule's gate and fingerprints in UTF-8, each once: what site_for_content's
    `found` is taken from."""
    out: dict[bytes, None] = {}
    for rule in SITES:
        gate, needles = _needles(rule)
        if gate:
            out[gate] = None
        out.update(dict.fromkeys(needles))
    return tuple(out)


_FINGERPRINT_BYTES: dict[str, tuple[bytes, tuple[bytes, ...]]] = {}


def blocked_status(host: str | None, status: int) -> bool:
    """Whether the site at `host` refuses robots with `status` (Bilibili's 412)."""
    rule = site_for_host(host)
    return rule is not None and status in rule.blocked_statuses


def anti_robot_path(host: str | None, path: str) -> bool:
    """Whether `path` on `host` is one of the site's verification pages."""
    rule = site_for_host(host)
    return rule is not None and path.startswith(rule.anti_robot_paths)


#: Every site's verification paths, for a quick look before parsing a URL.
ANTI_ROBOT_PATHS: tuple[str, ...] = tuple(p for r in SITES for p in r.anti_robot_paths)

#: Statuses with which sites refuse robots whatever the host, beyond the standard ones
#: (classify counts them as blocked); a status only one site means so is its rule's
#: `blocked_statuses`.
STATUS_QUIRKS: dict[int, str] = {
    521: "CSDN's anti-robot answer (Jiasule's JavaScript challenge; also Cloudflare's "
    "'web server is down')",
    999: "LinkedIn's answer to robots",
}


#: Site names that end page titles on sites with no rule of their own: cut before comparing a
#: page's title with the one listed in a post (classify.strip_site_suffix).
TITLE_SUFFIX_SITES: tuple[str, ...] = (
    r"知乎(?:专栏)?",
    "博客园",
    "百度文库",
    "CSDN博客",
    r"[^-_|｜—–·]{0,40}的博客-CSDN博客",
    r"[^-_|｜—–·]{0,40}-CSDN博客",
    "微信公众平台",
    "简书",
    "掘金",
    "SegmentFault 思否",
    "腾讯云开发者社区",
)
#: A separator and one of them at the end of a title, as a regex (compiled by classify, which
#: uses it: compiling it cost `crawler extract` 1.5 ms of its start-up for nothing).
TITLE_SUFFIX = r"\s*(?:[-_|｜—–·]\s*)(?:" + "|".join(TITLE_SUFFIX_SITES) + r")\s*$"

#: Words that end the name of a site or a section of one (a title segment ending in one
#: names the site, not the article): 网 (web), 官网, 频道 (channel), 日报 (daily) …
SITE_WORDS: tuple[str, ...] = (
    "网",
    "网站",
    "官网",
    "门户",
    "频道",
    "在线",
    "新闻",
    "日报",
    "晚报",
    "博客",
    "论坛",
    "社区",
    "百科",
    "文库",
    "知乎",
)

#: Host labels that name no one: a title segment is not the site's name for matching them.
HOST_NOISE = frozenset({"www", "com", "org", "net", "co", "uk", "cn", "edu", "gov", "blog", "news"})
