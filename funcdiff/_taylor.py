r"""The Taylor-remainder test: a step-free verdict on a gradient.

For a right gradient :math:`g = \nabla f(x)` the remainder

.. math::

   r(h) = |f(x + h v) - f(x) - h \langle g, v\rangle|

falls as :math:`h^2`; for a wrong one it falls only as :math:`h`. The test evaluates
:math:`r` on a geometric ladder of steps (one vmapped, jitted call), fits the slope of
:math:`\log r` against :math:`\log h` on the points above the round-off floor, and passes
when the slope is near 2. No single step has to be right.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcdiff import _fd
from funcdiff._config import one_shot_jit
from funcdiff._report import table
from funcdiff._validation import (
    as_prng_key,
    check_callable,
    check_int,
    check_optional_callable,
    check_real,
)

__all__ = ["TaylorResult", "taylor_test"]


@dataclasses.dataclass(frozen=True)
class TaylorResult:
    """The verdict of :func:`taylor_test`.

    Attributes:
      ok: True when the fitted order is at least ``min_order`` (a right gradient gives ~2).
      order: the slope of ``log r(h)`` against ``log h`` over the usable steps (NaN when fewer
        than 3 steps are above the round-off floor).
      steps: the steps ``h``.
      remainders: ``r(h)`` for each step.
      usable: which steps were above the round-off floor and used in the fit.
      min_order: the pass threshold.
      message: why the test failed or was inconclusive.

    Examples:
      >>> import jax.numpy as jnp
      >>> from funcdiff import taylor_test, seed
      >>> x = jnp.array([0.5, 0.75])
      >>> result = taylor_test(seed.composite, x)
      >>> result.ok, round(result.order), len(result.steps)
      (True, 2, 12)
      >>> wrong = taylor_test(seed.composite, x, grad=lambda x: 2 * seed.manual_grad(x))
      >>> wrong.ok, round(wrong.order)
      (False, 1)
      >>> wrong.message
      'the remainder falls slower than h^2: the gradient is wrong along v.'
    """

    ok: bool
    order: float
    steps: tuple[float, ...]
    remainders: tuple[float, ...]
    usable: tuple[bool, ...]
    min_order: float
    message: str = ""

    def __str__(self) -> str:
        verdict = "PASSED" if self.ok else "FAILED"
        title = (
            f"taylor_test: {verdict}. remainder |f(x+hv) - f(x) - h<grad, v>| falls as "
            f"h^{self.order:.3g} (right gradient: 2, wrong: 1; threshold {self.min_order})"
        )
        rows = [
            [h, r, "yes" if u else "no"]
            for h, r, u in zip(self.steps, self.remainders, self.usable, strict=True)
        ]
        out = table(["h", "remainder", "used"], rows, title=title, digits=4)
        return out + (f"\n{self.message}" if self.message else "")

    def assert_ok(self) -> None:
        """Raises ``AssertionError`` with the table when the test failed."""
        if not self.ok:
            raise AssertionError("\n" + str(self))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN stays a float NaN)."""
        return {
            "ok": self.ok,
            "order": self.order,
            "steps": list(self.steps),
            "remainders": list(self.remainders),
            "usable": list(self.usable),
            "min_order": self.min_order,
            "message": self.message,
        }


@one_shot_jit(quick_run=True, static_argnames=("fun", "grad", "spec"))
def _taylor_core(
    fun: Callable[..., Any],
    grad: Callable[..., Any] | None,
    spec: _fd.Spec,
    x: jax.Array,
    others: list[Any],
    v: jax.Array,
    hs: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    from funcdiff._check import _flat_grad

    f_flat = _fd.flat_function(fun, spec, others, x.dtype)
    f0 = f_flat(x)[0]
    g = _flat_grad(fun, grad, spec, others)(x)
    slope = jnp.vdot(g, v)
    fs = jax.vmap(lambda h: f_flat(x + h * v)[0])(hs)
    return jnp.abs(fs - f0 - hs * slope), f0


def _direction(spec: _fd.Spec, flat: jax.Array, v: Any) -> jax.Array:
    """``v`` as a flat vector: the structure of ``x``, real floats shaped like its float leaves
    (its other leaves are ignored, as those of ``x`` are held fixed), finite."""
    vspec, vflat, _, _ = _fd.analyse("v", v, allow_nonfloat=True)
    want = [leaf.shape for leaf in spec.float_leaves]
    got = [leaf.shape for leaf in vspec.float_leaves]
    if vspec.treedef != spec.treedef:
        raise ValueError(
            f"Expected `v` with the structure of `x` {spec.treedef}, got {vspec.treedef}."
        )
    if got != want:
        raise ValueError(
            f"Expected `v` shaped like the float leaves of `x` {want}, got shapes {got}."
        )
    if not np.all(np.isfinite(np.asarray(vflat))):
        raise ValueError("Expected `v` to be finite, got NaN or inf in it.")
    return vflat.astype(flat.dtype)


def taylor_test(
    fun: Callable[..., Any],
    x: Any,
    *,
    grad: Callable[..., Any] | None = None,
    v: Any = None,
    key: Any = None,
    num_steps: int = 12,
    min_order: float = 1.8,
) -> TaylorResult:
    r"""Checks that the first-order Taylor remainder falls as :math:`h^2`.

    Args:
      fun: a scalar function of ``x``.
      x: an array or a pytree of float arrays.
      grad: the gradient to test; ``None`` uses ``jax.grad(fun)``.
      v: the direction (structure of ``x``); ``None`` draws a normal one from ``key``.
      key: PRNG key or int seed for ``v``; ``None`` means ``jax.random.key(0)``.
      num_steps: steps on the ladder ``h_k = h_0 2^{-k}``, 3 to 64 (below ``h_0 2^{-64}``
        every remainder is round-off).
      min_order: the fitted order needed to pass: a finite number > 0.

    Returns:
      A :class:`TaylorResult`.

    Raises:
      TypeError, ValueError: as :func:`funcdiff.check_grad` for bad ``x``, ``v`` or settings;
        ``v`` complex, non-finite, zero, or not shaped like the float leaves of ``x``;
        ``min_order`` not a finite number > 0.
      UserFunctionError: ``fun`` or ``grad`` raised, or is not jit-compatible.

    Examples:
      >>> import jax.numpy as jnp
      >>> from funcdiff import taylor_test, seed
      >>> taylor_test(seed.composite, jnp.array([0.5, 0.75])).ok
      True
    """
    check_callable("fun", fun)
    check_optional_callable("grad", grad)
    num_steps = check_int("num_steps", num_steps, minimum=3, maximum=64)
    order_min = check_real("min_order", min_order, minimum=0.0, exclusive=True)
    assert order_min is not None
    min_order = order_min
    spec, flat, others, _ = _fd.analyse("x", x, allow_nonfloat=True)
    vflat = _direction(spec, flat, v) if v is not None else None
    # a bad key is refused always
    vkey = as_prng_key("key", key) if v is None or key is not None else None
    _fd.check_outputs(fun, spec, scalar=True, caller="taylor_test")
    if vflat is None:
        assert vkey is not None
        vflat = jax.random.normal(vkey, flat.shape, dtype=flat.dtype)
    vnorm = float(jnp.max(jnp.abs(vflat)))
    if vnorm == 0:
        raise ValueError("Expected a nonzero direction `v`, got zeros.")
    xmax = float(jnp.max(jnp.abs(flat)))
    h0 = 0.1 * max(1.0, xmax) / vnorm
    hs = h0 * 0.5 ** np.arange(num_steps)
    rem, f0 = jax.device_get(
        _taylor_core(fun, grad, spec, flat, others, vflat, jnp.asarray(hs, dtype=flat.dtype))
    )
    rem = np.asarray(rem, dtype=np.float64)
    eps = float(jnp.finfo(flat.dtype).eps)
    if not (math.isfinite(float(f0)) and np.all(np.isfinite(rem))):
        return TaylorResult(
            False,
            math.nan,
            tuple(hs),
            tuple(rem),
            (False,) * num_steps,
            min_order,
            "FAILED: fun(x), fun(x + hv) or the gradient is NaN/inf.",
        )
    floor = 32 * eps * max(1.0, abs(float(f0)))
    usable = rem > floor
    if not usable.any():
        return TaylorResult(
            True,
            math.nan,
            tuple(float(h) for h in hs),
            tuple(float(r) for r in rem),
            (False,) * num_steps,
            min_order,
            "every remainder is at round-off: f is linear along v and the gradient matches it.",
        )
    if int(usable.sum()) < 3:
        return TaylorResult(
            False,
            math.nan,
            tuple(hs),
            tuple(rem),
            tuple(bool(u) for u in usable),
            min_order,
            "inconclusive: fewer than 3 steps above round-off "
            "(f may be linear along v, or use float64).",
        )
    # fit the small-h end of the ladder, where a wrong gradient's O(h) term dominates
    used = np.flatnonzero(usable)[-4:]
    usable = np.zeros_like(usable)
    usable[used] = True
    order = float(np.polyfit(np.log(hs[used]), np.log(rem[used]), 1)[0])
    ok = order >= min_order
    msg = "" if ok else "the remainder falls slower than h^2: the gradient is wrong along v."
    return TaylorResult(
        ok,
        order,
        tuple(float(h) for h in hs),
        tuple(float(r) for r in rem),
        tuple(bool(u) for u in usable),
        min_order,
        msg,
    )
