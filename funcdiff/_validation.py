"""Boundary checks shared by the public API: they turn bad input into clear, typed errors.

Every message says what was expected, what came, which argument it was, and how to fix it.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "as_float_array",
    "check_callable",
    "check_int",
    "check_positive_float",
    "is_float_dtype",
    "is_prng_key",
    "leaf_path_str",
]


def check_callable(name: str, value: Any) -> None:
    """Refuses a non-callable ``value`` passed as argument ``name``."""
    if not callable(value):
        raise TypeError(f"Expected `{name}` to be callable, got {type(value).__name__}.")


def check_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Returns ``value`` as an int, refusing bools, floats and values below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Expected `{name}` to be an integer, got {value!r}.")
    if value < minimum:
        raise ValueError(f"Expected `{name}` to be an integer >= {minimum}, got {value}.")
    return int(value)


def check_positive_float(name: str, value: Any) -> float:
    """Returns ``value`` as a finite float > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Expected `{name}` to be a positive number, got {value!r}.")
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"Expected `{name}` to be a finite number > 0, got {value!r}.")
    return v


def is_prng_key(x: Any) -> bool:
    """Whether ``x`` is a typed PRNG key array (``jax.random.key``)."""
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def is_float_dtype(dtype: Any) -> bool:
    """Whether ``dtype`` is a real floating dtype (float16 … float64, bfloat16)."""
    return bool(jnp.issubdtype(dtype, jnp.floating))


def as_float_array(name: str, x: Any, *, shape: tuple[int, ...] | None = None) -> jax.Array:
    """Converts ``x`` to a JAX array, checking its shape; ints are promoted to float.

    Raises:
      TypeError: ``x`` is not array-like, or is complex / boolean.
      ValueError: ``x`` has the wrong shape.
    """
    try:
        arr = jnp.asarray(x)
    except TypeError:
        raise TypeError(f"Expected `{name}` to be an array, got {type(x).__name__}.") from None
    if jnp.issubdtype(arr.dtype, jnp.complexfloating) or arr.dtype == jnp.bool_:
        raise TypeError(f"Expected `{name}` to hold real numbers, got dtype {arr.dtype}.")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    if shape is not None and arr.shape != shape:
        raise ValueError(f"Expected `{name}` of shape {shape}, got shape {arr.shape}.")
    return arr


def leaf_path_str(path: tuple[Any, ...]) -> str:
    """Renders a pytree key path like ``['w'][0]``; the root is ``<root>``."""
    return jax.tree_util.keystr(path) if path else "<root>"
