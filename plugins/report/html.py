"""HTML building blocks of the run report: escaping, tables, figures, the page shell and its CSS.

Every piece of text from a run (slide ids, failure reasons, CSV cells) passes through `esc`, so a
file name like `<script>` shows as text. The page carries its CSS inline, its images as data URIs and
no script at all; a Content-Security-Policy forbids every network fetch, so it reads the same offline.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

CSS = """
:root { --fg: #1d2433; --muted: #5b6475; --line: #d9dee7; --bg: #ffffff; --panel: #f5f7fa;
        --ok: #1a7f37; --cached: #0b62a4; --fail: #b42318; --warn: #9a6700; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 1rem 1.25rem 4rem; }
header.top { border-bottom: 1px solid var(--line); margin-bottom: 1rem; }
h1 { font-size: 1.6rem; margin: .6rem 0 .2rem; }
h2 { font-size: 1.3rem; margin: 2rem 0 .6rem; border-bottom: 1px solid var(--line); padding-bottom: .2rem; }
h3 { font-size: 1.08rem; margin: 1.4rem 0 .5rem; }
h4 { font-size: .98rem; margin: 1rem 0 .4rem; color: var(--muted); }
p.meta, .muted { color: var(--muted); }
nav.toc { font-size: .9rem; margin: .4rem 0 1rem; }
nav.toc a { margin-right: .9rem; white-space: nowrap; }
a { color: var(--cached); }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .86rem; }
pre { background: var(--panel); border: 1px solid var(--line); padding: .7rem; overflow: auto;
      max-height: 32rem; white-space: pre; }
.scroll { overflow-x: auto; margin: .4rem 0 .8rem; }
table { border-collapse: collapse; font-size: .88rem; }
th, td { border: 1px solid var(--line); padding: .25rem .55rem; text-align: left; vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.summary td { font-weight: 600; background: var(--panel); }
td.wrap { max-width: 42rem; overflow-wrap: anywhere; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: .4rem 0; }
dl.kv dt { color: var(--muted); }
dl.kv dd { margin: 0; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: .6rem; font-size: .8rem;
         font-weight: 600; color: #fff; background: var(--muted); }
.badge.done { background: var(--ok); } .badge.cached { background: var(--cached); }
.badge.failed, .badge.interrupted { background: var(--fail); } .badge.running { background: var(--warn); }
.verdict { border-left: 4px solid var(--muted); background: var(--panel); padding: .5rem .8rem;
           margin: .6rem 0; }
.verdict.above { border-color: var(--ok); } .verdict.below { border-color: var(--fail); }
.verdict.chance, .verdict.unknown { border-color: var(--warn); }
.note { color: var(--muted); font-size: .88rem; margin: .3rem 0; }
.error { color: var(--fail); }
figure { margin: .6rem 0 1rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); background: #fff; }
figcaption { font-size: .85rem; color: var(--muted); overflow-wrap: anywhere; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: .8rem; }
.grid figure { margin: 0; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 1rem; }
.chips { display: flex; flex-wrap: wrap; gap: .3rem .5rem; margin: .4rem 0 .8rem; padding: 0;
         list-style: none; }
.chips li { background: var(--panel); border: 1px solid var(--line); border-radius: .3rem; padding: 0 .45rem;
            font-size: .85rem; }
.chips b { font-weight: 600; color: var(--muted); margin-right: .3rem; }
.bar { background: var(--panel); border: 1px solid var(--line); height: .9rem; min-width: 8rem; }
.bar span { display: block; height: 100%; background: var(--cached); }
details { margin: .4rem 0; }
details > summary { cursor: pointer; color: var(--cached); }
@media (max-width: 640px) { main { padding: .6rem; } dl.kv { grid-template-columns: 1fr; } }
"""

# nothing may be fetched: images are data URIs, styles are inline, there is no script
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def esc(value: Any) -> str:
    """Text from a run, safe inside HTML elements and quoted attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """A cell value as text: floats to `digits` significant digits, NaN as an em dash."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:.{digits}g}"
    if value is None:
        return ""
    return str(value)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    summary_rows: Iterable[Sequence[Any]] = (),
    raw_columns: Iterable[int] = (),
) -> str:
    """A table of escaped cells; numbers right-aligned. `raw_columns` hold trusted HTML (badges, bars)."""
    raw = set(raw_columns)

    def cell(index: int, value: Any) -> str:
        if index in raw:
            return f"<td>{value}</td>"
        klass = "num" if is_number(value) else "wrap"
        return f'<td class="{klass}">{esc(fmt(value))}</td>'

    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = ["<tr>" + "".join(cell(i, v) for i, v in enumerate(row)) + "</tr>" for row in rows]
    body += [
        '<tr class="summary">' + "".join(cell(i, v) for i, v in enumerate(row)) + "</tr>"
        for row in summary_rows
    ]
    rows_html = "".join(body)
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table></div>'
    )


def key_values(items: Iterable[tuple[str, Any]]) -> str:
    """A definition list of escaped keys and values (skipping empty values)."""
    parts = [f"<dt>{esc(k)}</dt><dd>{esc(fmt(v))}</dd>" for k, v in items if v is not None and v != ""]
    return f'<dl class="kv">{"".join(parts)}</dl>' if parts else ""


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def chips(items: Iterable[tuple[str, Any]]) -> str:
    """Short name: value pairs in a wrapping row (a stage's metrics)."""
    parts = [f"<li><b>{esc(k)}</b>{esc(fmt(v))}</li>" for k, v in items]
    return f'<ul class="chips">{"".join(parts)}</ul>' if parts else ""


def figure(src: str, caption: str, alt: str | None = None) -> str:
    """An image (a data URI) with an escaped caption."""
    return (
        f'<figure><img src="{esc(src)}" alt="{esc(alt if alt is not None else caption)}" loading="eager">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def details(summary: str, body_html: str, *, open_: bool = False) -> str:
    """A collapsible block; `summary` is text, `body_html` trusted HTML."""
    flag = " open" if open_ else ""
    return f"<details{flag}><summary>{esc(summary)}</summary>{body_html}</details>"


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def paragraph(text: str, klass: str = "") -> str:
    attr = f' class="{esc(klass)}"' if klass else ""
    return f"<p{attr}>{esc(text)}</p>"


def badge(status: str) -> str:
    word = status.split()[0] if status else "unknown"
    return f'<span class="badge {esc(word)}">{esc(status)}</span>'


def bar(fraction: float) -> str:
    """A horizontal bar, `fraction` of the full width (timings)."""
    width = max(0.0, min(1.0, fraction)) * 100
    return f'<div class="bar"><span style="width:{width:.1f}%"></span></div>'


def anchor(stage_id: str) -> str:
    """The fragment id of a stage's section (escape it where it is used, like any text)."""
    return f"stage-{stage_id}"


def document(title: str, heading_html: str, toc: Sequence[tuple[str, str]], sections: Sequence[str]) -> str:
    """The whole page: `toc` is (fragment id, label) pairs; `sections` trusted HTML."""
    links = "".join(f'<a href="#{esc(target)}">{esc(label)}</a>' for target, label in toc)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="generator" content="histo report">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n"
        f'<body><main><header class="top">{heading_html}<nav class="toc">{links}</nav></header>\n'
        + "\n".join(sections)
        + "\n</main></body></html>\n"
    )
