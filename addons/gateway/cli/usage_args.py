"""qwen-usage's argument types: --since (a day, a time or an age), --status (a code or a class), --limit."""

from __future__ import annotations

import argparse
import datetime
import re
import time

_AGE = re.compile(r"^(\d+)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str, now: float | None = None) -> float:
    """--since: a local day or time, or an age ("30m"), as epoch seconds."""
    value = value.strip()
    age = _AGE.match(value)
    if age:
        return (time.time() if now is None else now) - int(age.group(1)) * _UNIT[age.group(2)]
    try:
        if len(value) == 10:
            day = datetime.date.fromisoformat(value)
            return time.mktime((day.year, day.month, day.day, 0, 0, 0, 0, 0, -1))
        return datetime.datetime.fromisoformat(value).timestamp()  # naive: local time
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a day, time or age (YYYY-MM-DD, YYYY-MM-DDTHH:MM, 30m, 6h, 7d): {value!r}") from None


def status(value: str) -> str:
    v = value.strip().lower()
    if re.fullmatch(r"[1-5]\d\d|[1-5]xx", v):
        return v
    raise argparse.ArgumentTypeError(f"not a status (503) or class (5xx): {value!r}")


def positive(value: str) -> int:
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise argparse.ArgumentTypeError(f"not a positive number: {value!r}")
