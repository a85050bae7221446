"""A report as one self-contained HTML page (``index.html``): the figures, then the markdown report
converted for a browser.

The converter covers the markdown that :mod:`difftrade.analysis.report` writes: ``#`` headings,
pipe tables (the row after the header is the alignment row), ``-``/``*`` list items, paragraphs,
and inline ``code`` and ``**bold**``. Everything else is text, escaped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.45;color:#111}table{border-collapse:collapse;margin:0.8rem 0;font-size:0.9rem}"
    "th,td{border:1px solid #bbb;padding:0.2rem 0.5rem}th{background:#eee}"
    "td.num{text-align:right}img{max-width:100%;margin:0.5rem 0}code{background:#f2f2f2}"
)


def inline(text: str) -> str:
    """Escaped text with ``code`` and ``**bold**`` spans."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def _table(rows: list[str]) -> list[str]:
    """A pipe table: header, alignment row, body rows (right-aligned where the alignment says)."""
    header = _cells(rows[0])
    align = _cells(rows[1]) if len(rows) > 1 and set(rows[1]) <= set("|:- ") else []
    body = rows[2:] if align else rows[1:]
    right = [a.endswith(":") and not a.startswith(":") for a in align] + [False] * len(header)
    out = ["<table>", "<tr>" + "".join(f"<th>{inline(c)}</th>" for c in header) + "</tr>"]
    for row in body:
        out.append(
            "<tr>"
            + "".join(
                f'<td class="num">{inline(c)}</td>' if right[i] else f"<td>{inline(c)}</td>"
                for i, c in enumerate(_cells(row))
            )
            + "</tr>"
        )
    return out + ["</table>"]


def markdown_to_html(text: str) -> str:
    """The HTML body of a markdown report (the subset in the module docstring)."""
    out: list[str] = []
    lines, i = text.splitlines(), 0
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            out.append(f"<p>{inline(' '.join(paragraph))}</p>")
            paragraph.clear()

    while i < len(lines):
        line = lines[i]
        heading = re.match(r"(#{1,6})\s+(.*)", line)
        if line.lstrip().startswith("|"):
            flush()
            start = i
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                i += 1
            out += _table(lines[start:i])
            continue
        if heading:
            flush()
            level = len(heading[1])
            out.append(f"<h{level}>{inline(heading[2])}</h{level}>")
        elif item := re.match(r"\s*[-*]\s+(.*)", line):
            flush()
            out.append(f"<ul><li>{inline(item[1])}</li></ul>")
        elif not line.strip():
            flush()
        else:
            paragraph.append(line.strip())
        i += 1
    flush()
    return "\n".join(out).replace("</ul>\n<ul>", "\n")


def page(report_markdown: str, figures: Sequence[str], title: str) -> str:
    """``index.html``: ``title``, the figures (file names beside the page), then the report."""
    images = "\n".join(f'<img src="{html.escape(f)}" alt="{html.escape(f)}">' for f in figures)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n{images}\n{markdown_to_html(report_markdown)}\n"
        "</body></html>\n"
    )
