"""Boundary checks shared by the public API: they turn bad input into clear, typed errors.

Every message says what was expected, what came, which argument it was, and how to fix it.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "UserFunctionError",
    "as_float_array",
    "call_user",
    "check_callable",
    "check_int",
    "check_positive_float",
    "is_float_dtype",
    "is_prng_key",
    "leaf_path_str",
    "user_function",
]


class UserFunctionError(ValueError):
    """A function the user passed to funcdiff raised, or is not one funcdiff can trace.

    Raised instead of the user's own exception so that the message says *whose* code failed:
    it names the argument (`` `f` ``, `` `jax_fn` ``, `` `loss` ``, ...), the original
    exception's type and first line, and, for JAX tracer errors (``ConcretizationTypeError``,
    ``TracerBoolConversionError``, ...), that funcdiff needs a jit-compatible function, keeping
    JAX's link to the explanation. The original exception is chained (``__cause__``) and kept
    as ``original``. A subclass of ``ValueError``: the function passed as an argument is a bad
    value for it.

    Attributes:
      argument: the name of the argument that held the function, e.g. ``"f"``.
      original: the exception the user's function raised (``None`` for a bad return value).

    Examples:
      >>> try:
      ...     call_user("f", lambda x: x["a"], 1.0)
      ... except UserFunctionError as e:
      ...     print(e)
      The function passed as `f` raised TypeError: 'float' object is not subscriptable.
    """

    def __init__(self, message: str, *, argument: str, original: BaseException | None = None):
        super().__init__(message)
        self.argument = argument
        self.original = original


# JAX's errors for a Python function that cannot be traced: control flow or conversions on a
# traced value, a leaked tracer, a boolean mask of traced shape.
_TRACER_ERRORS: tuple[type[BaseException], ...] = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.UnexpectedTracerError,
    jax.errors.NonConcreteBooleanIndexError,
)

_JIT_HINT = (
    "funcdiff traces it with jax.jit/jax.grad, so it must be jit-compatible: no Python `if`, "
    "`float()`, `int()` or NumPy calls on its array arguments (use jnp.where, lax.cond, jnp.*)"
)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else ""


def _jax_link(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        if "https://" in line:
            return line.strip()
    return ""


def _user_error(name: str, exc: BaseException) -> UserFunctionError:
    kind = type(exc).__name__
    first = _first_line(exc)
    said = f"{kind}: {first}" if first else kind
    if isinstance(exc, _TRACER_ERRORS) or "not a valid JAX type" in str(exc):
        link = _jax_link(exc)
        message = f"The function passed as `{name}` is not jit-compatible ({said}). {_JIT_HINT}."
        if link:
            message += f" {link}"
    else:
        message = f"The function passed as `{name}` raised {said}"
        message += "" if message.endswith((".", "!", "?")) else "."
    return UserFunctionError(message, argument=name, original=exc)


@contextlib.contextmanager
def user_function(name: str) -> Iterator[None]:
    """Reports an exception raised inside the block as the user's function ``name`` failing.

    Wrap exactly the call to the user's function (inside the traced code is fine: tracing is
    Python), not funcdiff's own work, so funcdiff's bugs are never blamed on the user. An
    exception that already is a :class:`UserFunctionError` passes through unchanged, and so do
    ``KeyboardInterrupt`` and other non-``Exception`` errors.

    Raises:
      UserFunctionError: the block raised; chained from the original exception.

    Examples:
      >>> with user_function("f"):
      ...     pass
    """
    try:
        yield
    except UserFunctionError:
        raise
    except Exception as exc:
        raise _user_error(name, exc) from exc


def _is_array_leaf(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array | np.ndarray | np.generic | numbers.Number)


def call_user(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Calls the user's ``fn(*args, **kwargs)`` under :func:`user_function`; checks the output.

    Every leaf of the returned pytree must be an array or a number (a tracer counts): a string,
    ``None`` leaf or other object is reported as the function returning the wrong type.

    Raises:
      UserFunctionError: ``fn`` raised, or returned something that is not arrays.

    Examples:
      >>> call_user("f", lambda x: 2 * x, 3.0)
      6.0
    """
    with user_function(name):
        out = fn(*args, **kwargs)
    leaves = jax.tree_util.tree_leaves(out, is_leaf=lambda v: v is None)
    for leaf in leaves:
        if not _is_array_leaf(leaf):
            raise UserFunctionError(
                f"Expected the function passed as `{name}` to return arrays, got a value of "
                f"type {type(leaf).__name__}: funcdiff needs a jit-compatible function that "
                "returns JAX arrays (or a pytree of them).",
                argument=name,
            )
    return out


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
