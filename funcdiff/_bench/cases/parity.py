"""Case ``parity``: wall time of the whole PyTorch parity catalog, per dtype.

``funcdiff`` is ``funcdiff.parity.run_catalog(dtypes=(dtype,), reference="torch")`` over
``funcdiff.parity.catalog()`` (values, VJPs, JVPs against live PyTorch); ``size`` is the
number of catalog cases timed: all of them at the full level, an even subset at ``--quick``.
One catalog run takes minutes on two cores, so it is timed once cold and once warm.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from typing import Any

from funcdiff._bench._context import Context, Settings
from funcdiff._bench._timing import Budget, measure

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
    import funcdiff.parity as parity

    params = inspect.signature(run_catalog).parameters
    # The whole catalog takes minutes per dtype: timed cold, then once warm.
    budget = Budget(repeats=1, min_repeats=1, repeat_s=0.0, total_s=0.0, warmup=0)
    everything = tuple(parity.catalog())
    chosen, note = everything, None
    k = ctx.settings.parity_subset
    if k is not None and k < len(everything):
        chosen = everything[:: max(1, len(everything) // k)][:k]
        level = ctx.settings.level
        note = f"subset: {len(chosen)} of {len(everything)} catalog cases (level {level!r})"
    for dtype in ctx.settings.parity_dtypes:
        kw: dict[str, Any] = {"dtypes": (dtype,)}
        if "reference" in params:
            kw["reference"] = "torch"

        def call(kw: dict[str, Any] = kw) -> Any:
            return run_catalog(chosen, **kw)

        reports: list[Any] = []
        t = measure(call, reports.append, budget)
        last = reports[-1]
        bad = None if bool(getattr(last, "ok", True)) else "the catalog reported failures"
        ctx.record(
            NAME,
            "funcdiff",
            len(chosen),
            t,
            dtype=dtype,
            note="; ".join(n for n in (note, bad) if n) or None,
        )
