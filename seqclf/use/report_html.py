"""The HTML of `seqclf report`: one self-contained page, built with plain string templates.

Every string that comes from a run (names, class names, config values, file paths) goes through
html.escape; images are data URIs; the styles are inline. No scripts, no links to fetch: the page
opens offline, from a file, in any browser.
"""

from __future__ import annotations

import html
from typing import Any

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2329; margin: 0 auto;
       max-width: 1100px; padding: 24px 28px 60px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 32px 0 8px; border-bottom: 1px solid #dde3e8;
padding-bottom: 4px; } h3 { font-size: 14px; margin: 18px 0 6px; }
.lead { color: #56606a; margin: 0 0 16px; } .note { color: #56606a; font-size: 12.5px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.card { border: 1px solid #dde3e8; border-radius: 6px; padding: 8px 12px; min-width: 110px; }
.card b { display: block; font-size: 19px; } .card span { color: #56606a; font-size: 12px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 9px; border-bottom: 1px solid #eef1f4; text-align: right; }
th { background: #f5f7f9; font-weight: 600; } td.l, th.l { text-align: left; }
table.confusion td { border: 1px solid #fff; min-width: 34px; text-align: center; }
pre { background: #f5f7f9; border: 1px solid #e5e9ed; border-radius: 6px; padding: 10px 12px; font-size: 12.5px;
      overflow-x: auto; }
img.figure { max-width: 100%; height: auto; display: block; margin: 6px 0; }
.row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.mistakes { display: flex; flex-wrap: wrap; gap: 10px; }
.mistake { text-align: center; font-size: 11.5px; width: 96px; } .mistake img { image-rendering: pixelated; }
details summary { cursor: pointer; color: #2a5d8f; }
"""


def esc(value: Any) -> str:
    """Any value as HTML text: escaped, None as an en dash."""
    return "\u2013" if value is None else html.escape(str(value), quote=True)


def page(title: str, body: list[str]) -> str:
    """The whole document: head with inline styles, then the body's parts in order."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def heading(level: int, text: str, anchor: str | None = None) -> str:
    ident = f' id="{esc(anchor)}"' if anchor else ""
    return f"<h{level}{ident}>{esc(text)}</h{level}>"


def paragraph(text: str, css: str = "") -> str:
    attribute = f' class="{esc(css)}"' if css else ""
    return f"<p{attribute}>{esc(text)}</p>"


def cards(items: list[tuple[str, str]]) -> str:
    """Key figures as small cards: (value, what it is)."""
    return '<div class="cards">' + "".join(
        f'<div class="card"><b>{esc(value)}</b><span>{esc(label)}</span></div>' for value, label in items) + "</div>"


def table(headers: list[str], rows: list[list[Any]], left: int = 1) -> str:
    """A table; the first `left` columns are left-aligned (names), the rest right-aligned (numbers)."""
    def cell(tag: str, i: int, value: Any) -> str:
        attribute = ' class="l"' if i < left else ""
        return f"<{tag}{attribute}>{esc(value)}</{tag}>"

    head = "<tr>" + "".join(cell("th", i, h) for i, h in enumerate(headers)) + "</tr>"
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def confusion(matrix: list[list[int]], names: list[str]) -> str:
    """The confusion matrix by class name, each cell shaded by its share of the true class."""
    head = '<tr><th class="l">true \\ predicted</th>' + "".join(f"<th>{esc(n)}</th>" for n in names) + "</tr>"
    rows = []
    for name, row in zip(names, matrix):
        total = max(sum(row), 1)
        cells = []
        for count in row:
            share = count / total
            colour = f"rgba(42, 93, 143, {share:.3f})"
            ink = "#fff" if share > 0.55 else "#1d2329"
            cells.append(f'<td style="background: {colour}; color: {ink}">{count}</td>')
        rows.append(f'<tr><th class="l">{esc(name)}</th>{"".join(cells)}</tr>')
    return f'<table class="confusion">{head}{"".join(rows)}</table>'


def figure(uri: str, alt: str, width: int | None = None) -> str:
    """An inline image (a data: URI) with its alternative text."""
    if not uri.startswith("data:image/"):
        raise ValueError("a report's images are inline data URIs")
    size = f' style="max-width: {width}px"' if width else ""
    return f'<img class="figure" src="{esc(uri)}" alt="{esc(alt)}"{size}>'


def mistakes(items: list[tuple[str, str, str, float]]) -> str:
    """(image URI, true class, predicted class, probability) per wrong prediction, as a grid with captions."""
    return '<div class="mistakes">' + "".join(
        f'<div class="mistake"><img src="{esc(uri)}" alt="true {esc(true)}, predicted {esc(predicted)}" '
        f'width="56" height="56"><br>true {esc(true)}<br><b>{esc(predicted)}</b> {probability:.2f}</div>'
        for uri, true, predicted, probability in items) + "</div>"


def preformatted(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def collapsed(summary: str, inner: str) -> str:
    return f"<details><summary>{esc(summary)}</summary>{inner}</details>"


def row(*parts: str) -> str:
    """Parts side by side where the page is wide enough."""
    return '<div class="row">' + "".join(f"<div>{part}</div>" for part in parts) + "</div>"
