"""HTML pieces of the report: escaping, tables, the page shell with its inline CSS.

Everything that reaches the page goes through `esc` (html.escape with quotes), whether it came
from a server (banners, certificate names, MX host names) or not; numbers carry a `data-stat`
attribute naming their place in `scanner stats --format json`, so tests can check them.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from scanner.report.server_text import printable

# The page needs no script and no network: the policy forbids both, as a second line of
# defence behind escaping.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;
background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:1.5em 2em 4em}
h1{font-size:1.6em;margin:.2em 0}h2{margin-top:2em;border-bottom:2px solid #ddd;padding-bottom:.2em}
h3{margin-bottom:.3em}
.meta{color:#555}.note{color:#555;font-size:.92em;max-width:60em}
table{border-collapse:collapse;margin:.5em 0 1em;background:#fff;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right;vertical-align:top}
th{background:#f0f0f0}td.k,th.k{text-align:left;max-width:38em;overflow-wrap:anywhere}
.grid{display:flex;flex-wrap:wrap;gap:1.5em}.grid>section{flex:1 1 420px}
img.chart{max-width:100%;height:auto;background:#fff;border:1px solid #eee}
.all{color:#2e7d32}.some{color:#a66f00}.none{color:#c62828}
.warning{background:#fff3cd;border:2px solid #c62828;padding:.6em 1em;margin:1em 0;color:#5d1a1a}
.warning ul{margin:.3em 0 0;padding-left:1.2em}
"""


def esc(value: Any) -> str:
    """Any value as HTML text (None as an en dash); control characters shown as \\xNN."""
    if value is None:
        return "–"
    # NUL, ESC, CR... from a server: visible rather than silently dropped by the parser
    return html.escape(printable(str(value), keep="\n\t"), quote=True)


def pct(n: float | None, of: float | None = None) -> str:
    """A share as text: pct(67.0) or pct(count, denominator)."""
    value = n if of is None else (None if not of or n is None else 100.0 * n / of)
    return "–" if value is None else f"{value:.1f}%"


def num_cell(value: Any, stat: str | None = None) -> str:
    """A number cell, tagged with its JSON path when it is one of the survey statistics."""
    attr = f' data-stat="{esc(stat)}"' if stat else ""
    return f"<td{attr}>{esc(value)}</td>"


def count_table(rows: Iterable[tuple[str, int, int, str | None]], head: str = "",
                key_title: str = "", denominator: str = "of") -> str:
    """Rows of (key, count, denominator, data-stat path) with their shares."""
    body = "".join(
        f'<tr><td class="k">{esc(key)}</td>{num_cell(n, stat)}<td>{esc(of)}</td>'
        f"<td>{pct(n, of)}</td></tr>" for key, n, of, stat in rows)
    caption = f"<caption>{esc(head)}</caption>" if head else ""
    return (f"<table>{caption}<tr><th class=\"k\">{esc(key_title)}</th><th>count</th>"
            f"<th>{esc(denominator)}</th><th>%</th></tr>{body}</table>")


def grid_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table of already-rendered cells (each a complete <td>)."""
    head = "".join(f'<th class="k">{esc(c)}</th>' if i == 0 else f"<th>{esc(c)}</th>"
                   for i, c in enumerate(columns))
    return f"<table><tr>{head}</tr>{''.join('<tr>' + ''.join(r) + '</tr>' for r in rows)}</table>"


def chart(uri: str, alt: str) -> str:
    """An inline SVG chart (a data: URI, so its ids never clash with the page's)."""
    return f'<img class="chart" alt="{esc(alt)}" src="{uri}">'


def page(title: str, body: str) -> str:
    """The whole document."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>"
            f"<body><main>{body}</main></body></html>\n")
