"""Key findings: what a result says, as numbers with a sentence each, computed from the result.

Every analysis result has a ``findings()`` method returning a list of :class:`Finding`.  Reports show them at
the top of each page and in the index; the sentences are made from the numbers, never written in advance,
so a sentence cannot contradict the result it stands beside.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional

__all__ = ["Finding", "fmt", "pct", "as_records"]


@dataclasses.dataclass
class Finding:
    """One key number: a stable ``key``, its ``value`` (a number, a string or a small dict), and ``text``, a
    sentence stating it.  ``weight`` orders findings for a short summary (higher first)."""

    key: str
    value: Any
    text: str
    weight: int = 1

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def fmt(x: Any, digits: int = 3) -> str:
    """A number with ``digits`` significant digits (integers as they are; thousands written out with
    separators, 1e6 and above in scientific notation; NaN as "n/a")."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return "n/a" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if v == 0:
        return "0"
    rounded = float(f"{v:.{digits}g}")
    if 10 ** digits <= abs(rounded) < 1e6:  # thousands: rounded to the digits, written out (1,070 not 1.07e+03)
        return f"{rounded:,.0f}"
    if abs(v) >= 10 ** digits or abs(v) < 10 ** -(digits + 1):
        return f"{v:.{max(digits - 1, 0)}e}"
    return f"{v:.{digits}g}"


def pct(x: Any, digits: int = 0) -> str:
    """A fraction as a percentage."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "n/a" if not math.isfinite(v) else f"{100 * v:.{digits}f}%"


def as_records(findings: List[Finding], limit: Optional[int] = None) -> List[Dict[str, Any]]:
    """The findings as plain dicts, heaviest first (for a summary of ``limit`` entries)."""
    ordered = sorted(findings, key=lambda f: -f.weight)
    return [f.to_dict() for f in (ordered[:limit] if limit else ordered)]
