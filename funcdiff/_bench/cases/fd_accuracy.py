"""Case ``fd-accuracy``: finite-difference gradients against analytic ones, and their speed.

The suite is the one issue 13 sets, float64: ``exp``, ``sin``, ``1/x`` and ``log`` near 0,
``x**1.5``, ``x**99``, ``tanh(100x)`` (each at a few points, one scalar problem per point),
Rosenbrock, Powell's badly scaled function, and numdifftools' chained
``sin(x_i - x_{i+1}) + x_{i+1} exp(x_i)`` at d = 100 and 1000. Per function and method
(:func:`accuracy_rows`): the largest elementwise relative error against ``jax.grad`` (exact to
rounding for these), the function evaluations per gradient, and whether funcdiff's error
estimate bounded the true error. The timed rows are the warm time per gradient of the chained
function at d = 10, 100, 1000, each with the method's worst suite error in its note.
Baselines: ``numdifftools.Gradient`` and ``scipy.differentiate.jacobian`` (both optional: their
rows are skipped when missing; ``pip install 'funcdiff[dev]'``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcdiff._bench._context import Context, Settings
from funcdiff._bench._timing import measure
from funcdiff._config import scoped
from funcdiff._fd_adaptive import ADAPTIVE, RICHARDSON

NAME = "fd-accuracy"
SCHEMES = ("central", "richardson", "adaptive", "complex")


def _chained(x: Any, xp: Any) -> Any:
    return xp.sum(xp.sin(x[:-1] - x[1:]) + x[1:] * xp.exp(x[:-1]), axis=0)


def _rosen(x: Any, xp: Any) -> Any:
    return xp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2, axis=0)


def _powell(x: Any, xp: Any) -> Any:
    return (1e4 * x[0] * x[1] - 1.0) ** 2 + (xp.exp(-x[0]) + xp.exp(-x[1]) - 1.0001) ** 2


def _sep(g: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    return lambda x, xp: xp.sum(g(x, xp), axis=0)


# name -> (f(x, xp) with xp = jnp or np, vectorised over trailing axes; point)
SUITE: dict[str, tuple[Callable[[Any, Any], Any], list[float] | int]] = {
    "exp": (_sep(lambda x, xp: xp.exp(x)), [-1.0, 0.0, 1.0, 5.0]),
    "sin": (_sep(lambda x, xp: xp.sin(x)), [0.1, 1.0, 3.0, 10.0]),
    "1/x": (_sep(lambda x, xp: 1.0 / x), [0.01, 0.1, 1.0, 10.0]),
    "log": (_sep(lambda x, xp: xp.log(x)), [0.01, 0.1, 1.0, 10.0]),
    "x**1.5": (_sep(lambda x, xp: x**1.5), [0.01, 0.5, 2.0, 10.0]),
    "x**99": (_sep(lambda x, xp: x**99), [0.9, 1.0, 1.01]),
    "tanh(100x)": (_sep(lambda x, xp: xp.tanh(100.0 * x)), [0.0, 0.005, 0.01]),
    "rosenbrock": (_rosen, [-1.2, 1.0]),
    "powell": (_powell, [0.0, 1.0]),
    "chained-100": (_chained, 100),
    "chained-1000": (_chained, 1000),
}


def _separable(spec: list[float] | int, f: Any) -> bool:
    return isinstance(spec, list) and f not in (_rosen, _powell)


def point(spec: list[float] | int) -> np.ndarray:
    if isinstance(spec, int):
        return np.linspace(-1.0, 1.0, spec)
    return np.asarray(spec, dtype=np.float64)


def count(settings: Settings) -> int:
    return len(_dims(settings)) * (len(SCHEMES) + 2)


def _dims(settings: Settings) -> tuple[int, ...]:
    return (4,) if settings.level == "tiny" else (10, 100, 1000)


def baselines() -> dict[str, Any]:
    """The installed baselines: ``{"numdifftools": module, "scipy-differentiate": module}``."""
    found = {}
    for impl, mod in (
        ("numdifftools", "numdifftools"),
        ("scipy-differentiate", "scipy.differentiate"),
    ):
        with contextlib.suppress(ImportError):
            found[impl] = importlib.import_module(mod)
    return found


def gradient_fn(impl: str, mod: Any, f: Callable[[Any, Any], Any]) -> Callable[[np.ndarray], Any]:
    """A function x -> (gradient, evaluations) for a baseline."""
    if impl == "numdifftools":

        def nd_grad(x: np.ndarray) -> tuple[np.ndarray, int]:
            calls = [0]

            def fn(v: np.ndarray) -> Any:
                calls[0] += 1
                return f(v, np)

            return np.asarray(mod.Gradient(fn)(x)).reshape(x.shape), calls[0]

        return nd_grad

    def sp_grad(x: np.ndarray) -> tuple[np.ndarray, int]:
        res = mod.jacobian(lambda v: f(v, np), x)
        return np.asarray(res.df), int(np.max(res.nfev)) * x.size

    return sp_grad


def funcdiff_fn(scheme: str, f: Callable[[Any, Any], Any]) -> Callable[[jax.Array], Any]:
    from funcdiff import fd_grad

    fun = jax.jit(lambda v: f(v, jnp))
    return functools.partial(fd_grad, fun, scheme=scheme, return_error=True)


# evaluations per coordinate with ``return_error=True`` (plus one at x; a ladder evaluates
# both sides of every rung)
EVALS = {
    "central": 4,  # h and h/2: the second pair is the truncation estimate
    "richardson": 2 * RICHARDSON.rungs,
    "adaptive": 2 * ADAPTIVE.rungs,
    "complex": 1,
}


def rel_error(g: np.ndarray, exact: np.ndarray) -> float:
    return float(np.max(np.abs(g - exact) / np.maximum(np.abs(exact), 1e-300)))


def accuracy_rows(suite: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per function and method: max relative error, evaluations, estimate bound (funcdiff).

    ``suite``: a part of :data:`SUITE` (default: all of it).
    """
    rows = []
    base = baselines()
    with scoped(x64=True):
        for name, (f, spec) in (SUITE if suite is None else suite).items():
            # a separable function is measured one point at a time (as f: R -> R)
            if isinstance(spec, list) and _separable(spec, f):
                xs = [np.array([p]) for p in spec]
            else:
                xs = [point(spec)]
            exacts = [np.asarray(jax.grad(lambda v, f=f: f(v, jnp))(jnp.asarray(x))) for x in xs]
            for scheme in SCHEMES:
                fn = funcdiff_fn(scheme, f)
                errs, bound = [], True
                for x, exact in zip(xs, exacts, strict=True):
                    g, err = (np.asarray(a) for a in fn(jnp.asarray(x)))
                    errs.append(rel_error(g, exact))
                    bound &= bool(np.all(np.abs(g - exact) <= err))
                rows.append(
                    {
                        "function": name,
                        "impl": f"funcdiff[{scheme}]",
                        "rel_error": max(errs),
                        "evals": EVALS[scheme] * xs[0].size + 1,
                        "bounded": bound,
                    }
                )
            for impl, mod in base.items():
                errs, n = [], 0
                for x, exact in zip(xs, exacts, strict=True):
                    with np.errstate(all="ignore"):
                        g, n = gradient_fn(impl, mod, f)(x.copy())
                    errs.append(rel_error(g, exact))
                rows.append({"function": name, "impl": impl, "rel_error": max(errs), "evals": n})
    return rows


def run(ctx: Context) -> None:
    base = baselines()
    for impl in ("numdifftools", "scipy-differentiate"):
        if impl not in base:
            ctx.skip(NAME, impl, f"{impl} is not installed (pip install 'funcdiff[dev]')")
    tiny = ctx.settings.level == "tiny"
    with scoped(x64=True, device=ctx.device):
        ACCURACY.clear()  # accuracy over the suite (a table and plot of their own; worst in notes)
        ACCURACY.extend(accuracy_rows({"exp": SUITE["exp"]} if tiny else None))
        for d in _dims(ctx.settings):
            x_np = point(d)
            x = jax.device_put(jnp.asarray(x_np), ctx.device)
            for scheme in SCHEMES:
                fn = funcdiff_fn(scheme, _chained)
                t = measure(functools.partial(fn, x), jax.block_until_ready, ctx.settings.budget)
                ctx.record(NAME, "funcdiff", d, t, mode=scheme, dtype="float64", note=_acc(scheme))
            for impl, mod in base.items():
                fn_b = gradient_fn(impl, mod, _chained)
                t = measure(functools.partial(fn_b, x_np), lambda r: r, ctx.settings.slow_budget)
                ctx.record(NAME, impl, d, t, dtype="float64", note=_acc(impl))


ACCURACY: list[dict[str, Any]] = []


def _acc(impl: str) -> str | None:
    """Worst relative error of ``impl`` over the suite (from this run), as a note."""
    label = impl if impl in ("numdifftools", "scipy-differentiate") else f"funcdiff[{impl}]"
    rows = [r for r in ACCURACY if r["impl"] == label]
    if not rows:
        return None
    worst = max(rows, key=lambda r: r["rel_error"] if np.isfinite(r["rel_error"]) else np.inf)
    return f"worst suite rel error {worst['rel_error']:.2e} ({worst['function']})"


IMPLS = (*(f"funcdiff[{s}]" for s in SCHEMES), "numdifftools", "scipy-differentiate")


def _present(rows: list[dict[str, Any]]) -> list[str]:
    return [i for i in IMPLS if any(r["impl"] == i for r in rows)]


def accuracy_markdown(rows: list[dict[str, Any]]) -> str:
    """The accuracy table of ``results.md``: max relative error (evaluations) per function.

    A funcdiff cell whose error estimate did not bound the true error is marked ``(!)``; a
    baseline that returned NaN (stepped out of the domain) shows ``nan``.
    """
    impls = _present(rows)
    lines = [
        "| function | " + " | ".join(impls) + " |",
        "|---" * (len(impls) + 1) + "|",
    ]
    for name in dict.fromkeys(r["function"] for r in rows):
        cells = []
        for impl in impls:
            r = next((r for r in rows if r["function"] == name and r["impl"] == impl), None)
            if r is None:
                cells.append("")
                continue
            flag = " (!)" if r.get("bounded") is False else ""
            cells.append(f"{r['rel_error']:.1e}{flag} ({r['evals']})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_accuracy(fig: Any, rows: list[dict[str, Any]], records: list[Any]) -> None:
    """Two panels on ``fig``: warm time per gradient against d, and error per function."""
    colors = {
        "funcdiff[central]": "tab:cyan",
        "funcdiff[richardson]": "tab:blue",
        "funcdiff[adaptive]": "navy",
        "funcdiff[complex]": "tab:green",
        "numdifftools": "tab:red",
        "scipy-differentiate": "tab:orange",
    }
    left, right = fig.subplots(1, 2, width_ratios=(1, 2.2))
    for impl in IMPLS:
        pts = sorted((r.size, r.median_s) for r in records if r.case == NAME and r.label == impl)
        if pts:
            left.plot(*zip(*pts, strict=True), marker="o", label=impl, color=colors[impl])
    left.set(xscale="log", yscale="log", xlabel="d", ylabel="seconds per gradient (median)")
    left.set_title("chained sin(x_i - x_i+1) + x_i+1 exp(x_i)", fontsize=9)
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7)
    impls = _present(rows)
    names = list(dict.fromkeys(r["function"] for r in rows))
    width = 0.8 / max(1, len(impls))
    for j, impl in enumerate(impls):
        xs, ys = [], []
        for k, name in enumerate(names):
            r = next((r for r in rows if r["function"] == name and r["impl"] == impl), None)
            if r is not None and np.isfinite(r["rel_error"]):
                xs.append(k + (j - (len(impls) - 1) / 2) * width)
                ys.append(max(r["rel_error"], 1e-17))  # an exact 0 drawn at 1e-17
        right.bar(xs, ys, width=width, label=impl, color=colors[impl])
    right.set_yscale("log")
    right.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
    right.set_ylabel("max relative error (float64)")
    right.set_title("accuracy per function (no bar: NaN, the method left the domain)", fontsize=9)
    right.grid(True, axis="y", which="both", alpha=0.3)
