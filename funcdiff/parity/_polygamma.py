"""``digamma`` and ``polygamma`` that are right for negative ``x``, as PyTorch's are.

``jax.scipy.special.polygamma(n, x)`` is ``(-1)^(n+1) n! zeta(n + 1, x)`` summed as a Hurwitz
zeta series with no reflection, so below ``x`` of about -7 it is wrong, and so is the
derivative of ``jax.scipy.special.digamma`` (jax#37635, jax#11481; registry entries
``digamma-grad-negative`` and ``polygamma-negative``). PyTorch reflects for ``x < 0.5``. The
variants here reflect too, with the cotangent's derivatives as exact polynomials in ``cot``.

Examples:
  >>> round(float(polygamma_like_torch(1, -8.5)), 6)
  9.758607
"""

from __future__ import annotations

import functools
import numbers
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from funcdiff.parity._like_torch import real_float_array

__all__ = ["MAX_ORDER", "digamma_like_torch", "polygamma_like_torch"]

#: The largest ``n`` of :func:`polygamma_like_torch`: beyond it the reflection's cotangent term
#: cancels against the series so badly that float64 keeps no correct digit at negative ``x``.
MAX_ORDER = 19


def polygamma_like_torch(n: int, x: ArrayLike) -> jax.Array:
    """``torch.special.polygamma(n, x)``: right for negative ``x`` too, as PyTorch is.

    ``jax.scipy.special.polygamma`` sums the Hurwitz zeta series with no reflection, so below
    ``x`` of about -7 it is wrong (30 % at ``n = 1, x = -8.5``, sign and magnitude far off
    near -9.5, about 0 below -12; jax#37635, jax#11481). Here negative ``x`` goes through the
    reflection formula ``psi_n(x) = (-1)^n psi_n(1 - x) - pi d^n/dx^n cot(pi x)`` (the
    cotangent's derivatives as exact polynomials in ``cot``), which puts JAX's series at
    ``1 - x > 1`` where it is accurate; its derivative is ``polygamma_like_torch(n + 1, x)``.

    Args:
      n: the order, an integer in [0, 19] (0 is the digamma function; ``MAX_ORDER``).
      x: real array. At the poles 0, -1, -2, ... the result is +inf for odd ``n`` (the limit
        from both sides) and NaN for even ``n`` (no limit); PyTorch's own values there are
        inconsistent (finite, inf or NaN depending on ``n`` and the pole). Near zeros of
        ``psi_n`` (even ``n`` at half-integers far below 0) the relative accuracy is limited
        by cancellation, as in PyTorch.

    Raises:
      TypeError: ``n`` is not an integer, ``x`` not a real array.
      ValueError: ``n`` is negative or above 19.

    Examples:
      >>> round(float(polygamma_like_torch(1, -8.5)), 6)
      9.758607
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"Expected `n` to be an integer >= 0, got {n!r}.")
    if not 0 <= n <= MAX_ORDER:
        raise ValueError(
            f"Expected `n` to be an integer in [0, {MAX_ORDER}], got {n}: above {MAX_ORDER} the "
            "reflection formula keeps no correct digit for negative x (for x > 0 only, use "
            "jax.scipy.special.polygamma)."
        )
    return _polygamma(int(n), real_float_array("x", x))


def digamma_like_torch(x: ArrayLike) -> jax.Array:
    """``torch.special.digamma(x)`` with PyTorch's derivative (trigamma) for negative ``x``.

    The value is ``jax.scipy.special.digamma`` (right everywhere); JAX's derivative,
    ``polygamma(1, x)``, is wrong below about -7 (registry entry ``digamma-grad-negative``).

    Raises:
      TypeError: ``x`` is not a real array.

    Examples:
      >>> import jax
      >>> from funcdiff.parity import digamma_like_torch
      >>> round(float(digamma_like_torch(1.0)), 6)  # minus the Euler-Mascheroni constant
      -0.577215
      >>> round(float(jax.grad(digamma_like_torch)(-8.5)), 4)  # trigamma(-8.5), as PyTorch
      9.7586
      >>> round(float(jax.grad(jax.scipy.special.digamma)(-8.5)), 4)
      6.795
    """
    return _polygamma(0, real_float_array("x", x))


@functools.cache
def _cot_polynomial(n: int) -> tuple[int, ...]:
    """Integer coefficients (lowest first) of ``P_n`` with ``d^n/du^n cot(u) = P_n(cot u)``:
    ``P_0 = c``, ``P_{k+1} = -(1 + c^2) P_k'`` (each of one sign: no cancellation)."""
    poly = [0, 1]
    for _ in range(n):
        deriv = [i * a for i, a in enumerate(poly)][1:] or [0]
        nxt = [0] * (len(deriv) + 2)
        for i, a in enumerate(deriv):
            nxt[i] -= a
            nxt[i + 2] -= a
        poly = nxt
    return tuple(poly)


def _cot_derivative(n: int, x: jax.Array) -> jax.Array:
    """``d^n/dx^n pi cot(pi x) = pi^(n+1) P_n(cot(pi x))``, with ``cot(pi x)`` exact at
    half-integers (where the even derivatives vanish) and accurate near them."""
    u = x - jnp.round(x)  # cot has period 1; u in [-1/2, 1/2]
    near_pole = jnp.abs(u) <= 0.25
    pu = jnp.pi * jnp.where(near_pole, u, 0.25)
    v = jnp.pi * (0.5 - jnp.abs(jnp.where(near_pole, 0.25, u)))
    c = jnp.where(near_pole, 1 / jnp.tan(pu), jnp.sign(u) * jnp.tan(v))
    out = jnp.zeros_like(c)
    for a in reversed(_cot_polynomial(n)):  # as floats: past int32/int64 from n = 12/20 on
        out = out * c + float(a)
    return jnp.pi ** (n + 1) * out


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _polygamma(n: int, x: jax.Array) -> jax.Array:
    special = jax.scipy.special
    if n == 0:
        return special.digamma(x)
    neg = x < 0
    xs = jnp.where(neg, x, -0.5)  # the reflected branch only ever sees negative numbers
    sign = -1.0 if n % 2 else 1.0
    reflected = sign * special.polygamma(n, 1 - xs) - _cot_derivative(n, xs)
    out = jnp.where(neg, reflected, special.polygamma(n, jnp.where(neg, 1.0, x)))
    pole = (x <= 0) & (x == jnp.round(x))  # +inf from both sides for odd n, else no limit
    return jnp.where(pole, jnp.inf if n % 2 else jnp.nan, out)


@_polygamma.defjvp
def _polygamma_jvp(
    n: int, primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[jax.Array, jax.Array]:
    (x,), (t,) = primals, tangents
    return _polygamma(n, x), _polygamma(n + 1, x) * t
