"""Case ``parity``: wall time of the whole PyTorch parity catalog, per dtype.

``funcdiff`` is ``funcdiff.parity.run_catalog`` over ``funcdiff.parity.catalog()``; ``size``
is the number of catalog entries. Needs torch (the catalog compares against it).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any

from funcdiff._bench._context import Context, Settings
from funcdiff._bench._timing import measure

NAME = "parity"


def count(settings: Settings) -> int:
    return len(settings.parity_dtypes)


def load() -> tuple[Any, Any] | None:
    """``(run_catalog, catalog)`` from ``funcdiff.parity``, or None while they have not landed."""
    try:
        mod = importlib.import_module("funcdiff.parity")
        return mod.run_catalog, mod.catalog
    except (ImportError, AttributeError):
        return None


def run(ctx: Context) -> None:
    api = load()
    if api is None:
        missing = "funcdiff.parity.run_catalog and funcdiff.parity.catalog are not available yet"
        ctx.skip(NAME, "funcdiff", missing, steps=count(ctx.settings))
        return
    if ctx.torch is None:
        ctx.skip(
            NAME,
            "funcdiff",
            f"the parity catalog needs torch: {ctx.torch_note}",
            steps=count(ctx.settings),
        )
        return
    run_catalog, catalog = api
    size = len(catalog())
    accepts_dtype = "dtype" in inspect.signature(run_catalog).parameters
    for dtype in ctx.settings.parity_dtypes:
        if not accepts_dtype and dtype != ctx.settings.parity_dtypes[0]:
            ctx.step("skip")
            continue
        kw = {"dtype": dtype} if accepts_dtype else {}
        t = measure(functools.partial(run_catalog, **kw), _identity, ctx.settings.slow_budget)
        ctx.record(NAME, "funcdiff", size, t, dtype=dtype if accepts_dtype else None)


def _identity(result: Any) -> Any:
    return result
