"""Write Wikipedia-sized article pages (about 1 MB, 60,000+ tags each) and an eval manifest.

The blog links to many Wikipedia articles; the shared extraction corpus has none that big and
that dense in markup. These pages follow the markup MediaWiki's Vector skin serves (head
scripts, the sidebar and the tool menus, an infobox, paragraphs thick with links and
citation marks, hundreds of references, navboxes, the footer), with text made of a seeded
vocabulary: the markup is faithful, the prose is not. Titles and first paragraphs are known,
so the pages are scored like the corpus: the title is og:title as the corpus's sources keep it
("Name - Wikipedia"), the summary the first paragraph (Wikipedia pages have no description).

    python bench/wikipages.py OUT_DIR [--pages 6] [--corpus MANIFEST]

writes OUT_DIR/wiki-*.html and OUT_DIR/manifest.json: the pages written plus, with --corpus,
the entries of that manifest (their files by absolute path), ready for extraction_eval.py.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import random
from pathlib import Path

EN_WORDS = [
    "system",
    "kernel",
    "software",
    "free",
    "open",
    "source",
    "developed",
    "released",
    "version",
    "distribution",
    "community",
    "project",
    "support",
    "hardware",
    "users",
    "desktop",
    "server",
    "network",
    "device",
    "computer",
    "operating",
    "language",
    "program",
    "code",
    "license",
    "foundation",
    "market",
    "company",
    "research",
    "early",
    "history",
    "design",
    "based",
    "common",
    "widely",
    "used",
    "later",
    "first",
    "second",
    "number",
    "several",
    "include",
    "including",
    "major",
    "known",
    "original",
    "called",
    "standard",
    "modern",
    "popular",
    "data",
    "early",
    "public",
    "report",
    "industry",
    "engineer",
    "architecture",
    "module",
    "interface",
    "library",
    "package",
    "process",
    "memory",
    "file",
    "storage",
    "security",
    "update",
    "service",
    "cloud",
    "mobile",
    "platform",
    "embedded",
    "environment",
]
ZH_CHARS = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同"
    "工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理"
    "起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事"
    "平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问"
    "意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特"
    "件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做"
    "必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极"
)
ZH_NAMES = (
    "操作系统",
    "内核",
    "自由软件",
    "开放源代码",
    "发行版",
    "计算机",
    "网络协议",
    "编程语言",
)


def _en_sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(EN_WORDS) for _ in range(n)]
    return " ".join(words).capitalize()


def _zh_sentence(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(ZH_CHARS) for _ in range(n))


def _link(rng: random.Random, zh: bool) -> str:
    text = rng.choice(ZH_NAMES) if zh else " ".join(rng.choice(EN_WORDS) for _ in range(2))
    target = text.replace(" ", "_").capitalize()
    if rng.random() < 0.04:  # flag icons, as in navboxes and infoboxes
        return (
            '<span class="flagicon"><img alt="" '
            f'src="//upload.wikimedia.org/{n_icon(rng)}.svg.png" '
            'decoding="async" width="23" height="15" class="mw-file-element" '
            'data-file-width="900" data-file-height="600"></span>'
        )
    return f'<a href="/wiki/{html.escape(target)}" title="{html.escape(target)}">{text}</a>'


def n_icon(rng: random.Random) -> str:
    """Path of an icon file."""
    return f"thumb/{rng.randint(0, 15):x}/{rng.randint(0, 255):02x}/Flag_{rng.randint(1, 200)}"


def _paragraph(rng: random.Random, zh: bool, sentences: int, cite_base: int) -> str:
    """One paragraph of an article: sentences thick with links, each with a citation mark."""
    parts: list[str] = []
    for i in range(sentences):
        chunks: list[str] = []
        for _ in range(rng.randint(2, 4)):
            words = _zh_sentence(rng, rng.randint(3, 7)) if zh else _en_sentence(rng, 2)
            chunks.append(f"{words}{_link(rng, zh)}" if zh else f"{words} {_link(rng, zh)}")
        note = cite_base + i
        cite = (
            f'<sup id="cite_ref-{note}" class="reference"><a href="#cite_note-{note}">'
            f'<span class="cite-bracket">&#91;</span>{note}<span class="cite-bracket">&#93;'
            "</span></a></sup>"
        )
        parts.append(("" if zh else " ").join(chunks) + ("。" if zh else ".") + cite)
    return "<p>" + " ".join(parts) + "\n</p>"


def _infobox(rng: random.Random, zh: bool, name: str) -> str:
    rows = []
    for _ in range(18):
        label = rng.choice(ZH_NAMES) if zh else rng.choice(EN_WORDS).capitalize()
        value = ", ".join(_link(rng, zh) for _ in range(rng.randint(1, 3)))
        rows.append(
            f'<tr><th scope="row" class="infobox-label">{label}</th>'
            f'<td class="infobox-data">{value}</td></tr>'
        )
    return (
        '<table class="infobox vevent"><tbody><tr><th colspan="2" class="infobox-above">'
        f'{html.escape(name)}</th></tr><tr><td colspan="2" class="infobox-image"><span '
        f'typeof="mw:File"><a href="/wiki/File:{n_icon(rng)}" class="mw-file-description"><img '
        f'src="//upload.wikimedia.org/{n_icon(rng)}.png" decoding="async" width="250" '
        'height="120" class="mw-file-element"></a></span><div class="infobox-caption">'
        f"{html.escape(name)}<br>{_en_sentence(rng, 4)}</div></td></tr>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _reference(rng: random.Random, n: int, zh: bool) -> str:
    title = _zh_sentence(rng, 12) if zh else _en_sentence(rng, 7)
    year = rng.randint(1991, 2024)
    return (
        f'<li id="cite_note-{n}"><span class="mw-cite-backlink"><b><a href="#cite_ref-{n}">^'
        f'</a></b></span> <span class="reference-text"><link rel="mw-deduplicated-inline-style" '
        f'href="mw-data:TemplateStyles:r1238218222"><cite id="CITEREF{n}" class="citation '
        f'web cs1"><a rel="nofollow" class="external text" href="https://example.org/r/{n}">'
        f'"{html.escape(title)}"</a>. <i>{rng.choice(EN_WORDS).capitalize()} Weekly</i>. '
        f'{year}. <span class="reference-accessdate">Retrieved <span class="nowrap">'
        f"{rng.randint(1, 28)} May</span> {year + 1}</span>.</cite><span "
        f'title="ctx_ver=Z39.88-2004&amp;rft.genre=unknown&amp;rft.date={year}" '
        f'class="Z3988"></span></span></li>'
    )


def _navbox(rng: random.Random, zh: bool) -> str:
    groups = []
    for _ in range(10):
        items = "".join(f"<li>{_link(rng, zh)}</li>" for _ in range(rng.randint(20, 35)))
        groups.append(
            f'<tr><th scope="row" class="navbox-group">{rng.choice(EN_WORDS).capitalize()}</th>'
            f'<td class="navbox-list-with-group navbox-list navbox-odd"><div><ul>{items}</ul>'
            "</div></td></tr>"
        )
    return (
        '<div role="navigation" class="navbox" aria-label="Navbox"><table class="nowraplinks '
        'mw-collapsible autocollapse navbox-inner"><tbody>' + "".join(groups) + "</tbody></table>"
        "</div>"
    )


def _menu(rng: random.Random, zh: bool, n: int, cls: str) -> str:
    items = "".join(
        f'<li id="n-{i}" class="mw-list-item"><a href="/wiki/Special:{i}"><span>'
        f"{rng.choice(ZH_NAMES) if zh else rng.choice(EN_WORDS)}</span></a></li>"
        for i in range(n)
    )
    return (
        f'<div class="vector-menu {cls}"><div class="vector-menu-content"><ul>{items}</ul>'
        "</div></div>"
    )


def build_page(seed: int, zh: bool, target: int = 1_000_000) -> tuple[str, str, str]:
    """One article page about `target` bytes long, with its title and first paragraph."""
    rng = random.Random(seed)
    if zh:
        name = rng.choice(ZH_NAMES) + _zh_sentence(rng, 2)
        site, host, lang = "维基百科，自由的百科全书", "zh.wikipedia.org", "zh"
    else:
        name = " ".join(rng.choice(EN_WORDS) for _ in range(2)).title()
        site, host, lang = "Wikipedia", "en.wikipedia.org", "en"
    slug = name.replace(" ", "_")
    lead_text = (
        f"{name}是一个{_zh_sentence(rng, 30)}。{_zh_sentence(rng, 40)}。"
        if zh
        else f"{name} is a {_en_sentence(rng, 12).lower()}. {_en_sentence(rng, 18)}."
    )
    head = (
        f'<!DOCTYPE html>\n<html class="client-nojs vector-feature-language-in-header-enabled" '
        f'lang="{lang}" dir="ltr">\n<head>\n<meta charset="UTF-8">\n'
        f"<title>{html.escape(name)} - {site}</title>\n"
        '<script>(function(){var className="client-js";document.documentElement.className='
        "className;}());RLCONF={" + ",".join(f'"wg{i}":"{"x" * 40}"' for i in range(120)) + "};"
        'RLSTATE={"site.styles":"ready","user.styles":"ready"};RLPAGEMODULES=["ext.cite.ux-'
        'enhancements","site","mediawiki.page.ready"];</script>\n'
        '<link rel="stylesheet" href="/w/load.php?lang=en&amp;modules=skins.vector.styles&amp;'
        'only=styles&amp;skin=vector-2022">\n'
        + "".join(
            f'<link rel="preload" href="/static/images/{i}.svg" as="image">\n' for i in range(6)
        )
        + '<meta name="generator" content="MediaWiki 1.44.0-wmf.1">\n'
        '<meta name="referrer" content="origin-when-cross-origin">\n'
        '<meta name="robots" content="max-image-preview:standard">\n'
        f'<meta property="og:image" content="https://upload.wikimedia.org/{slug}.png">\n'
        f'<meta property="og:title" content="{html.escape(name)} - {site}">\n'
        '<meta property="og:type" content="website">\n'
        f'<link rel="canonical" href="https://{host}/wiki/{html.escape(slug)}">\n'
        "</head>\n"
    )
    top = (
        f'<body class="skin--responsive skin-vector mediawiki ltr sitedir-ltr ns-0 page-{slug}">'
        '<a class="mw-jump-link" href="#bodyContent">Jump to content</a>'
        '<div class="vector-header-container"><header class="vector-header mw-header">'
        + _menu(rng, zh, 12, "vector-main-menu")
        + '<div id="p-search" role="search" class="vector-search-box"><form action="/w/index.php"'
        ' id="searchform"><input type="search" name="search" placeholder="Search"></form></div>'
        + _menu(rng, zh, 8, "vector-user-links")
        + "</header></div>"
        '<div class="mw-page-container"><div class="mw-page-container-inner">'
        '<div class="vector-sitenotice-container"><div id="siteNotice"></div></div>'
        '<div class="vector-column-start">' + _menu(rng, zh, 30, "vector-toc") + "</div>"
        '<div class="mw-content-container"><main id="content" class="mw-body">'
        '<header class="mw-body-header vector-page-titlebar"><h1 id="firstHeading" '
        f'class="firstHeading mw-first-heading"><span class="mw-page-title-main">'
        f"{html.escape(name)}</span></h1>"
        + _menu(rng, zh, 60, "vector-language-list")
        + "</header>"
        '<div id="bodyContent" class="vector-body"><div id="siteSub" class="noprint">From '
        f'{site}</div><div id="mw-content-text" class="mw-body-content"><div class="mw-content-'
        f'ltr mw-parser-output" lang="{lang}" dir="ltr"><div class="shortdescription nomobile '
        f'noexcerpt noprint searchaux" style="display:none">{_en_sentence(rng, 5)}</div>'
        '<p class="mw-empty-elt"></p>'
        + _infobox(rng, zh, name)
        + f"<p><b>{html.escape(name)}</b>{html.escape(lead_text[len(name) :])}</p>"
    )
    body: list[str] = [head, top]
    size = len(head) + len(top)
    note = 1
    section = 0
    while size < target * 0.35:
        section += 1
        heading = _zh_sentence(rng, 4) if zh else _en_sentence(rng, 2)
        chunk = [
            f'<div class="mw-heading mw-heading2"><h2 id="s{section}">{heading}</h2>'
            f'<span class="mw-editsection"><span class="mw-editsection-bracket">[</span><a '
            f'href="/w/index.php?title={slug}&amp;action=edit&amp;section={section}">edit</a>'
            '<span class="mw-editsection-bracket">]</span></span></div>'
        ]
        for _ in range(rng.randint(3, 6)):
            n = rng.randint(3, 6)
            chunk.append(_paragraph(rng, zh, n, note))
            note += n
        part = "".join(chunk)
        body.append(part)
        size += len(part.encode())
    refs = [
        '<div class="mw-heading mw-heading2"><h2 id="References">References</h2></div>'
        '<div class="reflist"><div class="mw-references-wrap mw-references-columns">'
        '<ol class="references">'
    ]
    refs.extend(_reference(rng, n, zh) for n in range(1, note))
    refs.append("</ol></div></div>")
    body.append("".join(refs))
    size += len(body[-1].encode())
    while size < target:
        nav = _navbox(rng, zh)
        body.append(nav)
        size += len(nav.encode())
    body.append(
        '</div></div></div></main></div></div></div><footer id="footer" class="mw-footer">'
        + _menu(rng, zh, 20, "footer-places")
        + '</footer><script>(RLQ=window.RLQ||[]).push(function(){mw.config.set({"wgBackendResp'
        'onseTime":143,"wgHostname":"mw-web"});});</script></body></html>'
    )
    return "".join(body), f"{name} - {site}", normalize(lead_text)


def normalize(s: str) -> str:
    """Runs of whitespace as one space."""
    return " ".join(s.split())


def main() -> int:
    """Write the pages and the manifest."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--pages", type=int, default=6, help="pages to write (half of them zh)")
    ap.add_argument("--corpus", type=Path, help="a manifest whose entries come first")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, object]] = []
    if args.corpus is not None:
        base = args.corpus.resolve().parent
        for e in json.loads(args.corpus.read_text(encoding="utf-8")):
            e = dict(e)
            e["file"] = str(base / (e.get("file") or e["name"] + ".html"))
            entries.append(e)
    for i in range(args.pages):
        zh = i % 2 == 1
        page, title, summary = build_page(1000 + i, zh, target=850_000 + 150_000 * (i % 3))
        name = f"wiki-{'zh' if zh else 'en'}-{i}"
        path = args.out / f"{name}.html"
        data = page.encode("utf-8")
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        entries.append(
            {
                "name": name,
                "file": str(path.resolve()),
                "expected_title": title,
                "expected_summary": summary,
                "lang_group": "zh" if zh else "en",
                "dataset": "wikipages",
                "kind": "synthetic",
                "size_tier": "large",
                "bytes": len(data),
            }
        )
    (args.out / "manifest.json").write_text(
        json.dumps(entries, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
