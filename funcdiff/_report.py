"""Plain-text tables shared by every result record's ``__str__``.

One renderer for the whole package, so that ``GradCheckResult``, ``FitResult``,
``ParityResult`` and the CLI all print the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["fmt", "table"]


def fmt(value: Any, *, digits: int = 4) -> str:
    """Formats one cell: floats to ``digits`` decimals (scientific when tiny or huge)."""
    if value is None:
        return "-"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "NO"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if v != 0.0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.{max(digits - 1, 0)}e}"
        return f"{v:.{digits}f}".rstrip("0").rstrip(".") or "0"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        arr = np.asarray(value)
        if arr.ndim == 0:
            return fmt(arr.item(), digits=digits)
        flat = arr.ravel()
        cells = ", ".join(fmt(v.item(), digits=digits) for v in flat[:6])
        return f"[{cells}{', ...' if flat.size > 6 else ''}]"
    if isinstance(value, tuple | list):
        return "(" + ", ".join(fmt(v, digits=digits) for v in value) + ")"
    return str(value)


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
    digits: int = 4,
) -> str:
    """Renders rows as an aligned plain-text table.

    Args:
      headers: column names.
      rows: one sequence of cells per row; cells go through :func:`fmt`.
      title: an optional line printed above the table.
      digits: decimals for floats.

    Returns:
      The table as a string without a trailing newline.

    Examples:
      >>> print(table(["x", "y"], [[1, 0.5], [2, 0.25]]))
      x  y
      -  ----
      1  0.5
      2  0.25
    """
    cells = [[fmt(c, digits=digits) for c in row] for row in rows]
    for i, row in enumerate(cells):
        if len(row) != len(headers):
            raise ValueError(f"Expected {len(headers)} cells in row {i}, got {len(row)}.")
    widths = [max([len(h), *(len(r[j]) for r in cells)]) for j, h in enumerate(headers)]
    lines = [] if title is None else [title]
    lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )
    return "\n".join(lines)
