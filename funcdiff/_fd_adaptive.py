r"""The ``adaptive``, ``richardson`` and ``complex`` schemes (traced inside ``_fd``'s core).

``adaptive``: central differences on a ladder of :data:`LADDER_LEVELS` (24) steps
:math:`h_k = h_0 2^{-k}` per coordinate (or direction), :math:`h_0 = \tfrac12\max(1, |x_i|)`,
all evaluated in the same vmapped call (48 evaluations per coordinate). A Richardson table on
the ladder, :math:`T^{(l)}_k = (4^l T^{(l-1)}_{k+1} - T^{(l-1)}_k)/(4^l - 1)`; every entry of
levels 2 and 3 (O(h⁶), O(h⁸)) is a candidate with the estimate
``max(|T_k - T^{(l-1)}_{k+1}|, |T_k - T_{k+1}|)`` plus a round-off bound (exact weights of the
combination), and the candidate with the smallest estimate wins, per coordinate and output.
The chosen estimate is then floored by the noise measured on the rungs below it. Rungs that
step across a pole or out of the domain give NaN or a large gap and lose; rungs lost in
rounding (``x + h == x``) are skipped, and so are windows where ``f(x+h) == f(x-h)`` bitwise
while other rungs see a change. With a ``domain``, one-sided ladders (Richardson in powers of
2, levels 2–4) join the candidates. numdifftools' idea, as one compiled program.

Where a window's central gaps :math:`|D_k - D_{k+1}|` grow (beyond round-off) as the step
shrinks, its steps exceed the scale of ``f`` (they straddle a pole) and its own gaps can agree
on a wrong value: its estimate is then its spread to every central difference on its rungs and
below, plus the ladder's last gap (:class:`Ladder` ``regime``).

``richardson``: the same selection on a short ladder (:data:`RICHARDSON`): 11 steps
:math:`h_0 4^{-k}` from the same :math:`h_0`, 22 evaluations per coordinate. It reaches
steps down to :math:`4.8\cdot10^{-7}\max(1, |x_i|)`: a function whose scale is not well above
that is not differentiated accurately (1/x at x = 1e-3: 1e-14, at 1e-4: 7e-7, at 1e-5: 6e-2,
reported as such; 9 steps, 18 evaluations, gave 6e-6 at 1e-3 and a wrong value at 1e-4).
Functions on still smaller scales are ``adaptive``'s ground.

``complex``: :math:`\operatorname{Im} f(x + ihe_i)/h` with :math:`h = 10^{-20}\max(1, |x_i|)`:
no subtraction, so machine precision for real-analytic ``f``. Applies only when ``f``
uses holomorphic operations on the perturbed input; :func:`holomorphic_problem` walks the
jaxpr and names the first operation that is not (``abs``, ``max``, comparisons, ``real``, a
cast to a real dtype, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ADAPTIVE",
    "LADDERS",
    "LADDER_LEVELS",
    "RICHARDSON",
    "Ladder",
    "adaptive",
    "complex_step",
    "holomorphic_problem",
]

LADDER_LEVELS = 24
_RATIO = 2.0
LEVELS = (2, 3)  # central Richardson levels offered as candidates: O(h^6) and O(h^8)
ONE_SIDED_LEVELS = (2, 3, 4)  # one-sided (near a domain bound): O(h^3) to O(h^5)


class Ladder(NamedTuple):
    """A geometric ladder of steps ``top * ratio**-k``, ``k < rungs``, and its candidates."""

    rungs: int
    ratio: float
    levels: tuple[int, ...]
    regime: bool = False  # a window whose gaps grow is scored by the rungs below it


ADAPTIVE = Ladder(LADDER_LEVELS, _RATIO, LEVELS, regime=True)
RICHARDSON = Ladder(11, 4.0, LEVELS, regime=True)
LADDERS = {"adaptive": ADAPTIVE, "richardson": RICHARDSON}


def _weight(level: int, power: int = 2, ratio: float = _RATIO) -> float:
    """Round-off amplification of a level-``level`` value, in units of eps * max|f| / h_k.

    The value is ``sum_j w_j D_{k+j}`` and ``D`` at step ``h_k r**-j`` carries round-off
    ``eps max|f| r**j / h_k``; returns ``sum_j |w_j| r**j``.
    """
    w = [1.0]
    for lev in range(1, level + 1):
        q = ratio ** (power * lev)
        w = [(q * b - a) / (q - 1.0) for a, b in zip([*w, 0.0], [0.0, *w], strict=True)]
    return sum(abs(c) * ratio**j for j, c in enumerate(w))


COMPLEX_STEP = 1e-20

# Primitives that are not holomorphic (or not even defined) on a complex input.
_NOT_HOLOMORPHIC = frozenset(
    {
        "abs",
        "sign",
        "max",
        "min",
        "reduce_max",
        "reduce_min",
        "argmax",
        "argmin",
        "cummax",
        "cummin",
        "lt",
        "le",
        "gt",
        "ge",
        "eq",
        "ne",
        "real",
        "imag",
        "conj",
        "floor",
        "ceil",
        "round",
        "clamp",
        "sort",
        "rem",
        "is_finite",
        "nextafter",
        "reduce_precision",
        "stop_gradient",
    }
)


def _regime(
    d: jax.Array,
    fabs: jax.Array,
    xscale: jax.Array,
    hs: jax.Array,
    cand: jax.Array,
    total: jax.Array,
    level: int,
    unit: float,
) -> jax.Array:
    """``total`` where the window is in the asymptotic regime, else the lower rungs' spread.

    In the asymptotic regime the gaps ``g_j = |D_j - D_{j+1}|`` of the central differences
    shrink by ``ratio**2`` per rung. A gap that grows, beyond round-off, inside a window says
    its steps exceed the scale of f (they straddle a pole: 1/x at x = 1e-5 with steps above
    1e-5, where ``D_j ~ -1/h_j^2``), and the window's own gaps can then agree on a wrong value.
    Such a candidate's error is taken as its largest distance to the central differences on
    its rungs and below (the smallest steps are the ones nearest the derivative there), plus
    the last gap of the ladder (the smallest step's own truncation).
    """
    n = cand.shape[1]
    gap = jnp.abs(d[:, 1:] - d[:, :-1])
    noise = unit * jnp.maximum(fabs, jnp.abs(d) * xscale[:, None, None]) / hs[:, :, None]
    grow = (gap[:, 1:] > gap[:, :-1]) & (gap[:, 1:] > 2.0 * (noise[:, 1:-1] + noise[:, 2:]))
    flagged = grow[:, :n]
    for j in range(1, level):
        flagged = flagged | grow[:, j : j + n]
    # max over rungs j >= k of |D_j - cand_k|, from the running max and min of D below k
    finite = jnp.isfinite(d)
    high = jax.lax.cummax(jnp.where(finite, d, -jnp.inf), axis=1, reverse=True)[:, :n]
    low = -jax.lax.cummax(jnp.where(finite, -d, -jnp.inf), axis=1, reverse=True)[:, :n]
    spread = jnp.maximum(high - cand, cand - low)
    # plus the last gap: the smallest step's own truncation (at most that gap, asymptotically)
    last = gap[:, -1:]
    spread = spread + jnp.where(jnp.isfinite(last), last, 0.0)
    return jnp.where(flagged, jnp.maximum(total, spread), total)


def _order(
    d: jax.Array, cand: jax.Array, total: jax.Array, level: int, ratio: float, power: int
) -> jax.Array:
    """``total``, or a tail bound where a one-sided window's gaps shrink at the wrong rate.

    A one-sided difference has an error series in powers of h, so its gaps
    ``g_j = |D_j - D_{j+1}|`` shrink by ``ratio**power`` a rung. At an endpoint where f is not
    smooth (``x**1.5`` at 0: ``D(h) = h**0.5``) they shrink by another factor, the
    extrapolation assumes the wrong powers, and its gaps can agree on a wrong value. A window
    whose gap ratios stray from ``ratio**power`` by more than 1.3x is scored by the tail of
    the sequence instead: the derivative is ``D_b`` plus the remaining gaps, at most
    ``g_b / (1 - rho)`` with ``rho`` the observed ratio at the window's last rung ``b``.
    """
    n = cand.shape[1]
    gap = jnp.abs(d[:, 1:] - d[:, :-1])  # (m, K-1, p)
    with_gap = (gap[:, 1:] > 0) | (gap[:, :-1] > 0)
    rho = gap[:, 1:] / jnp.where(gap[:, :-1] > 0, gap[:, :-1], jnp.inf)  # (m, K-2, p)
    expect = ratio ** -float(power)
    off = with_gap & ~((rho < 1.3 * expect) & (rho > expect / 1.3))
    flagged = off[:, :n]
    for j in range(1, level - 1):
        flagged = flagged | off[:, j : j + n]
    last = d[:, level : level + n]  # D_b, b = k + level
    g_b = gap[:, level : level + n]
    rho_b = rho[:, level - 1 : level - 1 + n]
    tail = jnp.where(g_b == 0, 0.0, jnp.where(rho_b < 1, g_b / (1 - rho_b), jnp.inf))
    bound = jnp.abs(cand - last) + tail
    bound = jnp.where(jnp.isfinite(bound), bound, jnp.inf)
    return jnp.where(flagged, jnp.maximum(total, bound), total)


def ladder_steps(
    x: jax.Array, top: jax.Array, coords: jax.Array | None, ladder: Ladder = ADAPTIVE
) -> jax.Array:
    """(m, K) steps ``top_i * ratio**-k``, rounded so that ``x_i + h`` is exact when ``coords``."""
    k = jnp.arange(ladder.rungs, dtype=x.dtype)
    h = top[:, None] * ladder.ratio ** (-k)[None, :]
    if coords is None:
        return h
    xi = x[coords][:, None]
    return (xi + h) - xi


def adaptive(
    values: Callable[[jax.Array, jax.Array], jax.Array],
    f0: jax.Array,
    h: jax.Array,
    eps: float,
    xscale: jax.Array,
    ulps: float,
    *,
    room: tuple[jax.Array, jax.Array] | None = None,
    ladder: Ladder = ADAPTIVE,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Best extrapolated derivative per (index, output) over the ladder.

    Args:
      values: maps flat steps (m*K,) and offsets (+1 or -1 each) to values (m*K, p).
      f0: f(x), shape (p,).
      h: (m, K) ladder of steps (:func:`ladder_steps` of ``ladder``).
      eps: machine epsilon of the output.
      xscale: (m,) ``|x_i|`` (round-off of f at x is at least ``|f'| |x_i| eps``).
      ulps: round-off of one function value, in ulps.
      room: ``(up, down)``, (m,) distances from x to the domain's upper and lower bounds.
        Rungs that would leave the domain are not evaluated there; one-sided (forward and
        backward) ladders are offered as candidates too.
      ladder: the ratio of the steps and the central levels offered as candidates.

    Returns:
      ``(value, error, step)``: (m, p), (m, p), (m,) (the largest step of the chosen
      candidate, output 0).
    """
    m, k = h.shape
    ok = h > 0
    hs = jnp.where(ok, h, 1.0)
    ok_p = ok if room is None else ok & (hs < room[0][:, None])
    ok_m = ok if room is None else ok & (hs < room[1][:, None])
    # a side that would leave the domain is evaluated at x (step 0) and masked
    vp = values(jnp.where(ok_p, hs, 0.0).reshape(-1), jnp.ones(m * k, hs.dtype))
    vm = values(jnp.where(ok_m, hs, 0.0).reshape(-1), -jnp.ones(m * k, hs.dtype))
    vp, vm = vp.reshape(m, k, -1), vm.reshape(m, k, -1)
    both = (ok_p & ok_m)[:, :, None]
    central = jnp.where(both, (vp - vm) / (2.0 * hs[:, :, None]), jnp.nan)
    fabs_p = jnp.maximum(jnp.abs(vp), jnp.abs(f0))
    fabs_m = jnp.maximum(jnp.abs(vm), jnp.abs(f0))
    ladders: list[tuple[jax.Array, int, tuple[int, ...], jax.Array, float]] = [
        (central, 2, ladder.levels, jnp.maximum(fabs_p, fabs_m), 1.0)
    ]
    if room is not None:
        fwd = jnp.where(ok_p[:, :, None], (vp - f0) / hs[:, :, None], jnp.nan)
        bwd = jnp.where(ok_m[:, :, None], (f0 - vm) / hs[:, :, None], jnp.nan)
        ladders += [
            (fwd, 1, ONE_SIDED_LEVELS, fabs_p, 2.0),
            (bwd, 1, ONE_SIDED_LEVELS, fabs_m, 2.0),
        ]
    cands, totals, tops, bottoms, weights = [], [], [], [], []
    for d, power, levels, fabs, base in ladders:
        # f(x + h) == f(x - h) bitwise on rungs where another rung sees a change: the
        # derivative is below what f's rounding resolves there (tanh(100 x) saturated inside
        # a sum that cancels to ~0, so |f| says nothing about the round-off); such windows
        # are not candidates
        zero = d == 0.0
        moved = jnp.any((d != 0.0) & jnp.isfinite(d), axis=1, keepdims=True)
        table = [d]
        for level in range(1, max(levels) + 1):
            q = ladder.ratio ** (power * level)
            table.append((q * table[-1][:, 1:] - table[-1][:, :-1]) / (q - 1.0))
        for level in levels:
            t = table[level]
            n = t.shape[1] - 1  # rungs with a next rung: both gaps exist
            cand = t[:, :n]
            trunc = jnp.maximum(
                jnp.abs(cand - table[level - 1][:, 1 : n + 1]), jnp.abs(cand - t[:, 1 : n + 1])
            )
            fmax = fabs[:, :n]
            for j in range(1, level + 1):
                fmax = jnp.maximum(fmax, fabs[:, j : j + n])
            fmax = jnp.maximum(fmax, jnp.abs(cand) * xscale[:, None, None])
            w = _weight(level, power, ladder.ratio)
            roundoff = ulps * eps * base * w * fmax / hs[:, :n, None]
            flat = zero[:, :n]
            for j in range(1, level + 2):
                flat = flat & zero[:, j : j + n]
            total = trunc + roundoff
            if power == 2 and ladder.regime:
                total = _regime(d, fabs, xscale, hs, cand, total, level, eps * ulps)
            elif power == 1:
                total = _order(d, cand, total, level, ladder.ratio, power)
            cands.append(cand)
            totals.append(jnp.where(flat & moved, jnp.inf, total))
            tops.append(hs[:, :n])
            bottoms.append(np.arange(n) + level + 1)
            weights.append(np.full(n, base * w))
    cand = jnp.concatenate(cands, axis=1)
    total = jnp.concatenate(totals, axis=1)
    top = jnp.concatenate(tops, axis=1)
    total = jnp.where(jnp.isfinite(total) & jnp.isfinite(cand), total, jnp.inf)
    best = jnp.argmin(total, axis=1)  # (m, p)
    value = jnp.take_along_axis(cand, best[:, None], axis=1)[:, 0]
    error = jnp.take_along_axis(total, best[:, None], axis=1)[:, 0]
    value = jnp.where(jnp.isfinite(error), value, jnp.nan)
    step = jnp.take_along_axis(top, best[:, :1], axis=1)[:, 0]
    # Measured noise: central differences on rungs below the chosen window are dominated by
    # f's rounding, |D_k - value| h_k ~ noise; the bound above uses max|f|, which says nothing
    # when f is a sum that cancels to ~0. The error is at least 2 W noise / h of the choice.
    bottom = jnp.asarray(np.concatenate(bottoms))[best]  # (m, p)
    weight = jnp.asarray(np.concatenate(weights), dtype=hs.dtype)[best]
    below = jnp.arange(k)[None, :, None] > bottom[:, None, :]  # (m, K, p)
    dev = jnp.abs(central - value[:, None, :]) * hs[:, :, None]
    noise = jnp.max(jnp.where(below & jnp.isfinite(dev), dev, 0.0), axis=1)
    error = jnp.maximum(error, 2.0 * weight * noise / step[:, None])
    return value, error, step


def complex_step(
    f_complex: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    h: jax.Array,
    f0: jax.Array,
    eps: float,
    ulps: float,
    *,
    dirs: jax.Array | None = None,
    map_rows: Callable[[Callable[[jax.Array], jax.Array], int, int], jax.Array],
) -> tuple[jax.Array, jax.Array]:
    """``Im f(x + i h e_i) / h`` for every coordinate (or row of ``dirs``): value, error."""
    n = x.shape[0]
    cdtype = jnp.result_type(x.dtype, jnp.complex64)
    xc = x.astype(cdtype)
    m = n if dirs is None else dirs.shape[0]
    lanes = jnp.arange(n)

    def one(i: jax.Array) -> jax.Array:
        if dirs is None:
            pert = jnp.where(lanes == i, 1j * h[i], 0.0).astype(cdtype)
        else:
            pert = (1j * h[i] * dirs[i]).astype(cdtype)
        return jnp.imag(f_complex(xc + pert)) / h[i]

    value = map_rows(one, m, 2 * n)  # complex: two floats per element
    scale = jnp.maximum(1.0, jnp.abs(x)) if dirs is None else jnp.ones((m,), x.dtype)
    error = ulps * eps * (jnp.abs(value) + jnp.abs(f0)[None, :] / scale[:, None])
    return value, error


def holomorphic_problem(f_complex: Callable[[jax.Array], jax.Array], xc: Any) -> str | None:
    """The first non-holomorphic operation ``f_complex`` applies to its input, or None.

    Walks the jaxpr (and nested jaxprs: jit, custom_jvp, cond, scan, while) following which
    values depend on the input; an operation from the deny list, or a cast of a complex value
    to a real dtype, on such a value is reported as ``"abs"``, ``"convert to float64"``, ...
    """
    closed = jax.make_jaxpr(f_complex)(xc)
    out_dtypes = [v.aval.dtype for v in closed.jaxpr.outvars]
    problem = _walk(closed.jaxpr, [True] * len(closed.jaxpr.invars))
    if problem is not None:
        return problem
    for dt in out_dtypes:
        if not jnp.issubdtype(dt, jnp.complexfloating):
            return f"a real ({dt}) output"
    return None


def _sub_jaxprs(params: dict[str, Any]) -> list[Any]:
    out = []
    for value in params.values():
        for item in value if isinstance(value, list | tuple) else (value,):
            jaxpr = getattr(item, "jaxpr", item)
            if hasattr(jaxpr, "eqns") and hasattr(jaxpr, "invars"):
                out.append(jaxpr)
    return out


def _walk(jaxpr: Any, tainted_in: list[bool]) -> str | None:
    tainted = {v for v, t in zip(jaxpr.invars, tainted_in, strict=False) if t}
    for eqn in jaxpr.eqns:
        hit = any(_is_var(v) and v in tainted for v in eqn.invars)
        if not hit:
            continue
        name = eqn.primitive.name
        if name in _NOT_HOLOMORPHIC:
            return name
        if name == "convert_element_type":
            src = eqn.invars[0].aval.dtype
            dst = eqn.params.get("new_dtype")
            if jnp.issubdtype(src, jnp.complexfloating) and not jnp.issubdtype(
                dst, jnp.complexfloating
            ):
                return f"convert to {dst}"
        for sub in _sub_jaxprs(eqn.params):
            problem = _walk(sub, [True] * len(sub.invars))
            if problem is not None:
                return problem
        tainted.update(eqn.outvars)
    return None


def _is_var(v: Any) -> bool:
    """A jaxpr variable (literals carry a ``val`` and are never tainted)."""
    return not hasattr(v, "val")
