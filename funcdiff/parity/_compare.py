"""``compare``: a JAX function against its PyTorch twin, values and every derivative.

The maths of one row: for a JAX array ``a`` and its PyTorch counterpart ``b`` (the reference),
NaN and ±inf must sit at the same indices (never zeroed), and every finite element must satisfy
``|a - b| <= atol + rtol * |b|``. The row reports the largest absolute and relative errors, and
the index where the error is furthest beyond its allowance, with both values there.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from funcdiff._config import scoped
from funcdiff._report import table
from funcdiff._validation import (
    UserFunctionError,
    check_callable,
    check_positive_float,
    is_array_leaf,
    is_float_dtype,
    user_function,
)
from funcdiff.parity import _measure as M
from funcdiff.parity._directions import resolve_cotangent, resolve_tangent
from funcdiff.parity._torch import require_torch

__all__ = ["DEFAULT_TOLERANCES", "ParityResult", "ParityRow", "compare", "compare_measurements"]

#: (rtol, atol) per dtype; the measurement behind them is in docs/parity.md.
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-9, 1e-12),
    "float32": (1e-4, 1e-5),
    "float16": (1e-2, 1e-3),
    "bfloat16": (5e-2, 1e-2),
}
"""The ``(rtol, atol)`` :func:`compare` uses per dtype when none is given."""


class ParityRow(NamedTuple):
    """One compared quantity for one pytree leaf.

    Attributes:
      quantity: ``"structure"``, ``"value"``, ``"grad"`` (scalar output), ``"vjp"`` (random
        cotangent), ``"jvp"`` or ``"hvp"``.
      path: the leaf, ``out[...]`` for outputs and JVPs, ``args[...]`` for gradients and HVPs.
      max_abs_error: largest ``|jax - torch|`` over finite elements (inf: NaN/inf misplaced).
      max_rel_error: largest ``|jax - torch| / |torch|``.
      worst_index: index of the element furthest beyond its tolerance (None: no element).
      rtol: relative tolerance used.
      atol: absolute tolerance used.
      passed: whether the row agrees.
      jax_value: the JAX value at ``worst_index``.
      torch_value: the PyTorch value at ``worst_index``.
      note: why it failed or what was special (shape, dtype, NaN pattern).
      excess: the error at ``worst_index`` divided by its allowance (> 1 fails).

    Examples:
      >>> import jax.numpy as jnp, numpy as np, torch
      >>> from funcdiff import parity
      >>> x = np.linspace(0.1, 1.0, 4)
      >>> bad = lambda x: torch.tanh(x).sum() * (1 + 1e-6)  # 1e-6 too large
      >>> row = parity.compare(lambda x: jnp.tanh(x).sum(), bad, x).rows[0]
      >>> row.quantity, row.path, row.passed, row.tolerance
      ('value', 'out', False, (1e-09, 1e-12))
      >>> print(f"{row.max_rel_error:.1e}")
      1.0e-06
    """

    quantity: str
    path: str
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple[int, ...] | None
    rtol: float
    atol: float
    passed: bool
    jax_value: float | None = None
    torch_value: float | None = None
    note: str = ""
    excess: float = 0.0

    @property
    def tolerance(self) -> tuple[float, float]:
        """``(rtol, atol)``."""
        return (self.rtol, self.atol)

    @property
    def ok(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "quantity": self.quantity,
            "path": self.path,
            "max_abs_error": self.max_abs_error,
            "max_rel_error": self.max_rel_error,
            "worst_index": None if self.worst_index is None else list(self.worst_index),
            "rtol": self.rtol,
            "atol": self.atol,
            "pass": self.passed,
            "jax_value": self.jax_value,
            "torch_value": self.torch_value,
            "note": self.note,
        }


_HEADERS = (
    "quantity",
    "path",
    "max abs err",
    "max rel err",
    "worst index",
    "jax",
    "torch",
    "rtol",
    "atol",
    "pass",
    "note",
)


@dataclasses.dataclass(frozen=True)
class ParityResult:
    """The outcome of :func:`compare`.

    Attributes:
      rows: one :class:`ParityRow` per compared quantity and leaf.
      notes: what was skipped and why (integer-only args, no forward mode in torch, ...).
      dtype: the floating dtype the call ran in (``"int"`` when no argument is float).
      reference: where the PyTorch side came from (``"torch 2.13.0"`` or a golden file).

    Examples:
      >>> import jax.numpy as jnp, numpy as np, torch
      >>> from funcdiff import parity
      >>> x = np.linspace(0.1, 1.0, 4)
      >>> good = parity.compare(lambda x: jnp.tanh(x).sum(), lambda x: torch.tanh(x).sum(), x)
      >>> good.ok, good.dtype, [r.quantity for r in good.rows]
      (True, 'float64', ['value', 'grad', 'jvp', 'hvp'])
      >>> bad = parity.compare(lambda x: jnp.tanh(x).sum(), lambda x: torch.sin(x).sum(), x)
      >>> bad.ok, len(bad.failures), bad.worst.quantity in ("value", "grad", "jvp", "hvp")
      (False, 4, True)
    """

    rows: tuple[ParityRow, ...]
    notes: tuple[str, ...] = ()
    dtype: str = "float32"
    reference: str = ""

    @property
    def ok(self) -> bool:
        """True when every row passed (and there was something to compare)."""
        return bool(self.rows) and all(r.passed for r in self.rows)

    @property
    def failures(self) -> tuple[ParityRow, ...]:
        return tuple(r for r in self.rows if not r.passed)

    @property
    def worst(self) -> ParityRow | None:
        """The failing row furthest beyond its tolerance (None when all pass)."""
        fails = self.failures
        return (
            max(fails, key=lambda r: (np.nan_to_num(r.excess, nan=np.inf), r.max_abs_error))
            if fails
            else None
        )

    @property
    def max_excess(self) -> float:
        """The largest error/allowance ratio over all rows (<= 1 passes; 0 when exact)."""
        return max((r.excess for r in self.rows), default=0.0)

    def _table(self, rows: tuple[ParityRow, ...]) -> str:
        status = "OK" if self.ok else f"FAILED ({len(self.failures)} of {len(self.rows)} rows)"
        ref = f" vs {self.reference}" if self.reference else ""
        body = table(
            _HEADERS,
            [
                (
                    r.quantity,
                    r.path,
                    r.max_abs_error,
                    r.max_rel_error,
                    "-" if r.worst_index is None else str(r.worst_index),
                    r.jax_value,
                    r.torch_value,
                    r.rtol,
                    r.atol,
                    r.passed,
                    r.note,
                )
                for r in rows
            ],
            title=f"parity {status}: {self.dtype}{ref}",
        )
        return body + "".join(f"\nnote: {n}" for n in self.notes)

    def __str__(self) -> str:
        return self._table(self.rows)

    def assert_ok(self) -> None:
        """Raises ``AssertionError`` listing every failing row (path, values, tolerance, stage)."""
        if not self.ok:
            raise AssertionError(
                "JAX and PyTorch disagree:\n" + self._table(self.failures or self.rows)
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "dtype": self.dtype,
            "reference": self.reference,
            "notes": list(self.notes),
            "rows": [r.to_dict() for r in self.rows],
        }


# ---- one array pair -------------------------------------------------------------------------


def _tolerance(dtype: np.dtype, rtol: float | None, atol: float | None) -> tuple[float, float]:
    if not is_float_dtype(dtype):
        return (0.0 if rtol is None else rtol, 0.0 if atol is None else atol)
    d_rtol, d_atol = DEFAULT_TOLERANCES.get(np.dtype(dtype).name, DEFAULT_TOLERANCES["float16"])
    return (d_rtol if rtol is None else rtol, d_atol if atol is None else atol)


def _item(x: np.ndarray, idx: tuple[int, ...]) -> float:
    return float(x[idx]) if x.size else float("nan")


def compare_arrays(
    quantity: str,
    path: str,
    a: np.ndarray,
    b: np.ndarray,
    rtol: float | None,
    atol: float | None,
    *,
    check_dtype: bool = True,
    extra_atol: float = 0.0,
) -> ParityRow:
    """Compares JAX's ``a`` with PyTorch's ``b`` (see the module docstring).

    ``extra_atol`` widens the absolute tolerance by the reference's own error bound (a
    finite-difference HVP on the PyTorch side).
    """
    r, t = _tolerance(a.dtype, rtol, atol)
    t += extra_atol
    row = lambda passed, note="", **kw: ParityRow(
        quantity,
        path,
        kw.get("abs", 0.0),
        kw.get("rel", 0.0),
        kw.get("idx"),
        r,
        t,
        passed,
        kw.get("ja"),
        kw.get("tv"),
        note,
        kw.get("excess", 0.0 if passed else np.inf),
    )
    if a.shape != b.shape:
        return row(False, f"shape {a.shape} (JAX) vs {b.shape} (PyTorch)", abs=np.inf, rel=np.inf)
    note = ""
    if check_dtype and a.dtype != b.dtype:
        kinds = {a.dtype.kind, b.dtype.kind}
        if (
            is_float_dtype(a.dtype)
            or is_float_dtype(b.dtype)
            or kinds not in ({"i"}, {"u"}, {"i", "u"})
        ):
            return row(
                False, f"dtype {a.dtype} (JAX) vs {b.dtype} (PyTorch)", abs=np.inf, rel=np.inf
            )
        note = f"dtype {a.dtype} vs {b.dtype}"
    if a.size == 0:
        return row(True, note or "empty")
    x, y = a.astype(np.float64), b.astype(np.float64)
    nan_x, nan_y = np.isnan(x), np.isnan(y)
    inf_bad = (np.isinf(x) | np.isinf(y)) & ~(x == y) & ~(nan_x | nan_y)
    bad = (nan_x != nan_y) | inf_bad
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        return row(
            False,
            f"NaN/inf in different places ({int(bad.sum())} of {a.size})",
            abs=np.inf,
            rel=np.inf,
            idx=idx,
            ja=_item(x, idx),
            tv=_item(y, idx),
        )
    finite = np.isfinite(x) & np.isfinite(y)
    if not finite.any():
        return row(True, note or "all non-finite, same places")
    err = np.where(finite, np.abs(x - y), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(finite & (err > 0), err / np.abs(y), 0.0)
        excess = np.where(finite & (err > 0), err / (t + r * np.abs(y)), 0.0)
    excess = np.where(np.isnan(excess), np.inf, excess)
    flat = int(np.argmax(excess))
    idx = tuple(int(i) for i in np.unravel_index(flat, a.shape))
    worst = float(excess.ravel()[flat])
    return row(
        worst <= 1.0,
        note,
        abs=float(err.max()),
        rel=float(rel.max()),
        idx=idx,
        ja=_item(x, idx),
        tv=_item(y, idx),
        excess=worst,
    )


# ---- two measurements -----------------------------------------------------------------------


def compare_measurements(
    jm: M.Measurement,
    tm: M.Measurement,
    *,
    grad_name: str,
    rtol: float | None,
    atol: float | None,
) -> tuple[list[ParityRow], list[str]]:
    """Rows for outputs, gradients/VJPs, JVPs and HVPs of two measurements."""
    notes: list[str] = [*tm.notes]
    if jm.structure != tm.structure:
        why = M.describe_mismatch(jm.structure, tm.structure)
        notes.append("outputs differ in structure: derivatives not compared")
        return [
            ParityRow(
                "structure",
                "out",
                np.inf,
                np.inf,
                None,
                0.0,
                0.0,
                False,
                note=f"output trees differ {why}",
                excess=np.inf,
            )
        ], notes
    rows = [
        compare_arrays("value", p, a, b, rtol, atol)
        for (p, a), (_, b) in zip(jm.outputs, tm.outputs, strict=True)
    ]
    if any(not r.passed and r.note.startswith("shape") for r in rows):
        notes.append("output shapes differ: derivatives not compared")
        return rows, notes
    for name, js, ts in (
        (grad_name, jm.grads, tm.grads),
        ("jvp", jm.jvp, tm.jvp),
        ("hvp", jm.hvp, tm.hvp),
    ):
        if js is None or ts is None:
            continue
        extra = tm.hvp_atol if name == "hvp" else 0.0
        rows.extend(
            compare_arrays(name, p, a, b, rtol, atol, check_dtype=False, extra_atol=extra)
            for (p, a), (_, b) in zip(js, ts, strict=True)
        )
    return rows, notes


def _run(
    jax_fn: Callable[..., Any],
    torch_side: Callable[..., M.Measurement],
    args: tuple[Any, ...],
    *,
    rtol: float | None,
    atol: float | None,
    key: Any,
    jit: bool = True,
    tangent: Any = None,
    cotangent: Any = None,
) -> tuple[list[ParityRow], list[str], str]:
    """Shared by :func:`compare` and the golden runner: ``torch_side(prep, cots, scalar)``."""
    prep = M.prepare(args, key)
    notes: list[str] = []
    if tangent is not None:
        prep = dataclasses.replace(prep, tangents=resolve_tangent(tangent, prep))
    with scoped(x64=prep.x64, matmul_precision="highest"):
        jargs = M.jax_args(prep)
        out, _ = M.jax_output(jax_fn, prep, jargs)
        struct, spec = M.flatten_output(out)
        shapes = {p: (tuple(np.shape(x)), np.dtype(_dtype_of(x))) for p, x in spec}
        fspec = [s for s in shapes.values() if is_float_dtype(s[1])]
        scalar = len(fspec) == 1 and fspec[0][0] == () and len(spec) == 1 and cotangent is None
        cots = None
        if not prep.float_idx:
            notes.append("no float arguments: values compared, gradients skipped")
        elif not fspec:
            notes.append("no float outputs: values compared, gradients skipped")
        elif cotangent is not None:
            cots = resolve_cotangent(cotangent, out, struct, shapes, prep.rng)
        else:
            cots = M.draw_cotangents(prep, fspec, scalar)
        if tangent is not None and prep.float_idx:
            notes.append("JVP/HVP along the given `tangent`")
        if cotangent is not None and cots is not None:
            notes.append("VJP along the given `cotangent`")
        tm = torch_side(prep, cots, scalar)
        jm = M.measure_jax(jax_fn, prep, jargs, cots, scalar, jit=jit)
    rows, more = compare_measurements(
        jm, tm, grad_name="grad" if scalar else "vjp", rtol=rtol, atol=atol
    )
    return rows, notes + more, prep.dtype


def _check_tolerance(name: str, value: Any) -> float | None:
    """None, or a finite number >= 0 (an array or a bool is refused, not compared)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Expected `{name}` to be a number >= 0 or None, got {value!r}.")
    return 0.0 if value == 0 else check_positive_float(name, value)


def _dtype_of(x: Any) -> Any:
    return x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype


def _guard_jax(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` whose failures (and non-array outputs) are reported as `jax_fn`'s."""

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        with user_function("jax_fn"):
            out = fn(*args)
        for path, leaf in M.flatten_output(out)[1]:
            if not is_array_leaf(leaf):
                raise UserFunctionError(
                    "Expected the function passed as `jax_fn` to return arrays (or a pytree of "
                    f"them), got {type(leaf).__name__} at {path}: funcdiff needs a "
                    "jit-compatible function that returns JAX arrays.",
                    argument="jax_fn",
                )
        return out

    return call


def _guard_torch(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` whose failures (and non-tensor outputs) are reported as `torch_fn`'s."""

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        with user_function("torch_fn"):
            out = fn(*args)
        for path, leaf in M.flatten_output(out)[1]:
            problem = M.torch_leaf_problem(leaf, path)
            if problem is not None:
                raise UserFunctionError(
                    "Expected the function passed as `torch_fn` to return tensors (or a pytree "
                    f"of them), got {problem}.",
                    argument="torch_fn",
                )
        return out

    return call


def compare(
    jax_fn: Callable[..., Any],
    torch_fn: Callable[..., Any],
    *args: Any,
    rtol: float | None = None,
    atol: float | None = None,
    key: Any = None,
    tangent: Any = None,
    cotangent: Any = None,
) -> ParityResult:
    """Checks a JAX function against its PyTorch twin: values, gradients, JVP and HVP.

    Both functions get the same argument values (NumPy/JAX arrays or pytrees of them; the
    PyTorch twin gets ``torch.Tensor`` leaves in the same tree). The dtype of the arguments
    decides the precision: with any float64 argument both run in float64 (JAX's x64 switched on
    for this call only, torch's default dtype float64), otherwise float32. Matmuls run at full
    precision in both (JAX ``highest``; torch without TF32), restored afterwards.

    Compared: the output trees (structure, shapes, dtypes, values; NaN/inf in the same places);
    the gradient of a scalar output, or a VJP with one seeded random cotangent, w.r.t. every
    float leaf of every argument; a JVP along a seeded random tangent; and for a scalar output
    a Hessian-vector product along that tangent. Where PyTorch has no second derivative
    (double backward not implemented, e.g. ``F.hardsigmoid``, ``torch.cdist``), its HVP comes
    from ``torch.func`` forward-over-reverse or, failing that, from central differences of its
    own gradient, whose error estimate widens the HVP rows' ``atol`` (said in ``notes``).

    Args:
      jax_fn: a JAX function of positional arguments (jit-compatible for the fast path; a
        function that only runs eagerly is run eagerly).
      torch_fn: its PyTorch twin, same positional arguments as tensors, returning tensors.
      *args: the arguments, arrays or pytrees of arrays.
      rtol: relative tolerance for every row (default per dtype, :data:`DEFAULT_TOLERANCES`).
      atol: absolute tolerance for every row (default per dtype).
      key: ``jax.random.key`` (or int seed) for the cotangent and tangent; default 0.
      tangent: the direction of the JVP and HVP rows instead of a random normal one: a tuple
        with one pytree per positional argument, shaped like ``args`` (as ``jax.jvp``'s
        ``tangents``; entries at integer leaves are ignored and may be None), or a callable
        ``tangent(*draw) -> tuple`` mapping the seeded random draw (shaped like ``args``) onto
        the op's domain, e.g. ``lambda a: ((a + a.T) / 2,)`` for ops on symmetric matrices.
      cotangent: the cotangent of the VJP rows instead of a random normal one: a pytree
        shaped like the output (entries at non-float leaves ignored), or a callable
        ``cotangent(draw)`` mapping a random draw shaped like the output. With a
        ``cotangent``, a scalar output gets ``vjp`` rows and no HVP.

    Returns:
      A :class:`ParityResult`; ``.ok`` is False on any disagreement, including different
      output structures (explained in its rows) — never an exception for those.

    Raises:
      TypeError: a function is not callable, an argument leaf is not an array (message names
        its path), a bad ``key``, ``tangent`` or ``cotangent``.
      ValueError: a ``tangent``/``cotangent`` leaf of the wrong shape or not finite; a bad
        ``rtol``/``atol``.
      funcdiff.UserFunctionError: ``jax_fn``, ``torch_fn`` (or a ``tangent``/``cotangent``
        callable) raised, returned something that is not arrays (``jax_fn``) or tensors
        (``torch_fn``: a NumPy array or Python float is cut off from autograd), or ``jax_fn``
        cannot even run eagerly under JAX's transformations (the message keeps JAX's hint).
        A ``ValueError`` subclass naming the argument; the original exception is chained.
      ImportError: PyTorch is not installed.

    Examples:
      >>> import jax.numpy as jnp, numpy as np, torch
      >>> x = np.linspace(-1, 1, 5, dtype=np.float32)
      >>> compare(lambda x: jnp.tanh(x).sum(), lambda x: torch.tanh(x).sum(), x).ok
      True
      >>> a = np.array([[4.0, 2.0], [2.0, 5.0]])          # Cholesky: symmetric tangents only
      >>> sym = lambda a: ((a + a.T) / 2,)
      >>> compare(jnp.linalg.cholesky, torch.linalg.cholesky, a, tangent=sym).ok
      True
    """
    check_callable("jax_fn", jax_fn)
    check_callable("torch_fn", torch_fn)
    torch = require_torch()
    tol = {k: _check_tolerance(k, v) for k, v in (("rtol", rtol), ("atol", atol))}
    twin = _guard_torch(torch_fn)

    def torch_side(prep: M.Prepared, cots: Any, scalar: bool) -> M.Measurement:
        with M.torch_precision(torch, float64=prep.x64):
            return M.measure_torch(twin, prep, cots, scalar)

    rows, notes, dtype = _run(
        _guard_jax(jax_fn),
        torch_side,
        args,
        rtol=tol["rtol"],
        atol=tol["atol"],
        key=key,
        tangent=tangent,
        cotangent=cotangent,
    )
    return ParityResult(tuple(rows), tuple(notes), dtype, f"torch {torch.__version__}")
