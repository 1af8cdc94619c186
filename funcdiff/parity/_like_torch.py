"""JAX variants of ops whose derivative (or value) differs from PyTorch's at a kink or default.

Each function computes what the PyTorch op computes, value and gradient, including at the
points listed in the divergence registry (:func:`funcdiff.parity.divergences`). Away from those
points they agree with the plain JAX op. All are pure JAX: jit, vmap and grad work.

Bad arguments are refused with a ``TypeError``/``ValueError`` naming them (an axis out of
range, a correction that leaves no degrees of freedom, ...), never an ``IndexError`` from
inside JAX or a silent NaN.

Examples:
  >>> import jax
  >>> from funcdiff.parity import abs_like_torch
  >>> float(jax.grad(abs_like_torch)(0.0)), float(jax.grad(jax.numpy.abs)(0.0))
  (0.0, 1.0)
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = [
    "abs_like_torch",
    "atan2_like_torch",
    "clip_like_torch",
    "fmax_like_torch",
    "gelu_like_torch",
    "hard_sigmoid_like_torch",
    "hardtanh_like_torch",
    "leaky_relu_like_torch",
    "max_like_torch",
    "median_like_torch",
    "min_like_torch",
    "norm_like_torch",
    "pow_like_torch",
    "softplus_like_torch",
    "std_like_torch",
    "var_like_torch",
    "xlogy_like_torch",
]


# ---- argument checks ----------------------------------------------------------------------


def _real(name: str, x: Any) -> jax.Array:
    """``x`` as a real JAX array (ints and bools kept), or a TypeError naming ``name``."""
    try:
        arr = jnp.asarray(x)
    except (TypeError, ValueError):
        raise TypeError(
            f"Expected `{name}` to be a real array or number, got {type(x).__name__}."
        ) from None
    if not (jnp.issubdtype(arr.dtype, jnp.number) or arr.dtype == jnp.bool_):
        raise TypeError(f"Expected `{name}` to be a real array, got dtype {arr.dtype}.")
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise TypeError(
            f"Expected `{name}` to be a real array, got dtype {arr.dtype}; the complex "
            "gradient conventions differ (see the registry entry complex-grad-conjugate)."
        )
    return arr


def real_float_array(name: str, x: Any) -> jax.Array:
    """``x`` as a real floating JAX array (ints and bools promoted), or a TypeError."""
    arr = _real(name, x)
    return arr if jnp.issubdtype(arr.dtype, jnp.floating) else arr.astype(float)


def _scalar(name: str, value: Any, *, nonzero: bool = False) -> float:
    """A finite real Python/NumPy number (an array or a bool is refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Expected `{name}` to be a real number, got {value!r}.")
    v = float(value)
    if not math.isfinite(v) or (nonzero and v == 0):
        need = "a finite non-zero number" if nonzero else "a finite number"
        raise ValueError(f"Expected `{name}` to be {need}, got {value!r}.")
    return v


def _one_axis(axis: Any, ndim: int, name: str = "axis") -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"Expected `{name}` to be an integer, got {axis!r}.")
    lo, hi = -max(ndim, 1), max(ndim, 1)
    if not lo <= int(axis) < hi:
        raise ValueError(
            f"Expected `{name}` in [{lo}, {hi}) for an array of {ndim} dimension"
            f"{'' if ndim == 1 else 's'}, got {axis}."
        )
    return int(axis) % max(ndim, 1)


def _axes(axis: Any, ndim: int) -> tuple[int, ...] | None:
    """None, an int or a tuple of distinct ints, each in range for ``ndim``."""
    if axis is None:
        return None
    if isinstance(axis, tuple | list):
        axes = tuple(_one_axis(a, ndim) for a in axis)
        if len(set(axes)) != len(axes):
            raise ValueError(f"Expected distinct axes in `axis`, got {tuple(axis)}.")
        return axes
    return (_one_axis(axis, ndim),)


def _reduced_size(x: jax.Array, axes: tuple[int, ...] | None) -> int:
    if axes is None:
        return int(x.size)
    return int(np.prod([x.shape[a] for a in axes])) if x.ndim else 1


def _broadcast(names: tuple[str, str], a: jax.Array, b: jax.Array) -> None:
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"Expected `{names[0]}` and `{names[1]}` to broadcast together, got shapes "
            f"{a.shape} and {b.shape}."
        ) from None


# ---- the variants -------------------------------------------------------------------------


def abs_like_torch(x: ArrayLike) -> jax.Array:
    """``|x|`` with PyTorch's derivative ``sign(x)``: 0 at ``x = 0`` (JAX's ``abs`` gives 1).

    Raises:
      TypeError: ``x`` is not a real array.

    Examples:
      >>> import jax
      >>> from funcdiff.parity import abs_like_torch
      >>> float(abs_like_torch(-2.0)), float(jax.grad(abs_like_torch)(0.0))
      (2.0, 0.0)
    """
    return _abs(_real("x", x))


@jax.custom_jvp
def _abs(x: jax.Array) -> jax.Array:
    return jnp.abs(x)


@_abs.defjvp
def _abs_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[jax.Array, jax.Array]:
    (x,), (t,) = primals, tangents
    return jnp.abs(x), jnp.sign(x) * t


def clip_like_torch(
    x: ArrayLike, min: ArrayLike | None = None, max: ArrayLike | None = None
) -> jax.Array:
    """``torch.clamp(x, min, max)``: the gradient is 1 on the closed interval, bounds included.

    ``jnp.clip`` gives 0.5 at a bound and ``lax.clamp`` 0; PyTorch passes the whole gradient to
    ``x`` when ``min <= x <= max`` and to an array bound only strictly outside.

    Raises:
      TypeError: ``x``, ``min`` or ``max`` is not a real array (None for no bound).
      ValueError: a bound's shape does not broadcast with ``x``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from funcdiff.parity import clip_like_torch
      >>> x = jnp.array([-0.5, 0.0, 0.5, 1.0, 1.5])
      >>> print(jax.grad(lambda x: clip_like_torch(x, 0.0, 1.0).sum())(x))
      [0. 1. 1. 1. 0.]
      >>> print(jax.grad(lambda x: jnp.clip(x, 0.0, 1.0).sum())(x))
      [0.  0.5 1.  0.5 0. ]
    """
    out = _real("x", x)
    if min is not None:
        min = _real("min", min)
        _broadcast(("x", "min"), out, min)
    if max is not None:
        max = _real("max", max)
        _broadcast(("x", "max"), out, max)
    if min is not None:
        out = jnp.where(out < min, min, out)
    if max is not None:
        out = jnp.where(out > max, max, out)
    return out


def hardtanh_like_torch(x: ArrayLike, min_val: float = -1.0, max_val: float = 1.0) -> jax.Array:
    """``F.hardtanh``: gradient 1 strictly inside ``(min_val, max_val)``, 0 at the bounds.

    Raises:
      TypeError: ``x`` is not a real array, or a bound is not a real number.
      ValueError: ``min_val > max_val`` (as ``F.hardtanh``), or a bound is not finite.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from funcdiff.parity import hardtanh_like_torch
      >>> x = jnp.array([-2.0, -1.0, 0.0, 1.0, 2.0])
      >>> print(hardtanh_like_torch(x))
      [-1. -1.  0.  1.  1.]
      >>> print(jax.vmap(jax.grad(hardtanh_like_torch))(x))
      [0. 0. 1. 0. 0.]
    """
    x = _real("x", x)
    min_val, max_val = _scalar("min_val", min_val), _scalar("max_val", max_val)
    if min_val > max_val:
        raise ValueError(
            f"Expected `min_val` <= `max_val`, got min_val={min_val} and max_val={max_val}."
        )
    return jnp.where(x <= min_val, min_val, jnp.where(x >= max_val, max_val, x))


def hard_sigmoid_like_torch(x: ArrayLike) -> jax.Array:
    """``F.hardsigmoid``: slope ``float32(1/6)`` on ``(-3, 3)`` in every dtype, 0 at the bounds.

    PyTorch's CPU backward kernel multiplies by ``1.0f / 6.0f`` even in float64, so its float64
    gradient is ``0.1666666716...``; ``jax.nn.hard_sigmoid`` gives ``1/6`` exactly.

    Raises:
      TypeError: ``x`` is not a real array.

    Examples:
      >>> import jax, numpy as np
      >>> from funcdiff.parity import hard_sigmoid_like_torch
      >>> float(hard_sigmoid_like_torch(0.0))
      0.5
      >>> float(jax.grad(hard_sigmoid_like_torch)(0.0)) == float(np.float32(1 / 6))
      True
      >>> float(jax.grad(hard_sigmoid_like_torch)(3.0))
      0.0
    """
    return _hard_sigmoid(real_float_array("x", x))


@jax.custom_jvp
def _hard_sigmoid(x: jax.Array) -> jax.Array:
    return jax.nn.hard_sigmoid(x)


@_hard_sigmoid.defjvp
def _hard_sigmoid_jvp(
    primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[jax.Array, jax.Array]:
    (x,), (t,) = primals, tangents
    x = jnp.asarray(x)
    slope = jnp.asarray(np.float32(1 / 6), dtype=x.dtype)
    inside = (x > -3) & (x < 3)
    return jax.nn.hard_sigmoid(x), jnp.where(inside, slope, 0.0).astype(x.dtype) * t


def leaky_relu_like_torch(x: ArrayLike, negative_slope: float = 0.01) -> jax.Array:
    """``F.leaky_relu``: gradient ``negative_slope`` at 0 (JAX's ``leaky_relu`` gives 1).

    Raises:
      TypeError: ``x`` is not a real array or ``negative_slope`` not a real number.
      ValueError: ``negative_slope`` is not finite.

    Examples:
      >>> import jax
      >>> from funcdiff.parity import leaky_relu_like_torch
      >>> round(float(jax.grad(leaky_relu_like_torch)(0.0)), 6)
      0.01
      >>> float(jax.grad(jax.nn.leaky_relu)(0.0))
      1.0
    """
    x = _real("x", x)
    negative_slope = _scalar("negative_slope", negative_slope)
    return jnp.where(x > 0, x, negative_slope * x)


def _safe_sqrt(s: jax.Array) -> jax.Array:
    """``sqrt(s)`` for ``s >= 0`` whose gradient is 0 (not NaN/inf) at ``s = 0``."""
    pos = s > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, s, 1.0)), 0.0)


def norm_like_torch(
    x: ArrayLike,
    ord: float | str | None = None,
    axis: int | tuple[int, ...] | None = None,
    keepdims: bool = False,
) -> jax.Array:
    """``torch.linalg.vector_norm`` (and the Frobenius norm) with PyTorch's gradient at 0.

    PyTorch masks the 2-norm's gradient to 0 at the zero vector (JAX: NaN) and uses
    ``sign(x)`` for the 1- and inf-norms (JAX: 1 and a split among the zeros).

    Args:
      x: the array.
      ord: ``None``, ``2`` or ``"fro"`` (Euclidean over ``axis``), ``1`` or ``inf``.
      axis: axes to reduce; None reduces every element (as ``vector_norm`` does).
      keepdims: keep the reduced axes with size 1.

    Raises:
      TypeError: ``x`` is not a real array; ``axis`` not an int or tuple of ints.
      ValueError: another ``ord``; an axis out of range.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from funcdiff.parity import norm_like_torch
      >>> x = jnp.array([3.0, -4.0])
      >>> float(norm_like_torch(x)), float(norm_like_torch(x, ord=1))
      (5.0, 7.0)
      >>> print(jax.grad(norm_like_torch)(jnp.zeros(2)), jax.grad(jnp.linalg.norm)(jnp.zeros(2)))
      [0. 0.] [nan nan]
    """
    x = _real("x", x)
    axes = _axes(axis, x.ndim)
    axis = axes if axes is None or isinstance(axis, tuple | list) else axes[0]
    if (ord is not None and not isinstance(ord, str | numbers.Real)) or isinstance(ord, bool):
        raise ValueError(f"Expected `ord` to be None, 2, 'fro', 1 or inf, got {ord!r}.")
    if ord in (None, 2, 2.0, "fro"):
        return _safe_sqrt(jnp.sum(x * x, axis=axis, keepdims=keepdims))
    if ord in (1, 1.0):
        return jnp.sum(abs_like_torch(x), axis=axis, keepdims=keepdims)
    if ord in (jnp.inf, float("inf"), "inf"):
        return jnp.max(abs_like_torch(x), axis=axis, keepdims=keepdims)
    raise ValueError(f"Expected `ord` to be None, 2, 'fro', 1 or inf, got {ord!r}.")


def softplus_like_torch(x: ArrayLike, beta: float = 1.0, threshold: float = 20.0) -> jax.Array:
    """``F.softplus(x, beta, threshold)``: linear (``x``, gradient 1) where ``beta*x > threshold``.

    ``jax.nn.softplus(beta * x) / beta`` (``logaddexp``) differs from PyTorch above the
    threshold by ``log1p(exp(-beta * x)) / beta``: ``1.25e-9`` at ``x = 20.5`` with the
    defaults, but up to ``log1p(exp(-threshold)) / beta`` just above a small threshold (0.2
    for ``beta=3, threshold=0.2``) and ``8.3e-4`` at ``x = 2`` there (registry entries
    ``softplus-threshold`` and ``softplus-threshold-beta``).

    Raises:
      TypeError: ``x`` is not a real array; ``beta`` or ``threshold`` not a real number.
      ValueError: ``beta`` is 0 or either is not finite.

    Examples:
      >>> import jax
      >>> from funcdiff.parity import softplus_like_torch
      >>> round(float(softplus_like_torch(0.0)), 4)
      0.6931
      >>> float(softplus_like_torch(25.0)), float(jax.grad(softplus_like_torch)(25.0))
      (25.0, 1.0)
    """
    x = real_float_array("x", x)
    beta = _scalar("beta", beta, nonzero=True)
    threshold = _scalar("threshold", threshold)
    return jnp.where(x * beta > threshold, x, jax.nn.softplus(beta * x) / beta)


def gelu_like_torch(x: ArrayLike, approximate: str = "none") -> jax.Array:
    """``F.gelu(x, approximate)``: PyTorch's default is the exact erf form, JAX's the tanh one.

    Raises:
      TypeError: ``x`` is not a real array.
      ValueError: ``approximate`` is not ``"none"`` or ``"tanh"``.

    Examples:
      >>> import jax
      >>> from funcdiff.parity import gelu_like_torch
      >>> round(float(gelu_like_torch(1.0)), 5), round(float(jax.nn.gelu(1.0)), 5)
      (0.84134, 0.84119)
      >>> round(float(gelu_like_torch(1.0, approximate="tanh")), 5)
      0.84119
    """
    x = real_float_array("x", x)
    if not isinstance(approximate, str) or approximate not in ("none", "tanh"):
        raise ValueError(f"Expected `approximate` to be 'none' or 'tanh', got {approximate!r}.")
    return jax.nn.gelu(x, approximate=approximate == "tanh")


def _correction(x: jax.Array, axes: tuple[int, ...] | None, correction: Any) -> float:
    c = _scalar("correction", correction)
    n = _reduced_size(x, axes)
    if not 0 <= c < n:
        raise ValueError(
            f"Expected `correction` in [0, {n}) for {n} reduced element{'' if n == 1 else 's'} "
            f"(at least one degree of freedom), got {correction!r}."
        )
    return c


def var_like_torch(
    x: ArrayLike,
    axis: int | tuple[int, ...] | None = None,
    *,
    correction: float = 1,
    keepdims: bool = False,
) -> jax.Array:
    """``torch.var(x, dim=axis, correction=correction)``: Bessel-corrected by default.

    ``jnp.var`` defaults to ``ddof=0``; PyTorch to ``correction=1``.

    Raises:
      TypeError: ``x`` is not a real array; ``axis`` or ``correction`` of the wrong type.
      ValueError: an axis out of range, or ``correction`` leaves no degree of freedom
        (PyTorch returns NaN/inf there).

    Examples:
      >>> import jax.numpy as jnp
      >>> from funcdiff.parity import var_like_torch
      >>> x = jnp.array([1.0, 2.0, 3.0, 4.0])
      >>> round(float(var_like_torch(x)), 4), float(var_like_torch(x, correction=0))
      (1.6667, 1.25)
      >>> float(jnp.var(x))  # ddof=0
      1.25
    """
    x = _real("x", x)
    axes = _axes(axis, x.ndim)
    c = _correction(x, axes, correction)
    return jnp.var(x, axis=axes, ddof=c, keepdims=bool(keepdims))  # type: ignore[arg-type]


def std_like_torch(
    x: ArrayLike,
    axis: int | tuple[int, ...] | None = None,
    *,
    correction: float = 1,
    keepdims: bool = False,
) -> jax.Array:
    """``torch.std(x, dim=axis, correction=correction)``: ``correction=1`` by default, and a
    gradient of 0 (JAX: NaN) where every element is equal.

    Raises:
      TypeError, ValueError: as :func:`var_like_torch`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from funcdiff.parity import std_like_torch
      >>> round(float(std_like_torch(jnp.array([1.0, 2.0, 3.0, 4.0]))), 4)
      1.291
      >>> print(jax.grad(std_like_torch)(jnp.ones(3)))
      [0. 0. 0.]
      >>> print(jax.grad(lambda x: jnp.std(x, ddof=1))(jnp.ones(3)))
      [nan nan nan]
    """
    return _safe_sqrt(var_like_torch(x, axis, correction=correction, keepdims=keepdims))


def _arg_extreme(x: ArrayLike, axis: Any, pick: Any, name: str) -> jax.Array:
    x = _real("x", x)
    ax = _one_axis(axis, x.ndim)
    if x.ndim == 0:  # torch.max(scalar, dim=0 or -1) is the scalar itself
        return x
    if x.shape[ax] == 0:
        raise ValueError(
            f"Expected a non-empty `x` along `axis` {axis} ({name} of nothing), got shape "
            f"{x.shape}."
        )
    idx = jnp.expand_dims(pick(x, axis=ax), ax)
    return jnp.squeeze(jnp.take_along_axis(x, idx, axis=ax), ax)


def max_like_torch(x: ArrayLike, axis: int) -> jax.Array:
    """``torch.max(x, dim=axis).values``: the gradient goes to the first maximal element only.

    ``jnp.max`` (like ``torch.amax``) splits it evenly among tied maxima.

    Raises:
      TypeError: ``x`` is not a real array, or ``axis`` not an integer.
      ValueError: ``axis`` out of range, or ``x`` empty along it.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from funcdiff.parity import max_like_torch
      >>> print(max_like_torch(jnp.array([[1.0, 5.0], [4.0, 2.0]]), axis=1))
      [5. 4.]
      >>> x = jnp.array([1.0, 3.0, 3.0])
      >>> print(jax.grad(max_like_torch)(x, 0), jax.grad(jnp.max)(x))
      [0. 1. 0.] [0.  0.5 0.5]
    """
    return _arg_extreme(x, axis, jnp.argmax, "the maximum")


def min_like_torch(x: ArrayLike, axis: int) -> jax.Array:
    """``torch.min(x, dim=axis).values``: the gradient goes to the first minimal element only.

    Raises:
      TypeError: ``x`` is not a real array, or ``axis`` not an integer.
      ValueError: ``axis`` out of range, or ``x`` empty along it.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from funcdiff.parity import min_like_torch
      >>> x = jnp.array([2.0, 1.0, 1.0])
      >>> float(min_like_torch(x, axis=0))
      1.0
      >>> print(jax.grad(min_like_torch)(x, 0))
      [0. 1. 0.]
    """
    return _arg_extreme(x, axis, jnp.argmin, "the minimum")


def median_like_torch(x: ArrayLike) -> jax.Array:
    """``torch.median(x)`` (no ``dim``): the lower of the two middle values for an even count,
    with the gradient shared evenly by every element equal to the median.

    ``jnp.median`` averages the two middle values and routes the gradient through the sort.

    Raises:
      TypeError: ``x`` is not a real array.
      ValueError: ``x`` is empty (PyTorch returns NaN).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from funcdiff.parity import median_like_torch
      >>> x = jnp.array([1.0, 2.0, 3.0, 4.0])
      >>> float(median_like_torch(x)), float(jnp.median(x))
      (2.0, 2.5)
      >>> print(jax.grad(median_like_torch)(x))
      [0. 1. 0. 0.]
    """
    x = jnp.ravel(real_float_array("x", x))
    if x.size == 0:
        raise ValueError("Expected a non-empty `x` (the median of nothing), got shape (0,).")
    m = jax.lax.stop_gradient(jnp.sort(x)[(x.size - 1) // 2])
    hit = x == m
    return jnp.sum(jnp.where(hit, x, 0.0)) / jnp.sum(hit)


def fmax_like_torch(x: ArrayLike, y: ArrayLike) -> jax.Array:
    """``torch.fmax``: on a tie the gradient goes to ``x`` (JAX's ``fmax`` sends it to ``y``).

    Raises:
      TypeError: ``x`` or ``y`` is not a real array.
      ValueError: their shapes do not broadcast.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from funcdiff.parity import fmax_like_torch
      >>> [float(g) for g in jax.grad(fmax_like_torch, argnums=(0, 1))(1.0, 1.0)]
      [1.0, 0.0]
      >>> [float(g) for g in jax.grad(jnp.fmax, argnums=(0, 1))(1.0, 1.0)]
      [0.0, 1.0]
    """
    x, y = _real("x", x), _real("y", y)
    _broadcast(("x", "y"), x, y)
    return jnp.where((x >= y) | jnp.isnan(y), x, y)


def pow_like_torch(x: ArrayLike, y: ArrayLike) -> jax.Array:
    """``torch.pow(x, y)`` with PyTorch's derivatives: ``d/dx`` is 0 where ``y == 0`` (JAX's
    float power gives NaN at ``0**0.0``), and ``d/dy`` is 0 where ``x == 0`` and ``y >= 0``.

    ``y`` is taken in ``x``'s float dtype (an integer exponent becomes a float one).

    Raises:
      TypeError: ``x`` or ``y`` is not a real array.
      ValueError: their shapes do not broadcast.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from funcdiff.parity import pow_like_torch
      >>> float(pow_like_torch(0.0, 0.0)), float(pow_like_torch(2.0, 3))
      (1.0, 8.0)
      >>> [float(g) for g in jax.grad(pow_like_torch, argnums=(0, 1))(0.0, 0.0)]
      [0.0, 0.0]
      >>> float(jax.grad(jnp.power)(0.0, 0.0))
      nan
    """
    x, y = real_float_array("x", x), _real("y", y)
    _broadcast(("x", "y"), x, y)
    return _pow(x, y.astype(x.dtype))


@jax.custom_jvp
def _pow(x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.power(x, y)


@_pow.defjvp
def _pow_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[jax.Array, jax.Array]:
    x, y = (jnp.asarray(p) for p in primals)
    tx, ty = tangents
    out = jnp.power(x, y)
    y0 = y == 0
    dx = jnp.where(y0, 0.0, y * jnp.power(x, jnp.where(y0, 1.0, y) - 1))
    zero_base = (x == 0) & (y >= 0)
    dy = jnp.where(zero_base, 0.0, out * jnp.log(jnp.where(zero_base, 1.0, x)))
    return out, dx * tx + dy * ty


def atan2_like_torch(y: ArrayLike, x: ArrayLike) -> jax.Array:
    """``torch.atan2(y, x)``: gradient 0 at ``(0, 0)`` (JAX: NaN).

    Raises:
      TypeError: ``y`` or ``x`` is not a real array.
      ValueError: their shapes do not broadcast.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from funcdiff.parity import atan2_like_torch
      >>> round(float(atan2_like_torch(1.0, 1.0)), 4)
      0.7854
      >>> float(jax.grad(atan2_like_torch)(0.0, 0.0)), float(jax.grad(jnp.arctan2)(0.0, 0.0))
      (0.0, nan)
    """
    y, x = real_float_array("y", y), real_float_array("x", x)
    _broadcast(("y", "x"), y, x)
    return _atan2(y, x)


@jax.custom_jvp
def _atan2(y: jax.Array, x: jax.Array) -> jax.Array:
    return jnp.arctan2(y, x)


@_atan2.defjvp
def _atan2_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[jax.Array, jax.Array]:
    y, x = (jnp.asarray(p) for p in primals)
    ty, tx = tangents
    d = x * x + y * y
    zero = d == 0
    recip = jnp.where(zero, 0.0, 1.0 / jnp.where(zero, 1.0, d))
    return jnp.arctan2(y, x), (x * ty - y * tx) * recip


def xlogy_like_torch(x: ArrayLike, y: ArrayLike) -> jax.Array:
    """``torch.xlogy(x, y)``: ``d/dx`` is 0 where ``x == 0`` and ``y <= 0`` (JAX: ``log(y)``,
    so -inf at ``y = 0`` and NaN below).

    Raises:
      TypeError: ``x`` or ``y`` is not a real array.
      ValueError: their shapes do not broadcast.

    Examples:
      >>> import jax, jax.scipy.special as jss
      >>> from funcdiff.parity import xlogy_like_torch
      >>> float(xlogy_like_torch(0.0, 0.0)), round(float(xlogy_like_torch(2.0, 3.0)), 4)
      (0.0, 2.1972)
      >>> float(jax.grad(xlogy_like_torch)(0.0, 0.0)), float(jax.grad(jss.xlogy)(0.0, 0.0))
      (0.0, -inf)
    """
    x, y = real_float_array("x", x), real_float_array("y", y)
    _broadcast(("x", "y"), x, y)
    return _xlogy(x, y)


@jax.custom_jvp
def _xlogy(x: jax.Array, y: jax.Array) -> jax.Array:
    return jax.scipy.special.xlogy(x, y)


@_xlogy.defjvp
def _xlogy_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[jax.Array, jax.Array]:
    x, y = (jnp.asarray(p) for p in primals)
    tx, ty = tangents
    masked = (x == 0) & (y <= 0)
    dx = jnp.where(masked, 0.0, jnp.log(jnp.where(masked, 1.0, y)))
    return jax.scipy.special.xlogy(x, y), dx * tx + (x / y) * ty
