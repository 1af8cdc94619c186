r"""The tutorial's functions, as pure, jit-compatible JAX functions.

The tutorial (``autodiff_with_pytorch``) differentiates

.. math::

   f(x_1, x_2) = (\log(x_1 x_2), \sin x_2), \qquad g(y_1, y_2) = y_1 y_2,

so that :math:`g(f(x)) = \log(x_1 x_2)\sin x_2` and

.. math::

   \nabla (g\circ f)(x) = \begin{pmatrix} \sin(x_2)/x_1 \\
   \sin(x_2)/x_2 + \log(x_1 x_2)\cos x_2 \end{pmatrix},

which is :math:`(1.3633, 0.1912)` at :math:`x = (0.5, 0.75)`. It then fits
:math:`y = 2 + x + \varepsilon` by SGD; :func:`regression_data` draws that data set.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> from funcdiff import seed
  >>> x = jnp.array([0.5, 0.75])
  >>> [round(float(v), 4) for v in jax.grad(seed.composite)(x)]
  [1.3633, 0.1912]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from funcdiff._validation import as_float_array, check_int, is_prng_key

__all__ = ["POINT", "composite", "f", "g", "manual_grad", "regression_data"]

POINT: tuple[float, float] = (0.5, 0.75)
"""The point at which the tutorial evaluates the gradient."""


def _pair(name: str, x: ArrayLike | Sequence[ArrayLike]) -> tuple[jax.Array, jax.Array]:
    """Accepts an array of shape (2,) or a pair of scalars; returns the two components."""
    if isinstance(x, tuple | list):
        if len(x) != 2:
            raise ValueError(
                f"Expected `{name}` to be an array of shape (2,) or a pair of scalars, "
                f"got a {type(x).__name__} of length {len(x)}."
            )
        a = as_float_array(f"{name}[0]", x[0], shape=())
        b = as_float_array(f"{name}[1]", x[1], shape=())
        return a, b
    arr = as_float_array(name, x, shape=(2,))
    return arr[0], arr[1]


def f(x: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """The tutorial's inner function, ``f(x) = (log(x0*x1), sin(x1))``.

    Args:
      x: array of shape ``(2,)``.

    Returns:
      A tuple of two scalars, as the tutorial's ``f`` returns a tuple.

    Raises:
      ValueError: ``x`` is not of shape ``(2,)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from funcdiff import seed
      >>> [round(float(v), 4) for v in seed.f(jnp.array([0.5, 0.75]))]
      [-0.9808, 0.6816]
    """
    x0, x1 = _pair("x", x)
    return jnp.log(x0 * x1), jnp.sin(x1)


def g(y: ArrayLike | Sequence[ArrayLike]) -> jax.Array:
    """The tutorial's outer function, ``g(y) = y0*y1``.

    Args:
      y: array of shape ``(2,)`` or a pair of scalars (the output of :func:`f`).

    Raises:
      ValueError: ``y`` is neither shape ``(2,)`` nor a pair of scalars.

    Examples:
      >>> from funcdiff import seed
      >>> float(seed.g((2.0, 3.0)))
      6.0
    """
    y0, y1 = _pair("y", y)
    return y0 * y1


def composite(x: ArrayLike) -> jax.Array:
    """``g(f(x)) = log(x0*x1) * sin(x1)``, the scalar function the tutorial differentiates.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from funcdiff import seed
      >>> x = jnp.array([0.5, 0.75])
      >>> round(float(seed.composite(x)), 4)
      -0.6686
      >>> [round(float(v), 4) for v in jax.grad(seed.composite)(x)]
      [1.3633, 0.1912]
    """
    return g(f(x))


def manual_grad(x: ArrayLike) -> jax.Array:
    """The closed-form gradient of :func:`composite`, derived by hand in the tutorial.

    ``(sin(x1)/x0, sin(x1)/x1 + log(x0*x1)*cos(x1))``

    Raises:
      ValueError: ``x`` is not of shape ``(2,)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from funcdiff import seed
      >>> x = jnp.array([0.5, 0.75])
      >>> [round(float(v), 4) for v in seed.manual_grad(x)]
      [1.3633, 0.1912]
      >>> bool(jnp.allclose(seed.manual_grad(x), jax.grad(seed.composite)(x)))
      True
    """
    x0, x1 = _pair("x", x)
    return jnp.stack([jnp.sin(x1) / x0, jnp.sin(x1) / x1 + jnp.log(x0 * x1) * jnp.cos(x1)])


def regression_data(key: Any, n: int = 100, *, dtype: Any = None) -> tuple[jax.Array, jax.Array]:
    """Draws the tutorial's regression data: ``x ~ N(0, 1)``, ``y = 2 + x + N(0, 1)``.

    The stream is JAX's, so the numbers differ from the tutorial's PyTorch draw.

    Args:
      key: a PRNG key (``jax.random.key(seed)`` or ``jax.random.PRNGKey(seed)``).
      n: number of points, >= 1.
      dtype: float dtype of the arrays; defaults to JAX's default float (float32, or float64
        under x64).

    Returns:
      ``(x, y)``, each of shape ``(n,)``.

    Raises:
      TypeError: ``key`` is not a PRNG key, or ``n`` is not an integer.
      ValueError: ``n < 1``.

    Examples:
      >>> import jax
      >>> from funcdiff import seed
      >>> x, y = seed.regression_data(jax.random.key(0), n=5)
      >>> x.shape, y.shape
      ((5,), (5,))
    """
    n = check_int("n", n, minimum=1)
    if not (
        is_prng_key(key)
        or (hasattr(key, "shape") and key.shape == (2,) and key.dtype == jnp.uint32)
    ):
        raise TypeError(f"Expected `key` to be a PRNG key such as jax.random.key(0), got {key!r}.")
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    kx, ke = jax.random.split(key)
    x = jax.random.normal(kx, (n,), dtype=dtype)
    y = 2 + x + jax.random.normal(ke, (n,), dtype=dtype)
    return x, y
