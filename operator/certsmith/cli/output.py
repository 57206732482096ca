"""Plain output as kubectl prints it: aligned columns, short durations, optional color.

Color is only for people: it is off when stdout is not a terminal or NO_COLOR is set,
so scripts and tests always see plain text.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TextIO

from certsmith.api import times

COLUMN_GAP = "   "  # kubectl's tabwriter pads columns with three spaces
NONE = "<none>"

_COLORS = {"True": "32", "False": "31", "Unknown": "33"}  # green, red, yellow


def use_color(stream: TextIO) -> bool:
    """Color for a terminal only, and never with NO_COLOR (no-color.org) or TERM=dumb."""
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def color_status(text: str, enabled: bool) -> str:
    """Color a condition status ("True", "False", "Unknown") for a terminal."""
    code = _COLORS.get(text)
    return f"\x1b[{code}m{text}\x1b[0m" if enabled and code else text


def one_line(text: str) -> str:
    """Messages may hold newlines; a table row must not."""
    return " ".join(str(text).split())


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    style: Callable[[int, str], str] | None = None,
) -> str:
    """Columns padded to their widest cell; `style(column, text)` may decorate a cell's text.

    Styling is applied after measuring, so escape codes do not disturb the alignment.
    """
    cells = [[one_line(c) for c in headers], *[[one_line(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for number, row in enumerate(cells):
        parts = []
        for column, text in enumerate(row):
            shown = style(column, text) if style and number > 0 else text
            last = column == len(row) - 1
            parts.append(shown if last else shown + " " * (widths[column] - len(text)))
        lines.append(COLUMN_GAP.join(parts).rstrip())
    return "\n".join(lines)


def format_time(moment: datetime | None) -> str:
    """RFC 3339 UTC, whole seconds, as the API writes times; "<none>" for None."""
    if moment is None:
        return NONE
    return times.format_time(moment)


def short_duration(delta: timedelta) -> str:
    """A duration as kubectl's AGE column shows it: 45s, 3m20s, 2h, 5d4h, 89d, 2y30d."""
    seconds = int(abs(delta).total_seconds())
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    years = days // 365
    return f"{years}y{days % 365}d" if days % 365 else f"{years}y"


def until(moment: datetime | None, now: datetime) -> str:
    """How long until `moment`: "89d", or "expired 3h ago" once it has passed."""
    if moment is None:
        return NONE
    if moment <= now:
        return f"expired {short_duration(now - moment)} ago"
    return short_duration(moment - now)


def print_json(document: Mapping[str, Any] | Sequence[Any], stream: TextIO = sys.stdout) -> None:
    """Indented JSON, keys in the order given, and a final newline."""
    json.dump(document, stream, indent=2, sort_keys=False)
    stream.write("\n")
