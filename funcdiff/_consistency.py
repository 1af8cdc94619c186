"""jit vs eager vs vmap agreement for a user function (values and gradients).

A function that is pure gives the same values eagerly, under ``jax.jit`` and as one row of a
``jax.vmap``; a custom rule that closes over Python state, branches on traced values or
mis-handles batching does not. This check runs all three (and ``jax.grad`` of each for a
scalar function) and compares them within a few ulps of the dtype.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcdiff._report import table
from funcdiff._validation import (
    call_user,
    check_bool,
    check_callable,
    check_real,
    leaf_path_str,
)

__all__ = ["ConsistencyResult", "check_consistency"]


@dataclasses.dataclass(frozen=True)
class ConsistencyResult:
    """The verdict of :func:`check_consistency`.

    Attributes:
      ok: every pair agrees within ``rtol`` and every value is finite (a function that is
        NaN or inf somewhere at ``x`` never passes: NaN agreeing with NaN proves nothing).
      rows: ``(quantity, pair, max_abs_diff, max_rel_diff, ok)`` per comparison.
      rtol: the relative tolerance used.
      message: why the check failed beyond the table (non-finite values), or ``""``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from funcdiff import check_consistency, seed
      >>> result = check_consistency(seed.composite, jnp.array([0.5, 0.75]))
      >>> result.ok, [(quantity, pair) for quantity, pair, *_ in result.rows][:2]
      (True, [('value', 'eager vs jit'), ('value', 'eager vs vmap')])
      >>> result.to_dict()["rows"][0]["ok"]
      True
      >>> bad = check_consistency(jnp.log, jnp.array([-1.0, 1.0]))  # NaN at -1 never passes
      >>> bad.ok, bad.message.split(":")[0]
      (False, 'FAILED')
    """

    ok: bool
    rows: tuple[tuple[str, str, float, float, bool], ...]
    rtol: float
    message: str = ""

    def __str__(self) -> str:
        title = f"check_consistency: {'PASSED' if self.ok else 'FAILED'} (rtol={self.rtol:.3g})"
        out = table(
            ["quantity", "pair", "max abs diff", "max rel diff", "ok"],
            [list(r) for r in self.rows],
            title=title,
        )
        return out + (f"\n{self.message}" if self.message else "")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        keys = ("quantity", "pair", "max_abs_diff", "max_rel_diff", "ok")
        return {
            "ok": self.ok,
            "rows": [dict(zip(keys, r, strict=True)) for r in self.rows],
            "rtol": self.rtol,
            "message": self.message,
        }

    def assert_ok(self) -> None:
        """Raises ``AssertionError`` with the table when some pair disagrees."""
        if not self.ok:
            raise AssertionError("\n" + str(self))


def _diff(a: Any, b: Any) -> tuple[float, float]:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    if len(la) != len(lb):
        return math.inf, math.inf
    abs_d, rel_d = 0.0, 0.0
    for u, v in zip(la, lb, strict=True):
        u64, v64 = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
        if u64.shape != v64.shape:
            return math.inf, math.inf
        d = np.abs(u64 - v64)
        d = np.where(np.isnan(u64) & np.isnan(v64), 0.0, d)
        scale = np.maximum(np.abs(u64), np.abs(v64))
        abs_d = max(abs_d, float(np.max(d, initial=0.0)))
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(scale > 0, d / np.where(scale > 0, scale, 1.0), np.where(d > 0, 1, 0))
        rel_d = max(rel_d, float(np.max(rel, initial=0.0)))
    return abs_d, rel_d


def _nonfinite(name: str, tree: Any) -> str:
    """``""`` when every leaf of ``tree`` is finite, else where it is not."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        arr = np.asarray(leaf)
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            return f"{name} is NaN or inf at {leaf_path_str(path)}"
    return ""


def _as_point(x: Any) -> Any:
    """``x`` with every leaf a JAX array; refuses leaves that are not array-like."""

    def convert(path: Any, leaf: Any) -> jax.Array:
        try:
            arr = jnp.asarray(leaf)
        except OverflowError:
            raise ValueError(
                f"Expected `x` to hold numbers JAX can hold, got the int {leaf} at "
                f"{leaf_path_str(path)}, too large for its integers."
            ) from None
        except (TypeError, ValueError):
            raise TypeError(
                f"Expected `x` to be an array or a pytree of arrays, got "
                f"{type(leaf).__name__} at {leaf_path_str(path)}."
            ) from None
        return arr

    leaves = jax.tree_util.tree_flatten_with_path(x)[0]
    if not leaves:
        raise ValueError("Expected `x` to hold at least one array, got an empty pytree.")
    return jax.tree_util.tree_map_with_path(convert, x)


def check_consistency(
    fun: Callable[..., Any], x: Any, *, rtol: float | None = None, grad: bool | None = None
) -> ConsistencyResult:
    """Compares ``fun(x)`` eagerly, under ``jax.jit`` and under ``jax.vmap`` (batch of 2).

    Args:
      fun: a function of one argument (an array or pytree).
      x: the point.
      rtol: relative tolerance; ``None``: ``64 * eps`` of the output dtype (XLA may fuse and
        reorder floating-point operations under jit).
      grad: also compare ``jax.grad(fun)`` the same way; ``None`` means "when the output is a
        float scalar".

    Returns:
      A :class:`ConsistencyResult`; not ``ok`` when a pair disagrees or a value is NaN/inf.

    Raises:
      TypeError: ``fun`` not callable, ``x`` not arrays, ``rtol`` not a number, ``grad`` not
        a bool or None.
      ValueError: ``rtol`` negative, NaN or inf; ``x`` empty.
      UserFunctionError: ``fun`` raised, or is not jit-compatible.

    Examples:
      >>> import jax.numpy as jnp
      >>> from funcdiff import check_consistency, seed
      >>> check_consistency(seed.composite, jnp.array([0.5, 0.75])).ok
      True
    """
    check_callable("fun", fun)
    rtol = check_real("rtol", rtol, minimum=0.0, allow_none=True)
    if grad is not None:
        grad = check_bool("grad", grad)
    x = _as_point(x)
    struct = jax.eval_shape(lambda a: call_user("fun", fun, a), x)
    leaves = jax.tree_util.tree_leaves(struct)
    dtype = jnp.result_type(*[leaf.dtype for leaf in leaves]) if leaves else jnp.float32
    if rtol is None:
        eps = float(jnp.finfo(dtype).eps) if jnp.issubdtype(dtype, jnp.floating) else 0.0
        rtol = 64 * eps
    scalar = (
        len(leaves) == 1 and leaves[0].shape == () and jnp.issubdtype(leaves[0].dtype, jnp.floating)
    )
    float_x = all(jnp.issubdtype(leaf.dtype, jnp.floating) for leaf in jax.tree_util.tree_leaves(x))
    if grad and not float_x:
        raise ValueError(
            "Expected `x` to hold only float arrays with grad=True (jax.grad needs them); pass "
            "grad=None (or False) to compare values only."
        )
    scalar = scalar and float_x
    if grad and not scalar:
        shapes = [(tuple(leaf.shape), str(leaf.dtype)) for leaf in leaves]
        raise ValueError(
            f"Expected `fun` to return a float scalar with grad=True, got {shapes}; pass "
            "grad=None (or False) to compare values only."
        )
    if grad is None:
        grad = scalar

    def user(a: Any) -> Any:
        return call_user("fun", fun, a)

    funcs = [("value", user)] + ([("grad", jax.grad(user))] if grad else [])
    rows, problems = [], []
    batch = jax.tree_util.tree_map(lambda a: jnp.stack([jnp.asarray(a)] * 2), x)
    for name, fn in funcs:
        eager = fn(x)
        jitted = jax.jit(fn)(x)
        vmapped = jax.tree_util.tree_map(lambda a: a[1], jax.vmap(fn)(batch))
        for pair, other in (("eager vs jit", jitted), ("eager vs vmap", vmapped)):
            a, r = _diff(eager, other)
            rows.append((name, pair, a, r, bool(r <= rtol)))
        if problem := _nonfinite(f"{name} (eager)", eager):
            problems.append(problem)
    message = ""
    if problems:
        message = (
            f"FAILED: {'; '.join(problems)}: consistency is not judged on NaN/inf "
            "(NaN agreeing with NaN proves nothing)."
        )
    ok = all(r[-1] for r in rows) and not problems
    return ConsistencyResult(ok, tuple(rows), float(rtol), message)
