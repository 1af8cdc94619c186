"""Boundary checks for the regression engine: data, parameters, settings, sharding.

Everything here is cheap host-side work on shapes and dtypes (a few microseconds), so that
``fit`` on the tutorial's 100 points stays dominated by the compiled run. The one check that
needs a pass over the data (NaN/inf) runs inside the jitted program and is reported by
:func:`raise_if_nonfinite_data` afterwards, so no extra dispatch is paid for it.

Decisions (documented in ``docs/regression.md``):

* Integer and boolean-free real arrays are **cast** to JAX's default float dtype (float32, or
  float64 under x64); complex and boolean arrays are refused.
* ``x`` and ``y`` of different float dtypes are promoted to their common dtype.
* A ``mesh`` whose first axis does not divide the number of rows is **refused** (padding
  would change the mean); the message says by how many rows to trim.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from funcdiff._config import x64_enabled
from funcdiff._validation import is_prng_key, short

__all__ = [
    "Data",
    "auto_mesh",
    "check_data",
    "check_params",
    "raise_if_nonfinite_data",
    "shard_rows",
]


class Data(NamedTuple):
    """Validated data: arrays (not copied when already JAX arrays of the right dtype)."""

    x: Any
    y: Any
    n: int
    p: int | None  # None for 1-D x (the tutorial's scalar slope)
    dtype: np.dtype


def _dtype_of(name: str, a: Any) -> np.dtype:
    dtype = getattr(a, "dtype", None)
    if dtype is None:
        raise TypeError(
            f"Expected `{name}` to be an array (numpy or jax), got {type(a).__name__}. "
            f"Convert it with jnp.asarray({name})."
        )
    if _is_real(dtype):
        return np.dtype(dtype)
    raise TypeError(f"Expected `{name}` to hold real numbers, got dtype {dtype}.")


@functools.lru_cache(maxsize=64)
def _is_real(dtype: Any) -> bool:
    try:
        dtype = np.dtype(dtype)
    except TypeError:  # PRNG key dtypes and other extended dtypes
        return False
    if dtype == np.bool_:
        return False
    return bool(jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer))


@functools.lru_cache(maxsize=64)
def _common_float(dx: np.dtype, dy: np.dtype, x64: bool) -> np.dtype:
    """Ints become the default float; floats promote; float64 only under x64."""
    default = np.dtype(np.float64 if x64 else np.float32)
    fx = dx if jnp.issubdtype(dx, jnp.floating) else default
    fy = dy if jnp.issubdtype(dy, jnp.floating) else default
    dtype = np.dtype(jnp.promote_types(fx, fy))
    if not x64 and dtype == np.float64:
        dtype = np.dtype(np.float32)
    return dtype


def _as_array(name: str, a: Any) -> Any:
    if isinstance(a, jax.Array | np.ndarray):
        return a
    if isinstance(a, list | tuple | numbers.Real) and not isinstance(a, bool):
        try:
            return np.asarray(a)
        except (TypeError, ValueError):
            pass
    raise TypeError(f"Expected `{name}` to be an array (numpy or jax), got {type(a).__name__}.")


def check_data(x: Any, y: Any) -> Data:
    """Checks ``x`` of shape (n,) or (n, p) and ``y`` of shape (n,).

    Integers are cast to the default float dtype; float inputs keep their dtype (promoted to a
    common one). Returns arrays of that dtype; the cast itself happens inside the jitted run.

    Raises:
      TypeError: not arrays, or complex/boolean/object dtype.
      ValueError: wrong ranks, different lengths, no rows, no columns.
    """
    x = _as_array("x", x)
    y = _as_array("y", y)
    dx, dy = _dtype_of("x", x), _dtype_of("y", y)
    if x.ndim not in (1, 2):
        raise ValueError(f"Expected `x` of shape (n,) or (n, p), got shape {tuple(x.shape)}.")
    if y.ndim != 1:
        hint = " Flatten it with y.ravel()." if y.ndim == 2 and y.shape[-1] == 1 else ""
        raise ValueError(f"Expected `y` of shape (n,), got shape {tuple(y.shape)}.{hint}")
    n = int(x.shape[0])
    if y.shape[0] != n:
        raise ValueError(
            f"Expected `x` and `y` to have the same number of rows, got {n} rows in `x` "
            f"and {y.shape[0]} in `y`."
        )
    if n == 0:
        raise ValueError("Expected at least one row of data, got empty `x` and `y`.")
    p = None if x.ndim == 1 else int(x.shape[1])
    if p == 0:
        raise ValueError(f"Expected `x` with at least one column, got shape {tuple(x.shape)}.")
    return Data(x, y, n, p, _common_float(dx, dy, x64_enabled()))


def param_shapes(p: int | None) -> dict[str, tuple[int, ...]]:
    """The shapes of the params dict for ``x`` with ``p`` columns (None: 1-D ``x``)."""
    return {"intercept": (), "coef": () if p is None else (p,)}


def check_params(params: Any, data: Data) -> dict[str, Any]:
    """Checks a ``{"intercept", "coef"}`` dict against the data; default zeros.

    Returns numpy/jax arrays cast to the data's dtype (host-side, cheap).

    Raises:
      TypeError: not a dict with exactly those keys, or non-real values.
      ValueError: wrong shapes or non-finite values.
    """
    shapes = param_shapes(data.p)
    if params is None:
        return {k: np.zeros(s, data.dtype) for k, s in shapes.items()}
    if not isinstance(params, dict) or set(params) != set(shapes):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise TypeError(
            f'Expected `params` to be a dict with keys ["coef", "intercept"], got {got}.'
        )
    out = {}
    for k, shape in shapes.items():
        v = params[k]
        v = v if isinstance(v, jax.Array | np.ndarray) else _as_array(f"params['{k}']", v)
        _dtype_of(f"params['{k}']", v)
        if tuple(v.shape) != shape:
            what = "x is 1-D" if data.p is None else f"x has {data.p} columns"
            raise ValueError(
                f"Expected `params['{k}']` of shape {shape} ({what}), got shape {tuple(v.shape)}."
            )
        out[k] = v.astype(data.dtype) if v.dtype != data.dtype else v
    if not all(bool(np.isfinite(np.asarray(v)).all()) for v in out.values()):
        raise ValueError(f"Expected finite `params`, got {out}.")
    return out


MAX_EPOCHS = 100_000_000
"""Most epochs one fit takes: the run keeps every epoch's loss (400 MB of float32 at this
limit) and counts epochs in int32."""


def check_epochs(epochs: Any, name: str = "epochs") -> int:
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral):
        raise TypeError(f"Expected `{name}` to be an integer >= 1, got {epochs!r}.")
    epochs = int(epochs)
    if epochs <= 0:
        raise ValueError(f"Expected `{name}` to be an integer >= 1, got {epochs}.")
    if epochs > MAX_EPOCHS:
        raise ValueError(
            f"Expected `{name}` to be an integer <= {MAX_EPOCHS:_}, got {int(epochs):_}: the "
            "run records every epoch's loss. Split the training into several fit calls, "
            "passing the last params on."
        )
    return int(epochs)


def check_log_every(log_every: Any) -> int:
    if isinstance(log_every, bool) or not isinstance(log_every, numbers.Integral):
        raise TypeError(f"Expected `log_every` to be an integer >= 1, got {log_every!r}.")
    log_every = int(log_every)
    if log_every <= 0:
        raise ValueError(f"Expected `log_every` to be an integer >= 1, got {log_every}.")
    if log_every > MAX_EPOCHS:
        raise ValueError(
            f"Expected `log_every` to be an integer <= {MAX_EPOCHS:_}, got {log_every:_}; "
            "anything >= epochs logs epoch 0 only."
        )
    return log_every


def check_batch(batch_size: Any, key: Any, n: int) -> tuple[int | None, Any]:
    """Validates ``batch_size`` (None: full batch) and its PRNG ``key``."""
    if batch_size is None:
        if key is not None and not is_prng_key(key) and not _raw_key(key):
            raise TypeError(
                f"Expected `key` to be a PRNG key such as jax.random.key(0) or None, got "
                f"{short(key, width=60)}."
            )
        return None, None
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"Expected `batch_size` to be an integer or None, got {batch_size!r}.")
    batch_size = int(batch_size)
    if batch_size < 1 or batch_size > n:
        raise ValueError(
            f"Expected `batch_size` between 1 and the number of rows ({n}), got {batch_size}."
        )
    if key is None:
        raise ValueError(
            "Expected a PRNG `key` with `batch_size` (minibatches are reshuffled each epoch), "
            "got None. Pass key=jax.random.key(0)."
        )
    if is_prng_key(key):
        if key.shape != ():
            raise ValueError(f"Expected a single PRNG `key`, got shape {key.shape}.")
    elif hasattr(key, "shape") and tuple(key.shape) == (2,) and key.dtype == np.uint32:
        key = jax.random.wrap_key_data(key)
    else:
        raise TypeError(f"Expected `key` to be a PRNG key such as jax.random.key(0), got {key!r}.")
    return batch_size, key


def _raw_key(key: Any) -> bool:
    return hasattr(key, "shape") and tuple(key.shape) == (2,) and key.dtype == np.uint32


def check_mesh(mesh: Any, n: int) -> Mesh | None:
    """Checks that ``mesh``'s first axis divides the rows (padding would change the mean)."""
    if mesh is None:
        return None
    if not isinstance(mesh, Mesh):
        raise TypeError(f"Expected `mesh` to be a jax.sharding.Mesh or None, got {mesh!r}.")
    axis = mesh.axis_names[0]
    size = int(mesh.shape[axis])
    if n % size:
        raise ValueError(
            f"Expected the number of rows to be divisible by the size of mesh axis "
            f"'{axis}' ({size}), got {n} rows. Trim {n % size} rows or use a mesh of a "
            f"size that divides {n} (rows are not padded: padding would change the mean)."
        )
    return mesh


def auto_mesh(mesh: Mesh) -> Mesh:
    """``mesh`` with every axis in GSPMD's automatic mode, whatever its axis types
    (``jax.make_mesh`` makes Explicit axes): XLA inserts the all-reduces of the mean and the
    gradient."""
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))


def shard_rows(data: Data, mesh: Mesh) -> tuple[jax.Array, jax.Array]:
    """Puts ``x`` and ``y`` on ``mesh``, rows split over its first axis (a no-op when
    already laid out that way, e.g. a global array built per process)."""
    mesh = auto_mesh(mesh)
    axis = mesh.axis_names[0]
    xs = NamedSharding(mesh, PartitionSpec(axis) if data.p is None else PartitionSpec(axis, None))
    ys = NamedSharding(mesh, PartitionSpec(axis))
    return jax.device_put(data.x, xs), jax.device_put(data.y, ys)


def raise_if_nonfinite_data(finite: Any) -> None:
    """Raises the boundary error for NaN/inf in the data (flag computed inside the jit)."""
    if not bool(finite):
        beyond = (
            ""
            if x64_enabled()
            else (
                " (values beyond float32's range, |v| > 3.4e38, become inf without x64: scale "
                "the data or run under funcdiff.scoped(x64=True))"
            )
        )
        raise ValueError(
            f"Expected finite `x` and `y`, got NaN or inf in the data{beyond}. Drop or impute "
            "those rows first (e.g. mask = np.isfinite(x).all(-1) & np.isfinite(y))."
        )
