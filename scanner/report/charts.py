"""Charts of the HTML report: matplotlib figures rendered to SVG data URIs.

No pyplot (no global backend state, safe inside notebooks); text becomes paths
(svg.fonttype "path"), so no string from a server reaches the SVG as markup; labels are also
stripped of control characters and of mathtext's "$".
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import matplotlib
from matplotlib.figure import Figure

CLASS_COLOURS = {"all": "#2e7d32", "some": "#f9a825", "none": "#c62828"}
_RC: Any = {"svg.fonttype": "path", "svg.hashsalt": "scanner-report", "font.size": 9}


def label(text: str, width: int = 40) -> str:
    """A server-controlled string made safe and short for a chart label."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    if len(clean) > width:
        clean = clean[:width - 1] + "…"
    return clean.replace("$", r"\$")


def _uri(fig: Figure) -> str:
    buf = io.BytesIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def class_shares_chart(rows: Sequence[tuple[str, dict[str, float]]]) -> str:
    """Stacked horizontal bars: per row (e.g. STARTTLS, strict TLS) the all/some/none shares."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6.5, 0.5 + 0.55 * len(rows)))
        ax = fig.add_subplot()
        names = [name for name, _ in rows]
        left = [0.0] * len(rows)
        for cls, colour in CLASS_COLOURS.items():
            values = [shares.get(cls, 0.0) or 0.0 for _, shares in rows]
            ax.barh(names, values, left=left, color=colour, label=cls)
            left = [a + b for a, b in zip(left, values, strict=True)]
        ax.set_xlim(0, 100)
        ax.set_xlabel("% of mail domains")
        ax.invert_yaxis()
        ax.legend(ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.35), frameon=False)
        return _uri(fig)


def bar_chart(counts: dict[str, float], xlabel: str, colour: str = "#1565c0",
              top: int = 12) -> str:
    """Horizontal bars of the biggest entries of a distribution."""
    items = list(counts.items())[:top]
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6.5, 0.6 + 0.28 * max(1, len(items))))
        ax = fig.add_subplot()
        ax.barh([label(k) for k, _ in items], [v for _, v in items], color=colour)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        return _uri(fig)


def providers_chart(groups: Sequence[dict[str, object]], top: int = 10) -> str:
    """Domains served by the biggest providers, stacked by STARTTLS class."""
    shown = list(groups)[:top]
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6.5, 0.8 + 0.3 * max(1, len(shown))))
        ax = fig.add_subplot()
        names = [label(str(g["group"])) for g in shown]
        left = [0] * len(shown)
        for cls, colour in CLASS_COLOURS.items():
            values = [int(g["starttls"][cls]) for g in shown]  # type: ignore[index]
            ax.barh(names, values, left=left, color=colour, label=f"STARTTLS {cls}")
            left = [a + b for a, b in zip(left, values, strict=True)]
        ax.invert_yaxis()
        ax.set_xlabel("mail domains served (primary MX)")
        below = -0.12 - 0.6 / max(1, len(shown))
        ax.legend(ncols=3, loc="upper center", bbox_to_anchor=(0.5, below), frameon=False)
        return _uri(fig)


def _days(t: datetime) -> float:
    # time as a plain number (days since the epoch): matplotlib's date helpers are untyped
    return t.timestamp() / 86400.0


def trend_chart(times: Sequence[datetime], series: Mapping[str, Sequence[float | None]]) -> str:
    """Shares over time, one line per series."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6.5, 3.0))
        ax = fig.add_subplot()
        for name, values in series.items():
            points = [(t, v) for t, v in zip(times, values, strict=True) if v is not None]
            ax.plot([_days(t) for t, _ in points], [v for _, v in points], marker="o",
                    label=name)
        ax.set_xticks([_days(t) for t in times],
                      labels=[t.strftime("%Y-%m-%d\n%H:%M") for t in times])
        ax.set_ylim(0, 100)
        ax.set_ylabel("%")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        return _uri(fig)
