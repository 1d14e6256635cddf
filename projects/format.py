"""Formatting shared by the CLI and the UI."""
from __future__ import annotations


def human_duration(seconds: float | None) -> str:
    """'1 h 02 min', '3 min 05 s', '12 s', or '' when unknown."""
    if seconds is None:
        return ""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"
