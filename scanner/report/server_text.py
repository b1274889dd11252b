"""Server-controlled text made safe to show: banners, EHLO lines, certificate subjects.

Every string that came from a server is attacker-controlled. Shown on a terminal, control
characters (ESC sequences, CR, NUL) could rewrite what the operator sees; they are shown as
visible `\\xNN` escapes instead, wherever such text is printed or rendered.
"""

from __future__ import annotations


def printable(text: str, keep: str = "") -> str:
    """`text` with every non-printable character (except those in `keep`) shown as \\xNN."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else f"\\x{ord(c):02x}" for c in text)
