"""The test post of the end-to-end tests (test_cli, test_pg, test_report_files): a Chinese
reading list whose entries are the local server's pages, one `URL` line and one title line each.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tests.server import LocalServer

#: Fast, deterministic fetch flags for a check against the local server.
FAST = ["--host-interval", "0", "--retries", "1", "--backoff", "0", "--timeout", "2"]

#: (path, listed title) of the first section's entries.
REFERENCES = (
    ("/page/article", "语音识别的最新进展"),
    ("/page/removed", "端对端的深度卷积神经网络在语音识别中的应用"),
    ("/page/verify", "谷歌发布全新端到端语音识别系统"),
    ("/status/404", "一篇消失的文章"),
)
#: The second section's first entries; the caller adds its own after them.
OTHERS = (
    ("/page/zhihu-403", "语音识别中，如何理解HMM是一个生成模型？"),
    ("/page/gbk", "基于深度学习的语音识别"),
)
#: The last entry of every such post.
LAST = ("/drop", "连接被断开")


def write_post(
    tmp_path: Path, server: LocalServer, entries: Sequence[tuple[str, str]], name: str = "post.md"
) -> Path:
    """post.md: REFERENCES under `# 语音 / ## 参考`, then under `# 其他` OTHERS, `entries` and
    LAST."""

    def block(items: Sequence[tuple[str, str]]) -> str:
        return "".join(f"{server.url(path)}\n\n{title}\n\n" for path, title in items)

    text = (
        "# 语音\n\n## 参考\n\n"
        + block(REFERENCES)
        + "# 其他\n\n"
        + block([*OTHERS, *entries, LAST])
    )
    p = tmp_path / name
    p.write_text(text.removesuffix("\n"), encoding="utf-8")
    return p


def recovering_post(tmp_path: Path, server: LocalServer) -> Path:
    """The post with a notice-quoting article, a changed title and a link that recovers on retry
    (test_cli, test_report_files)."""
    entries = [
        ("/page/article-quoting-notice", "如何判断文章被删除"),
        ("/page/article", "一个被改过的标题"),
        ("/flaky/cli?fail=1", "Recovered"),
    ]
    return write_post(tmp_path, server, entries)


def moving_post(tmp_path: Path, server: LocalServer) -> Path:
    """The post with a changed title, a permanent move, hostile text and a 500 (test_pg)."""
    entries = [
        ("/page/article", "一个被改过的标题"),
        ("/redirect/301?to=/page/article", "搬走了"),
        ("/page/hostile-text", "Hostile"),
        ("/status/500", "坏了"),
    ]
    return write_post(tmp_path, server, entries)
