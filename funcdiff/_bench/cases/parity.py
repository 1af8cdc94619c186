"""Case ``parity``: wall time of the whole PyTorch parity catalog, per dtype.

``funcdiff`` is ``funcdiff.parity.run_catalog(dtypes=(dtype,), reference="torch")`` over
``funcdiff.parity.catalog()`` (values, VJPs, JVPs against live PyTorch); ``size`` is the
number of catalog cases. One catalog run is long, so few repeats.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
from typing import Any

from funcdiff._bench._context import Context, Settings
from funcdiff._bench._timing import measure

NAME = "parity"


def count(settings: Settings) -> int:
    return len(settings.parity_dtypes)


def load() -> tuple[Any, str | None]:
    """``(run_catalog, None)``, or ``(None, what is missing)``."""
    try:
        mod = importlib.import_module("funcdiff.parity")
    except ImportError as e:
        return None, f"funcdiff.parity does not import: {e}"
    missing = [name for name in ("run_catalog", "catalog") if not hasattr(mod, name)]
    if missing == ["catalog"] and importlib.util.find_spec("funcdiff.parity._catalog"):
        missing = []  # the catalog module exists; run_catalog loads it itself
    if missing:
        names = " and ".join(f"funcdiff.parity.{m}" for m in missing)
        return None, f"{names} {'is' if len(missing) == 1 else 'are'} not available yet"
    return mod.run_catalog, None


def run(ctx: Context) -> None:
    run_catalog, missing = load()
    steps = count(ctx.settings)
    if run_catalog is None:
        ctx.skip(NAME, "funcdiff", str(missing), steps=steps)
        return
    if ctx.torch is None:
        ctx.skip(NAME, "funcdiff", f"the parity catalog needs torch: {ctx.torch_note}", steps=steps)
        return
    params = inspect.signature(run_catalog).parameters
    budget = dataclasses.replace(ctx.settings.slow_budget, min_repeats=1, warmup=0)
    for dtype in ctx.settings.parity_dtypes:
        kw: dict[str, Any] = {"dtypes": (dtype,)}
        if "reference" in params:
            kw["reference"] = "torch"
        reports: list[Any] = []

        def call(kw: dict[str, Any] = kw) -> Any:
            return run_catalog(**kw)

        t = measure(call, reports.append, budget)
        last = reports[-1]
        size = len(getattr(last, "outcomes", ())) or 1
        note = None if bool(getattr(last, "ok", True)) else "the catalog reported failures"
        ctx.record(NAME, "funcdiff", size, t, dtype=dtype, note=note)
