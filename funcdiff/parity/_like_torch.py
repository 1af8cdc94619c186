"""JAX variants of ops whose derivative (or value) differs from PyTorch's at a kink or default.

Each function computes what the PyTorch op computes, value and gradient, including at the
points listed in the divergence registry (:func:`funcdiff.parity.divergences`). Away from those
points they agree with the plain JAX op. All are pure JAX: jit, vmap and grad work.

Examples:
  >>> import jax
  >>> from funcdiff.parity import abs_like_torch
  >>> float(jax.grad(abs_like_torch)(0.0)), float(jax.grad(jax.numpy.abs)(0.0))
  (0.0, 1.0)
"""

from __future__ import annotations

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


@jax.custom_jvp
def abs_like_torch(x: ArrayLike) -> jax.Array:
    """``|x|`` with PyTorch's derivative ``sign(x)``: 0 at ``x = 0`` (JAX's ``abs`` gives 1)."""
    return jnp.abs(x)


@abs_like_torch.defjvp
def _abs_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[jax.Array, jax.Array]:
    (x,), (t,) = primals, tangents
    return jnp.abs(x), jnp.sign(x) * t


def clip_like_torch(
    x: ArrayLike, min: ArrayLike | None = None, max: ArrayLike | None = None
) -> jax.Array:
    """``torch.clamp(x, min, max)``: the gradient is 1 on the closed interval, bounds included.

    ``jnp.clip`` gives 0.5 at a bound and ``lax.clamp`` 0; PyTorch passes the whole gradient to
    ``x`` when ``min <= x <= max`` and to an array bound only strictly outside.
    """
    out = jnp.asarray(x)
    if min is not None:
        out = jnp.where(out < min, min, out)
    if max is not None:
        out = jnp.where(out > max, max, out)
    return out


def hardtanh_like_torch(x: ArrayLike, min_val: float = -1.0, max_val: float = 1.0) -> jax.Array:
    """``F.hardtanh``: gradient 1 strictly inside ``(min_val, max_val)``, 0 at the bounds."""
    x = jnp.asarray(x)
    return jnp.where(x <= min_val, min_val, jnp.where(x >= max_val, max_val, x))


@jax.custom_jvp
def hard_sigmoid_like_torch(x: ArrayLike) -> jax.Array:
    """``F.hardsigmoid``: slope ``float32(1/6)`` on ``(-3, 3)`` in every dtype, 0 at the bounds.

    PyTorch's CPU backward kernel multiplies by ``1.0f / 6.0f`` even in float64, so its float64
    gradient is ``0.1666666716...``; ``jax.nn.hard_sigmoid`` gives ``1/6`` exactly.
    """
    return jax.nn.hard_sigmoid(x)


@hard_sigmoid_like_torch.defjvp
def _hard_sigmoid_jvp(
    primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[jax.Array, jax.Array]:
    (x,), (t,) = primals, tangents
    x = jnp.asarray(x)
    slope = jnp.asarray(np.float32(1 / 6), dtype=x.dtype)
    inside = (x > -3) & (x < 3)
    return jax.nn.hard_sigmoid(x), jnp.where(inside, slope, 0.0).astype(x.dtype) * t


def leaky_relu_like_torch(x: ArrayLike, negative_slope: float = 0.01) -> jax.Array:
    """``F.leaky_relu``: gradient ``negative_slope`` at 0 (JAX's ``leaky_relu`` gives 1)."""
    x = jnp.asarray(x)
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
      ValueError: another ``ord``.
    """
    x = jnp.asarray(x)
    if ord in (None, 2, 2.0, "fro"):
        return _safe_sqrt(jnp.sum(x * x, axis=axis, keepdims=keepdims))
    if ord in (1, 1.0):
        return jnp.sum(abs_like_torch(x), axis=axis, keepdims=keepdims)
    if ord in (jnp.inf, float("inf"), "inf"):
        return jnp.max(abs_like_torch(x), axis=axis, keepdims=keepdims)
    raise ValueError(f"Expected `ord` to be None, 2, 'fro', 1 or inf, got {ord!r}.")


def softplus_like_torch(x: ArrayLike, beta: float = 1.0, threshold: float = 20.0) -> jax.Array:
    """``F.softplus(x, beta, threshold)``: linear (``x``, gradient 1) where ``beta*x > threshold``.

    ``jax.nn.softplus`` is ``logaddexp(x, 0)`` everywhere, which differs from PyTorch above
    the threshold by ``log1p(exp(-x))`` (about ``1.25e-9`` at ``x = 20.5``).
    """
    x = jnp.asarray(x)
    return jnp.where(x * beta > threshold, x, jax.nn.softplus(beta * x) / beta)


def gelu_like_torch(x: ArrayLike, approximate: str = "none") -> jax.Array:
    """``F.gelu(x, approximate)``: PyTorch's default is the exact erf form, JAX's the tanh one.

    Raises:
      ValueError: ``approximate`` is not ``"none"`` or ``"tanh"``.
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"Expected `approximate` to be 'none' or 'tanh', got {approximate!r}.")
    return jax.nn.gelu(x, approximate=approximate == "tanh")


def var_like_torch(
    x: ArrayLike,
    axis: int | tuple[int, ...] | None = None,
    *,
    correction: int = 1,
    keepdims: bool = False,
) -> jax.Array:
    """``torch.var(x, dim=axis, correction=correction)``: Bessel-corrected by default.

    ``jnp.var`` defaults to ``ddof=0``; PyTorch to ``correction=1``.
    """
    return jnp.var(x, axis=axis, ddof=correction, keepdims=keepdims)


def std_like_torch(
    x: ArrayLike,
    axis: int | tuple[int, ...] | None = None,
    *,
    correction: int = 1,
    keepdims: bool = False,
) -> jax.Array:
    """``torch.std(x, dim=axis, correction=correction)``: ``correction=1`` by default, and a
    gradient of 0 (JAX: NaN) where every element is equal."""
    return _safe_sqrt(var_like_torch(x, axis, correction=correction, keepdims=keepdims))


def max_like_torch(x: ArrayLike, axis: int) -> jax.Array:
    """``torch.max(x, dim=axis).values``: the gradient goes to the first maximal element only.

    ``jnp.max`` (like ``torch.amax``) splits it evenly among tied maxima.
    """
    x = jnp.asarray(x)
    idx = jnp.expand_dims(jnp.argmax(x, axis=axis), axis)
    return jnp.squeeze(jnp.take_along_axis(x, idx, axis=axis), axis)


def min_like_torch(x: ArrayLike, axis: int) -> jax.Array:
    """``torch.min(x, dim=axis).values``: the gradient goes to the first minimal element only."""
    x = jnp.asarray(x)
    idx = jnp.expand_dims(jnp.argmin(x, axis=axis), axis)
    return jnp.squeeze(jnp.take_along_axis(x, idx, axis=axis), axis)


def median_like_torch(x: ArrayLike) -> jax.Array:
    """``torch.median(x)`` (no ``dim``): the lower of the two middle values for an even count,
    with the gradient shared evenly by every element equal to the median.

    ``jnp.median`` averages the two middle values and routes the gradient through the sort.
    """
    x = jnp.ravel(jnp.asarray(x))
    m = jax.lax.stop_gradient(jnp.sort(x)[(x.size - 1) // 2])
    hit = x == m
    return jnp.sum(jnp.where(hit, x, 0.0)) / jnp.sum(hit)


def fmax_like_torch(x: ArrayLike, y: ArrayLike) -> jax.Array:
    """``torch.fmax``: on a tie the gradient goes to ``x`` (JAX's ``fmax`` sends it to ``y``)."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    return jnp.where((x >= y) | jnp.isnan(y), x, y)


def pow_like_torch(x: ArrayLike, y: ArrayLike) -> jax.Array:
    """``torch.pow(x, y)`` with PyTorch's derivatives: ``d/dx`` is 0 where ``y == 0`` (JAX's
    float power gives NaN at ``0**0.0``), and ``d/dy`` is 0 where ``x == 0`` and ``y >= 0``.

    ``y`` is taken in ``x``'s float dtype (an integer exponent becomes a float one).
    """
    x = jnp.asarray(x)
    x = x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(jnp.result_type(float))
    return _pow(x, jnp.asarray(y, dtype=x.dtype))


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


@jax.custom_jvp
def atan2_like_torch(y: ArrayLike, x: ArrayLike) -> jax.Array:
    """``torch.atan2(y, x)``: gradient 0 at ``(0, 0)`` (JAX: NaN)."""
    return jnp.arctan2(y, x)


@atan2_like_torch.defjvp
def _atan2_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[jax.Array, jax.Array]:
    y, x = (jnp.asarray(p) for p in primals)
    ty, tx = tangents
    d = x * x + y * y
    zero = d == 0
    recip = jnp.where(zero, 0.0, 1.0 / jnp.where(zero, 1.0, d))
    return jnp.arctan2(y, x), (x * ty - y * tx) * recip


@jax.custom_jvp
def xlogy_like_torch(x: ArrayLike, y: ArrayLike) -> jax.Array:
    """``torch.xlogy(x, y)``: ``d/dx`` is 0 where ``x == 0`` and ``y <= 0`` (JAX: ``log(y)``,
    so -inf at ``y = 0`` and NaN below)."""
    return jax.scipy.special.xlogy(x, y)


@xlogy_like_torch.defjvp
def _xlogy_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[jax.Array, jax.Array]:
    x, y = (jnp.asarray(p) for p in primals)
    tx, ty = tangents
    masked = (x == 0) & (y <= 0)
    dx = jnp.where(masked, 0.0, jnp.log(jnp.where(masked, 1.0, y)))
    return jax.scipy.special.xlogy(x, y), dx * tx + (x / y) * ty
