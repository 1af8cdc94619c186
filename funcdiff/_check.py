r"""Gradient checking: autodiff against finite differences, with tolerances from the FD error.

``check_grad`` compares the autodiff gradient (``jax.grad(fun)``, or a ``grad`` callable such
as a hand-derived formula) with finite differences.

* ``mode="full"`` checks every element. One jitted call evaluates the autodiff gradient and
  the central differences :math:`f(x \pm h_i e_i)` of all elements. Elements outside the
  first tolerance are re-measured (one more jitted call, only on those elements) with
  Richardson extrapolation over :math:`h, h/2, h/4` and the adaptive ladder of
  :mod:`funcdiff._fd_adaptive`; the smaller error estimate decides, floored by their gap
  (all of it where they disagree beyond both estimates; up to the ladder's estimate where
  they agree, since Richardson's round-off bound from :math:`|f|` can be too small); the same
  call compares one-sided differences at :math:`h` and :math:`h/4` to tell a kink (their gap
  does not shrink with the step) from a wrong gradient.
* ``mode="directional"`` checks ``num_directions`` random directions :math:`u_j`: the JVP
  (forward mode, ``jax.jvp``) and the VJP (reverse mode, :math:`\langle\nabla f, u_j\rangle`)
  against Richardson directional differences, and the transpose identity
  :math:`\langle \nabla f, u\rangle = J u` between them, each scaled by the size of the
  derivative (:math:`\max(|D_{fd}|, \|\nabla f\|\|u\|/\sqrt{n})`), not by the size of the array.

Default tolerance, per element: ``safety * fd_error + rtol * scale + atol`` with ``rtol`` 1e-4
(float32) or 1e-8 (float64) and ``atol`` a round-off floor; explicit ``rtol``/``atol`` replace
the dtype defaults (the FD error estimate is always added).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcdiff import _fd
from funcdiff._config import one_shot_jit
from funcdiff._fd_adaptive import adaptive, ladder_steps
from funcdiff._report import fmt, table
from funcdiff._validation import (
    UserFunctionError,
    as_prng_key,
    call_user,
    check_callable,
    check_choice,
    check_int,
    check_optional_callable,
    check_real,
    first_line,
)

__all__ = ["MODES", "Element", "GradCheckResult", "LeafRow", "check_grad"]

MODES = ("full", "directional")
_SAFETY = 4.0
_FULL_OFFSETS = (1.0, -1.0)
_ESCALATE_OFFSETS = (1.0, -1.0, 0.5, -0.5, 0.25, -0.25)
_MAX_LISTED = 20
MAX_DIRECTION_ELEMENTS = 1 << 28
"""Largest ``num_directions * x.size`` of a directional check: its directions are one
(num_directions, size) array (1 GiB in float32)."""


def default_rtol(dtype: Any) -> float:
    """1e-4 for float32 (and narrower), 1e-8 for float64.

    On top of the reference's own error estimate (see the module docstring): the ladder and
    Richardson references are accurate to 1e-10 or better in float64 on smooth functions, so
    the relative term only absorbs round-off of the autodiff side.
    """
    return 1e-8 if jnp.dtype(dtype) == jnp.float64 else 1e-4


@dataclasses.dataclass(frozen=True)
class Element:
    """One checked element (full mode) or one direction and stage (directional mode).

    Attributes:
      path: the leaf's pytree key path (``"<root>"`` for a bare array); in directional mode
        the stage (``"JVP"``, ``"VJP"``, ``"transpose"``).
      index: a tuple into the leaf (full mode) or ``(direction,)``.
      autodiff: the autodiff value (``jax.grad``/``jax.jvp`` or the user's ``grad``).
      finite_diff: the finite-difference value (for ``transpose``: the other autodiff side).
      abs_error: ``|autodiff - finite_diff|``.
      rel_error: ``abs_error`` over the scale of the derivative.
      tolerance: the absolute tolerance applied.
      status: ``"ok"``, ``"WRONG"``, ``"kink"`` (one-sided differences disagree) or
        ``"non-finite"``.
    """

    path: str
    index: tuple[int, ...]
    autodiff: float
    finite_diff: float
    abs_error: float
    rel_error: float
    tolerance: float
    status: str


class LeafRow(NamedTuple):
    """Per-leaf summary (full mode) or per-stage summary (directional mode)."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    step: float | None
    max_abs_error: float
    max_rel_error: float
    failed: int
    kinks: int
    status: str


@dataclasses.dataclass(frozen=True)
class GradCheckResult:
    """The verdict of :func:`check_grad`.

    Attributes:
      ok: True when every checked element (or direction) is within tolerance; kinks do not fail.
      mode: ``"full"`` or ``"directional"``.
      max_abs_error: largest ``|autodiff - finite_diff|``.
      max_rel_error: largest relative error (scaled by the size of the derivative).
      worst: the element with the largest error-to-tolerance ratio, or None.
      leaves: per-leaf rows (full) or per-stage rows (directional).
      failures: the elements that failed (at most 20 listed).
      kinks: elements reported as non-differentiable points.
      skipped: non-float leaves, as ``"path (dtype)"``.
      steps: the finite-difference step per float leaf (largest) or per direction.
      rtol: the relative tolerance used.
      atol: the absolute tolerance floor used.
      scheme: how the finite differences were taken.
      autodiff: what the autodiff side is (``"jax.grad(fun)"`` or the ``grad`` callable).
      message: why the check failed when it failed outside the comparison (NaN/inf), or notes.

    Examples:
      >>> import jax.numpy as jnp, funcdiff
      >>> from funcdiff import seed
      >>> x = jnp.array([0.5, 0.75])
      >>> funcdiff.check_grad(seed.composite, x).ok
      True
      >>> off = lambda x: seed.manual_grad(x) * jnp.array([1.0, 1.01])  # 1 % off in x[1]
      >>> bad = funcdiff.check_grad(seed.composite, x, grad=off)
      >>> bad.ok, bad.worst.index, bad.worst.status, round(bad.worst.rel_error, 3)
      (False, (1,), 'WRONG', 0.01)
    """

    ok: bool
    mode: str
    max_abs_error: float
    max_rel_error: float
    worst: Element | None
    leaves: tuple[LeafRow, ...]
    failures: tuple[Element, ...]
    kinks: tuple[Element, ...]
    skipped: tuple[str, ...]
    steps: tuple[float, ...]
    rtol: float
    atol: float
    scheme: str
    autodiff: str
    message: str = ""

    def __str__(self) -> str:
        verdict = "PASSED" if self.ok else "FAILED"
        title = (
            f"check_grad ({self.mode}): {verdict}. autodiff = {self.autodiff}; "
            f"finite differences = {self.scheme}; rtol={fmt(self.rtol)}, atol={fmt(self.atol)}"
        )
        headers = ["leaf" if self.mode == "full" else "stage", *_ROW_COLUMNS]
        rows: list[list[Any]] = [
            [r.path, "x".join(map(str, r.shape)) or "()", *list(r)[2:]] for r in self.leaves
        ]
        parts = [table(headers, rows, title=title)] if rows else [title]
        shown = list(self.failures[:10])
        if self.worst is not None and self.worst not in shown:
            shown.insert(0, self.worst)
        if shown:
            parts.append(
                table(
                    [
                        "where",
                        "index",
                        "autodiff",
                        "finite diff",
                        "abs err",
                        "rel err",
                        "tolerance",
                        "status",
                    ],
                    [
                        [
                            e.path,
                            e.index,
                            e.autodiff,
                            e.finite_diff,
                            e.abs_error,
                            e.rel_error,
                            e.tolerance,
                            e.status,
                        ]
                        for e in shown
                    ],
                    title="worst first:" if not self.ok else "worst element:",
                    digits=6,
                )
            )
        if self.kinks:
            listed = ", ".join(f"{k.path}{list(k.index)}" for k in self.kinks[:10])
            parts.append(f"non-differentiable points (one-sided differences disagree): {listed}")
        if self.skipped:
            parts.append("skipped non-float leaves: " + ", ".join(self.skipped))
        if self.message:
            parts.append(self.message)
        return "\n".join(parts)

    @property
    def rows(self) -> tuple[LeafRow, ...]:
        """Alias of :attr:`leaves` (the per-leaf rows)."""
        return self.leaves

    def assert_ok(self) -> None:
        """Raises ``AssertionError`` with the table when the check failed."""
        if not self.ok:
            raise AssertionError("\n" + str(self))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the CLI's ``--json`` output)."""
        return {
            "ok": self.ok,
            "mode": self.mode,
            "max_abs_error": self.max_abs_error,
            "max_rel_error": self.max_rel_error,
            "worst": None if self.worst is None else dataclasses.asdict(self.worst),
            "leaves": [r._asdict() for r in self.leaves],
            "failures": [dataclasses.asdict(e) for e in self.failures],
            "kinks": [dataclasses.asdict(e) for e in self.kinks],
            "skipped": list(self.skipped),
            "steps": list(self.steps),
            "rtol": self.rtol,
            "atol": self.atol,
            "scheme": self.scheme,
            "autodiff": self.autodiff,
            "message": self.message,
        }


# --------------------------------------------------------------------------------------------
# Jitted cores (cached per function, grad, input spec and settings).


_ROW_COLUMNS = ("shape", "dtype", "step", "max abs err", "max rel err", "failed", "kinks", "status")
"""The per-leaf (full mode) or per-stage (directional mode) columns of the result table."""


def _flat_grad(
    fun: Callable[..., Any], grad: Callable[..., Any] | None, spec: _fd.Spec, others: Any
) -> Callable[[jax.Array], jax.Array]:
    """The autodiff gradient as a map from the flat float vector to a flat vector."""
    if grad is None:
        return jax.grad(lambda v: _fd.flat_function(fun, spec, others, v.dtype)(v)[0])

    def g_flat(v: jax.Array) -> jax.Array:
        out = call_user("grad", grad, _fd.unravel(spec, v, others))
        leaves = jax.tree_util.tree_leaves(out)
        floats = [leaf for leaf in spec.leaves if leaf.is_float]
        if len(leaves) == len(spec.leaves):
            leaves = [g for g, s in zip(leaves, spec.leaves, strict=True) if s.is_float]
        shapes = [tuple(jnp.shape(g)) for g in leaves]
        if shapes != [s.shape for s in floats]:
            raise ValueError(
                "Expected `grad(x)` to return the structure and shapes of the float leaves of "
                f"`x` {[s.shape for s in floats]}, got shapes {shapes}."
            )
        return jnp.concatenate([jnp.ravel(g).astype(v.dtype) for g in leaves])

    return g_flat


def _value_and_flat_grad(
    fun: Callable[..., Any],
    grad: Callable[..., Any] | None,
    spec: _fd.Spec,
    others: Any,
    f_flat: Callable[[jax.Array], jax.Array],
    x: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """``f(x)`` and the autodiff gradient; one forward pass serves both when JAX takes it."""
    if grad is None:
        return jax.value_and_grad(lambda v: f_flat(v)[0])(x)
    return f_flat(x)[0], _flat_grad(fun, grad, spec, others)(x)


def _full_program(
    fun: Callable[..., Any],
    grad: Callable[..., Any] | None,
    spec: _fd.Spec,
    x: jax.Array,
    others: list[Any],
) -> jax.Array:
    """Everything full mode needs, packed in one vector (see :func:`_unpack_full`)."""
    eps = _fd.output_eps(fun, spec, x.dtype)
    f_flat = _fd.flat_function(fun, spec, others, x.dtype)
    f0, ad = _value_and_flat_grad(fun, grad, spec, others, f_flat, x)
    h = _fd.coordinate_steps("central", x)
    vals = _fd.stencil_values(f_flat, x, _FULL_OFFSETS, h)[:, :, 0]
    fmax = jnp.maximum(jnp.abs(f0), jnp.max(jnp.abs(vals), axis=1))
    rows = {
        "ad": ad.astype(x.dtype),
        "fd": (vals[:, 0] - vals[:, 1]) / (2 * h),
        "fwd": (vals[:, 0] - f0) / h,
        "bwd": (f0 - vals[:, 1]) / h,
        "err": _fd._ROUNDOFF_ULPS * eps * fmax / h,
        "step": h,
    }
    table = jnp.stack([rows[k] for k in _FULL_ROWS])  # the wider of the in/output dtypes
    scalars = jnp.stack([f0, jnp.all(jnp.isfinite(vals))]).astype(table.dtype)
    return jnp.concatenate([table.ravel(), scalars])


_FULL_ROWS = ("ad", "fd", "fwd", "bwd", "err", "step")


def _unpack_full(packed: np.ndarray, n: int) -> dict[str, Any]:
    """The full-mode program's one output (a single device-to-host transfer), by name."""
    rows = packed[: len(_FULL_ROWS) * n].reshape(len(_FULL_ROWS), n)
    out: dict[str, Any] = dict(zip(_FULL_ROWS, rows, strict=True))
    out["f0"], out["finite"] = packed[-2], bool(packed[-1])
    return out


_full_core = one_shot_jit(static_argnames=("fun", "grad", "spec"))(_full_program)
_full_core_small = one_shot_jit(quick_run=True, static_argnames=("fun", "grad", "spec"))(
    _full_program
)
QUICK_RUN_MAX_SIZE = 64
"""Up to this many float elements, full mode compiles for a quick run (LLVM -O0 on CPU): the
2n evaluations take well under a millisecond and the compile is nearly all of a check. Above
it the optimised program's faster run matters (d = 100: 0.6 ms against 1.6 ms a check)."""


@one_shot_jit(static_argnames=("fun", "spec"))
def _escalate_core(
    fun: Callable[..., Any],
    spec: _fd.Spec,
    x: jax.Array,
    others: list[Any],
    coords: jax.Array,
) -> dict[str, jax.Array]:
    """Richardson value and error, and one-sided gaps at h and h/4, on ``coords`` only."""
    eps = _fd.output_eps(fun, spec, x.dtype)
    f_flat = _fd.flat_function(fun, spec, others, x.dtype)
    f0 = f_flat(x)[0]
    # eps**(1/5) * max(1, |x|) as before, an independent second reference next to the ladder
    # (the kink test's one-sided gaps need steps that stay small: eps**(1/7) is 0.1 in
    # float32 and would step across the pole of 1/x at x = 0.05)
    h0 = float(jnp.finfo(x.dtype).eps) ** 0.2 * jnp.maximum(1.0, jnp.abs(x))
    h = ((x + h0) - x)[coords]
    vals = _fd.stencil_values(f_flat, x, _ESCALATE_OFFSETS, h, coords=coords)[:, :, 0]
    value, trunc = _fd.richardson(vals[:, :, None], h[:, None])
    fmax = jnp.maximum(jnp.abs(f0), jnp.max(jnp.abs(vals), axis=1))
    roundoff = _fd._ROUNDOFF_ULPS * eps * 3.0 * fmax / (h / 4)
    fwd1, bwd1 = (vals[:, 0] - f0) / h, (f0 - vals[:, 1]) / h
    fwd4, bwd4 = (vals[:, 4] - f0) / (h / 4), (f0 - vals[:, 5]) / (h / 4)
    # the adaptive ladder (best of 14 steps per element) is the reference where its estimate
    # is smaller: steps that follow the function, not only |x| (sin(x) x at x = 289, float32)
    top = 0.5 * jnp.maximum(1.0, jnp.abs(x))[coords]
    ladder = ladder_steps(x, top, coords)
    rungs = jnp.repeat(coords, ladder.shape[1])
    a_val, a_err, _ = adaptive(
        lambda hf, sign: _fd.stencil_values(f_flat, x, (1.0,), hf * sign, coords=rungs)[:, 0],
        f0[None],
        ladder,
        eps,
        jnp.abs(x)[coords],
        _fd._ROUNDOFF_ULPS,
    )
    r_err = trunc[:, 0] + roundoff
    a_v, a_e, r_v = a_val[:, 0], a_err[:, 0], value[:, 0]
    # two independent references, the one with the smaller estimate used. Where they disagree
    # beyond both estimates, one estimate is wrong, so the gap between them is the error
    # (never a confident wrong reference). Where they agree, Richardson's estimate is still
    # floored by their gap up to the ladder's estimate: its round-off bound comes from |f|,
    # which says nothing when f is a sum that cancels to ~0 (sum tanh(100 x), float64)
    gap = jnp.abs(a_v - r_v)
    agree = gap <= a_e + r_err
    use_ladder = jnp.isfinite(a_e) & ~(a_e >= r_err)
    err = jnp.where(use_ladder, a_e, r_err)
    floor = jnp.where(agree, jnp.minimum(a_e, gap), gap)
    return {
        "fd": jnp.where(use_ladder, a_v, r_v),
        "err": jnp.where(jnp.isfinite(a_e), jnp.maximum(err, floor), err),
        "gap1": jnp.abs(fwd1 - bwd1),
        "gap4": jnp.abs(fwd4 - bwd4),
        "fwd": fwd4,
        "bwd": bwd4,
        "onesided_err": 2.0 * _fd._ROUNDOFF_ULPS * eps * fmax / (h / 4),
        "step": h,
    }


@one_shot_jit(quick_run=True, static_argnames=("fun", "grad", "spec", "with_jvp"))
def _directional_core(
    fun: Callable[..., Any],
    grad: Callable[..., Any] | None,
    spec: _fd.Spec,
    with_jvp: bool,
    x: jax.Array,
    others: list[Any],
    dirs: jax.Array,
) -> dict[str, jax.Array]:
    eps = _fd.output_eps(fun, spec, x.dtype)
    f_flat = _fd.flat_function(fun, spec, others, x.dtype)
    f0, g = _value_and_flat_grad(fun, grad, spec, others, f_flat, x)
    f0 = f0[None]
    h = _fd.direction_steps("richardson", x, dirs)
    vals = _fd.stencil_values(f_flat, x, _ESCALATE_OFFSETS, h, dirs=dirs)
    value, error = _fd._combine("richardson", True, f0, vals, h, eps)
    out = {
        "fd": value[:, 0],
        "err": error[:, 0] if error is not None else jnp.zeros_like(h),
        "vjp": dirs @ g,
        "gnorm": jnp.linalg.norm(g),
        "unorm": jnp.linalg.norm(dirs, axis=1),
        "step": h,
        "f0": f0[0],
        "finite": jnp.all(jnp.isfinite(vals)) & jnp.all(jnp.isfinite(g)),
    }
    if with_jvp:
        out["jvp"] = jax.vmap(lambda u: jax.jvp(lambda v: f_flat(v)[0], (x,), (u,))[1])(dirs)
    return out


@one_shot_jit(quick_run=True, static_argnames=("shape", "dtype"))
def _directions(key: jax.Array, shape: tuple[int, int], dtype: Any) -> jax.Array:
    """Gaussian directions (``jax.random.normal``), compiled for a quick run: its inverse-erf
    sampler takes 0.3 s to compile at XLA's default optimisation level."""
    return jax.random.normal(key, shape, dtype=dtype)


# Functions whose forward mode failed (e.g. a custom_vjp rule), with the reason.
_NO_JVP: dict[tuple[Any, ...], str] = {}


# --------------------------------------------------------------------------------------------
# The public function.


def _locate(spec: _fd.Spec, flat_index: int) -> tuple[str, tuple[int, ...]]:
    pos = 0
    for leaf in spec.float_leaves:
        size = math.prod(leaf.shape)
        if flat_index < pos + size:
            idx = np.unravel_index(flat_index - pos, leaf.shape) if leaf.shape else ()
            return leaf.path, tuple(int(i) for i in idx)
        pos += size
    raise IndexError(flat_index)  # pragma: no cover


def _rel(abs_err: np.ndarray, scale: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale > 0, abs_err / np.where(scale > 0, scale, 1.0), 0.0)


def _nonfinite_result(
    mode: str, message: str, skipped: tuple[str, ...], rtol: float, atol: float, autodiff: str
) -> GradCheckResult:
    return GradCheckResult(
        ok=False,
        mode=mode,
        max_abs_error=math.nan,
        max_rel_error=math.nan,
        worst=None,
        leaves=(),
        failures=(),
        kinks=(),
        skipped=skipped,
        steps=(),
        rtol=rtol,
        atol=atol,
        scheme="-",
        autodiff=autodiff,
        message=message,
    )


def check_grad(
    fun: Callable[..., Any],
    x: Any,
    *,
    grad: Callable[..., Any] | None = None,
    mode: str = "full",
    num_directions: int = 8,
    key: Any = None,
    rtol: float | None = None,
    atol: float | None = None,
) -> GradCheckResult:
    r"""Checks a gradient against finite differences.

    Args:
      fun: a scalar function of ``x``.
      x: the point: an array or a pytree. Float leaves are checked; int, bool and PRNG-key
        leaves are held fixed, skipped and listed. float16/bfloat16 leaves are upcast to
        float32 with a warning.
      grad: the gradient to check, a callable ``grad(x)`` returning the structure of ``x``
        (e.g. a hand-derived formula); ``None`` checks ``jax.grad(fun)``.
      mode: ``"full"`` (every element) or ``"directional"`` (``num_directions`` random
        directions: JVP, VJP and their transpose identity).
      num_directions: directions for ``mode="directional"``, >= 1.
      key: PRNG key (or int seed) for the directions; ``None`` means ``jax.random.key(0)``.
      rtol: relative tolerance; ``None``: 1e-4 in float32, 1e-8 in float64.
      atol: absolute tolerance floor; ``None``: ``10 * eps * max(1, max|grad|)``. The
        finite-difference error estimate (times 4) is always added to the tolerance.

    Returns:
      A :class:`GradCheckResult`; ``result.ok`` is the verdict, ``str(result)`` a table,
      ``result.assert_ok()`` raises ``AssertionError`` with it.

    Raises:
      TypeError: ``x`` has no float leaf (the message names the leaf and its dtype); ``fun``
        or ``grad`` not callable; bad ``key``; ``rtol``/``atol`` not a number.
      ValueError: unknown ``mode``, ``num_directions < 1`` (or too many for memory),
        negative or NaN ``rtol``/``atol``, ``x`` with no element, an int seed beyond 64 bits,
        a non-scalar output (use :func:`funcdiff.fd_jacobian`).
      UserFunctionError: ``fun`` or ``grad`` raised, or is not jit-compatible.

    Examples:
      >>> import jax.numpy as jnp
      >>> from funcdiff import check_grad, seed
      >>> check_grad(seed.composite, jnp.array([0.5, 0.75]), grad=seed.manual_grad).ok
      True
    """
    check_callable("fun", fun)
    check_optional_callable("grad", grad)
    mode = check_choice("mode", mode, MODES)
    num_directions = check_int("num_directions", num_directions, minimum=1)
    rtol_in = check_real("rtol", rtol, minimum=0.0, allow_none=True)
    atol_in = check_real("atol", atol, minimum=0.0, allow_none=True)
    # checked in both modes (a wrong key is a mistake even where it is not used)
    dkey = as_prng_key("key", key) if mode == "directional" or key is not None else None
    spec, flat, others, _ = _fd.analyse("x", x, allow_nonfloat=True)
    if mode == "directional" and num_directions * flat.size > MAX_DIRECTION_ELEMENTS:
        raise ValueError(
            f"Expected `num_directions` * x.size <= {MAX_DIRECTION_ELEMENTS:_}, got "
            f"{num_directions:_} directions of {flat.size:_} elements: the directions alone "
            "would not fit in memory. Use fewer directions (8 find a wrong gradient with "
            "near certainty) or mode='full'."
        )
    skipped = tuple(f"{leaf.path} ({leaf.dtype})" for leaf in spec.leaves if not leaf.is_float)
    _fd.check_outputs(fun, spec, scalar=True, caller="check_grad")
    autodiff = "jax.grad(fun)" if grad is None else f"grad={getattr(grad, '__name__', 'grad')}"
    eps = float(jnp.finfo(flat.dtype).eps)
    r = default_rtol(flat.dtype) if rtol_in is None else rtol_in
    xs = np.asarray(flat)
    if not np.all(np.isfinite(xs)):
        path, idx = _locate(spec, int(np.flatnonzero(~np.isfinite(xs))[0]))
        return _nonfinite_result(
            mode,
            f"FAILED: x is not finite (NaN or inf at {path}{list(idx)}); nothing checked.",
            skipped,
            r,
            math.nan if atol_in is None else atol_in,
            autodiff,
        )
    if mode == "full":
        return _full(fun, grad, spec, flat, others, skipped, r, atol_in, eps, autodiff)
    assert dkey is not None
    return _directional(
        fun, grad, spec, flat, others, skipped, r, atol_in, eps, autodiff, dkey, num_directions
    )


def _pad_pow2(idx: np.ndarray) -> np.ndarray:
    size = max(8, 1 << math.ceil(math.log2(max(1, idx.size))))
    return np.concatenate([idx, np.full(size - idx.size, idx[0], dtype=idx.dtype)])


def _full(
    fun: Callable[..., Any],
    grad: Callable[..., Any] | None,
    spec: _fd.Spec,
    flat: jax.Array,
    others: list[Any],
    skipped: tuple[str, ...],
    rtol: float,
    atol_in: float | None,
    eps: float,
    autodiff: str,
) -> GradCheckResult:
    core = _full_core_small if flat.size <= QUICK_RUN_MAX_SIZE else _full_core
    res = _unpack_full(np.asarray(core(fun, grad, spec, flat, others)), flat.size)
    f0 = float(res["f0"])
    if not math.isfinite(f0):
        return _nonfinite_result(
            "full",
            f"FAILED: fun(x) = {f0}; nothing checked.",
            skipped,
            rtol,
            math.nan if atol_in is None else atol_in,
            autodiff,
        )
    ad, fd, err, step = (np.array(res[k], dtype=np.float64) for k in ("ad", "fd", "err", "step"))
    finite = np.isfinite(ad) & np.isfinite(fd)
    fd_max = float(np.max(np.abs(fd[finite]), initial=0.0))
    atol = 10 * eps * max(1.0, fd_max) if atol_in is None else atol_in
    status = np.full(ad.shape, "ok", dtype=object)
    lo, hi = np.minimum(fd, fd), np.maximum(fd, fd)

    def tolerance(e: np.ndarray, a: np.ndarray, f: np.ndarray) -> np.ndarray:
        return _SAFETY * e + rtol * np.maximum(np.abs(a), np.abs(f)) + atol

    tol = tolerance(err, ad, fd)
    fwd0, bwd0 = np.asarray(res["fwd"], np.float64), np.asarray(res["bwd"], np.float64)
    # kink candidates: one-sided differences disagree by O(1), not by h*f''
    gap0 = np.abs(fwd0 - bwd0)
    # (a smooth gap is h*|f''|: below sqrt(h) unless |f''| > 1/sqrt(h))
    onesided = np.maximum(np.abs(fwd0), np.abs(bwd0))
    kinky = gap0 > 0.1 * onesided + np.sqrt(step) * max(1.0, fd_max) + 2 * tol
    bad = np.flatnonzero((~(np.abs(ad - fd) <= tol) | kinky) & finite)
    if bad.size:
        coords = _pad_pow2(bad.astype(np.int32))
        esc = jax.device_get(_escalate_core(fun, spec, flat, others, jnp.asarray(coords)))
        k = bad.size
        e_fd, e_err = (np.asarray(esc[n][:k], dtype=np.float64) for n in ("fd", "err"))
        gap1, gap4 = np.asarray(esc["gap1"][:k]), np.asarray(esc["gap4"][:k])
        fwd, bwd = np.asarray(esc["fwd"][:k]), np.asarray(esc["bwd"][:k])
        os_err = np.asarray(esc["onesided_err"][:k])
        fd[bad], err[bad] = e_fd, e_err
        step[bad] = np.asarray(esc["step"][:k])
        tol[bad] = tolerance(e_err, ad[bad], e_fd)
        side_tol = _SAFETY * os_err + rtol * np.maximum(np.abs(fwd), np.abs(bwd)) + atol
        kink = (gap4 > 0.5 * gap1) & (gap4 > side_tol)
        lo[bad], hi[bad] = np.minimum(fwd, bwd), np.maximum(fwd, bwd)
        wrong = ~(np.abs(ad[bad] - e_fd) <= tol[bad])
        in_hull = (ad[bad] >= lo[bad] - tol[bad]) & (ad[bad] <= hi[bad] + tol[bad])
        status[bad[kink & in_hull]] = "kink"
        status[bad[wrong & ~(kink & in_hull)]] = "WRONG"
    status[~finite] = "non-finite"
    abs_err = np.where(finite, np.abs(ad - fd), np.inf)
    is_kink = status == "kink"
    # a kink's error is measured to the nearest one-sided derivative
    abs_err = np.where(is_kink, np.maximum(0.0, np.maximum(lo - ad, ad - hi)), abs_err)
    scale = np.maximum(np.abs(ad), np.abs(fd))
    rel_err = np.where(finite, _rel(abs_err, scale), np.inf)

    def element(i: int) -> Element:
        path, idx = _locate(spec, i)
        return Element(
            path,
            idx,
            float(ad[i]),
            float(fd[i]),
            float(abs_err[i]),
            float(rel_err[i]),
            float(tol[i]),
            str(status[i]),
        )

    ratio = np.where(finite, abs_err / np.where(tol > 0, tol, 1.0), np.inf)
    order = np.argsort(-ratio, kind="stable")
    failed_idx = [int(i) for i in order if status[i] in ("WRONG", "non-finite")]
    kink_idx = [int(i) for i in np.flatnonzero(is_kink)]
    rows, steps, pos = [], [], 0
    for leaf in spec.leaves:
        if not leaf.is_float:
            rows.append(
                LeafRow(
                    leaf.path,
                    leaf.shape,
                    str(leaf.dtype),
                    None,
                    math.nan,
                    math.nan,
                    0,
                    0,
                    "skipped",
                )
            )
            continue
        sl = slice(pos, pos + math.prod(leaf.shape))
        pos = sl.stop
        st = status[sl]
        n_failed = int(np.sum((st == "WRONG") | (st == "non-finite")))
        n_kinks = int(np.sum(st == "kink"))
        leaf_step = float(np.max(step[sl], initial=0.0))
        steps.append(leaf_step)
        rows.append(
            LeafRow(
                leaf.path,
                leaf.shape,
                str(leaf.dtype),
                leaf_step,
                float(np.max(abs_err[sl], initial=0.0)),
                float(np.max(rel_err[sl], initial=0.0)),
                n_failed,
                n_kinks,
                "FAIL" if n_failed else ("kink" if n_kinks else "ok"),
            )
        )
    worst = element(int(order[0])) if ad.size else None
    ok = not failed_idx
    msg = (
        ""
        if ok
        else (
            f"{len(failed_idx)} element(s) wrong; worst: {worst.path}{list(worst.index)} "
            f"autodiff {worst.autodiff:.6g} vs finite difference {worst.finite_diff:.6g}."
            if worst is not None
            else ""
        )
    )
    return GradCheckResult(
        ok=ok,
        mode="full",
        max_abs_error=float(np.max(abs_err, initial=0.0)),
        max_rel_error=float(np.max(rel_err, initial=0.0)),
        worst=worst,
        leaves=tuple(rows),
        failures=tuple(element(i) for i in failed_idx[:_MAX_LISTED]),
        kinks=tuple(element(i) for i in kink_idx[:_MAX_LISTED]),
        skipped=skipped,
        steps=tuple(steps),
        rtol=rtol,
        atol=atol,
        scheme="central (failing elements re-measured by Richardson)",
        autodiff=autodiff,
        message=msg,
    )


def _directional(
    fun: Callable[..., Any],
    grad: Callable[..., Any] | None,
    spec: _fd.Spec,
    flat: jax.Array,
    others: list[Any],
    skipped: tuple[str, ...],
    rtol: float,
    atol_in: float | None,
    eps: float,
    autodiff: str,
    key: jax.Array,
    k: int,
) -> GradCheckResult:
    n = flat.shape[0]
    dirs = _directions(key, (k, n), flat.dtype)
    cache_key = (fun, grad, spec)
    jvp_note = _NO_JVP.get(cache_key, "")
    try:
        res = _directional_core(fun, grad, spec, not jvp_note, flat, others, dirs)
    except Exception as e:  # forward mode is optional (custom_vjp): note it, check the rest
        if jvp_note:
            raise
        cause = e.original if isinstance(e, UserFunctionError) and e.original else e
        first = first_line(cause)
        jvp_note = f"JVP not checked: forward mode failed ({type(cause).__name__}: {first})"
        _NO_JVP[cache_key] = jvp_note
        res = _directional_core(fun, grad, spec, False, flat, others, dirs)
    res = jax.device_get(res)
    f0 = float(res["f0"])
    if not math.isfinite(f0):
        return _nonfinite_result(
            "directional",
            f"FAILED: fun(x) = {f0}; nothing checked.",
            skipped,
            rtol,
            math.nan if atol_in is None else atol_in,
            autodiff,
        )
    fd, err, vjp = (np.asarray(res[name], dtype=np.float64) for name in ("fd", "err", "vjp"))
    gnorm, unorm = float(res["gnorm"]), np.asarray(res["unorm"], dtype=np.float64)
    step = np.asarray(res["step"], dtype=np.float64)
    scale = np.maximum(np.abs(fd), gnorm * unorm / math.sqrt(n))
    atol = 10 * eps * max(1.0, float(np.max(scale))) if atol_in is None else atol_in
    tol = _SAFETY * err + rtol * scale + atol
    stages: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = [("VJP", vjp, fd, tol)]
    if not jvp_note:
        jvp = np.asarray(res["jvp"], dtype=np.float64)
        stages.insert(0, ("JVP", jvp, fd, tol))
        tol_t = 64 * eps * gnorm * unorm + atol
        stages.append(("transpose", vjp, jvp, tol_t))
    rows, elements = [], []
    for name, a, f, t in stages:
        finite = np.isfinite(a) & np.isfinite(f)
        abs_err = np.where(finite, np.abs(a - f), np.inf)
        rel_err = np.where(finite, _rel(abs_err, scale), np.inf)
        ok_j = finite & (abs_err <= t)
        for j in range(k):
            st = "ok" if ok_j[j] else ("WRONG" if finite[j] else "non-finite")
            elements.append(
                Element(
                    name,
                    (j,),
                    float(a[j]),
                    float(f[j]),
                    float(abs_err[j]),
                    float(rel_err[j]),
                    float(t[j]),
                    st,
                )
            )
        n_failed = int(np.sum(~ok_j))
        rows.append(
            LeafRow(
                name,
                (k,),
                spec.compute_dtype,
                float(np.max(step)),
                float(np.max(abs_err)),
                float(np.max(rel_err)),
                n_failed,
                0,
                "FAIL" if n_failed else "ok",
            )
        )
    ranked = sorted(
        elements, key=lambda e: -(e.abs_error / e.tolerance if e.tolerance > 0 else math.inf)
    )
    failures = tuple(e for e in ranked if e.status != "ok")
    ok = not failures
    notes = [jvp_note] if jvp_note else []
    if not ok:
        stages_failed = sorted({e.path for e in failures})
        notes.insert(
            0,
            f"directional check failed in {', '.join(stages_failed)}; run "
            "mode='full' to locate the wrong element(s).",
        )
    return GradCheckResult(
        ok=ok,
        mode="directional",
        max_abs_error=max(e.abs_error for e in elements),
        max_rel_error=max(e.rel_error for e in elements),
        worst=ranked[0],
        leaves=tuple(rows),
        failures=failures[:_MAX_LISTED],
        kinks=(),
        skipped=skipped,
        steps=tuple(float(s) for s in step),
        rtol=rtol,
        atol=atol,
        scheme=f"richardson along {k} random direction(s)",
        autodiff=autodiff,
        message=" ".join(notes),
    )
