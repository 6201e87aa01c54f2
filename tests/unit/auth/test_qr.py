"""The device-login QR code for a terminal (auth/qr.py): a 4-module quiet zone, two module rows per line, the
right polarity on dark, light and colour terminals. qwen-auth login drawing it: tests/unit/cli/test_auth.py."""

from __future__ import annotations

import io
import re

import pytest

from qwen_gateway.auth import qr

URL = "https://chat.qwen.ai/authorize?user_code=BF0Q6UX9&client=qwen-code"


def parse(lines: list[str], *, ink_is_dark: bool) -> list[list[bool]]:
    """Text lines back to modules (True = dark)."""
    halves = {"█": (True, True), "▀": (True, False), "▄": (False, True), " ": (False, False)}
    rows: list[list[bool]] = []
    for line in lines:
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)
        pairs = [halves[c] for c in line]
        rows.append([t == ink_is_dark for t, _ in pairs])
        rows.append([b == ink_is_dark for _, b in pairs])
    return rows


@pytest.mark.parametrize("style", [{"dark_background": True}, {"dark_background": False}, {"color": True}])
def test_qr_code_has_a_four_module_quiet_zone_and_the_right_polarity(style):
    matrix = qr.qr_matrix(URL)
    n = len(matrix)
    assert n % 2 == 1 and all(len(r) == n for r in matrix)
    lines = qr.render(matrix, **style)
    if style.get("color"):
        assert all(ln.startswith(qr.COLOR_ON) and ln.endswith(qr.COLOR_OFF) for ln in lines)
    ink_is_dark = not style.get("dark_background", True) or bool(style.get("color"))
    back = parse(lines, ink_is_dark=ink_is_dark)
    assert back[:n] == matrix and not any(back[n])  # round trip; the padding row is light
    for i, row in enumerate(back):  # the quiet zone: 4 light modules on every side
        assert not any(row[:4]) and not any(row[-4:]), i
        if i < 4 or i >= n - 4:
            assert not any(row), i
    inner = [row[4:-4] for row in matrix[4:-4]]
    assert all(inner[r][c] for r in (0, 6) for c in range(7))  # finder pattern right at the quiet zone
    border = re.sub(r"\x1b\[[0-9;]*m", "", lines[0])
    assert set(border) == ({"█"} if not ink_is_dark else {" "})  # light field: drawn as ink only on dark terminals


def test_qr_style_follows_the_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("COLORFGBG", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert qr.terminal_style(Tty()) == {"dark_background": True, "color": True}
    assert qr.terminal_style(Tty(), invert=True) == {"dark_background": False, "color": False}
    assert qr.terminal_style(io.StringIO()) == {"dark_background": True, "color": False}
    monkeypatch.setenv("COLORFGBG", "0;15")  # black on white
    assert qr.terminal_style(io.StringIO()) == {"dark_background": False, "color": False}
    monkeypatch.setenv("NO_COLOR", "1")
    assert qr.terminal_style(Tty()) == {"dark_background": False, "color": False}


def test_qr_text_is_the_rendered_lines_ending_in_a_newline():
    text = qr.qr_text(URL, dark_background=False)
    assert text.endswith("\n") and text.splitlines() == qr.render(qr.qr_matrix(URL), dark_background=False)
    assert qr.qr_matrix(URL) != qr.qr_matrix(URL + "x")  # the code says what it was given
