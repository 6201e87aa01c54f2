"""The device-login QR code for a terminal: the standard 4-module quiet zone, two module rows per text line
(half blocks), readable on dark and light backgrounds.

A QR code needs dark modules on a light field. A terminal draws glyphs in its foreground colour, so:
- `color=True` (a terminal that takes ANSI colours): black glyphs for dark modules on a white background,
  forced per line - right on any theme;
- otherwise glyphs are drawn where the modules are light (`dark_background=True`, the usual terminal) or
  where they are dark (`dark_background=False`, a light terminal: `qwen-auth login --invert`).
"""

from __future__ import annotations

import os

QUIET_ZONE = 4  # modules, ISO/IEC 18004
GLYPHS = {(True, True): "█", (True, False): "▀", (False, True): "▄", (False, False): " "}
COLOR_ON = "\x1b[30;107m"  # black on bright white
COLOR_OFF = "\x1b[0m"


def qr_matrix(data: str) -> list[list[bool]]:
    """The modules, quiet zone included: True = dark."""
    import qrcode

    qr = qrcode.QRCode(border=QUIET_ZONE)
    qr.add_data(data)
    qr.make(fit=True)
    return [list(map(bool, row)) for row in qr.get_matrix()]


def render(matrix: list[list[bool]], *, dark_background: bool = True, color: bool = False) -> list[str]:
    """Text lines, two module rows each (an odd last row is paired with a light one: more quiet zone)."""
    rows = matrix + [[False] * len(matrix[0])] if len(matrix) % 2 else matrix
    ink_is_light = dark_background and not color
    lines = []
    for top, bottom in zip(rows[0::2], rows[1::2]):
        line = "".join(GLYPHS[(t != ink_is_light, b != ink_is_light)] for t, b in zip(top, bottom))
        lines.append(f"{COLOR_ON}{line}{COLOR_OFF}" if color else line)
    return lines


def terminal_style(stream, *, invert: bool = False) -> dict:
    """How to draw on `stream`: colours on a terminal that takes them (unless --invert asks for plain
    glyphs for a light background), else plain glyphs for the background $COLORFGBG names (dark if
    unknown), flipped by --invert."""
    if invert:
        return {"dark_background": False, "color": False}
    tty = hasattr(stream, "isatty") and stream.isatty()
    if tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM", "") != "dumb":
        return {"dark_background": True, "color": True}
    bg = os.environ.get("COLORFGBG", "").rsplit(";", 1)[-1]
    return {"dark_background": bg not in ("7", "15"), "color": False}


def qr_text(data: str, **style) -> str:
    return "\n".join(render(qr_matrix(data), **style)) + "\n"
