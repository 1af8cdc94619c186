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
    "SEED_MAX",
    "SEED_MIN",
    "TRACER_ERRORS",
    "UserFunctionError",
    "as_float_array",
    "as_prng_key",
    "call_user",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_int",
    "check_optional_callable",
    "check_positive_float",
    "check_real",
    "check_seed",
    "first_line",
    "is_array_leaf",
    "is_float_dtype",
    "is_prng_key",
    "leaf_path_str",
    "short",
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
TRACER_ERRORS: tuple[type[BaseException], ...] = (
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


def first_line(exc: BaseException) -> str:
    """The first non-blank line of ``str(exc)``, stripped (``""`` for an empty message)."""
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else ""


def _jax_link(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        if "https://" in line:
            return line.strip()
    return ""


def _user_error(name: str, exc: BaseException) -> UserFunctionError:
    kind = type(exc).__name__
    first = first_line(exc)
    said = f"{kind}: {first}" if first else kind
    if isinstance(exc, TRACER_ERRORS) or "not a valid JAX type" in str(exc):
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


def is_array_leaf(leaf: Any) -> bool:
    """Whether ``leaf`` is an output leaf funcdiff accepts: an array, a tracer or a number."""
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
        if not is_array_leaf(leaf):
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


def check_optional_callable(name: str, value: Any) -> None:
    """Refuses a ``value`` that is neither None nor callable."""
    if value is not None and not callable(value):
        raise TypeError(f"Expected `{name}` to be callable or None, got {type(value).__name__}.")


def check_int(
    name: str, value: Any, *, minimum: int = 1, maximum: int | None = None, why: str = ""
) -> int:
    """Returns ``value`` as an int, refusing bools, floats and values outside the range.

    ``why`` is appended to the message for a value above ``maximum`` (what the limit protects).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Expected `{name}` to be an integer, got {short(value)}.")
    v = int(value)
    if v < minimum:
        raise ValueError(f"Expected `{name}` to be an integer >= {minimum}, got {v}.")
    if maximum is not None and v > maximum:
        raise ValueError(
            f"Expected `{name}` to be an integer <= {maximum:_}, got {v:_}{why and '; ' + why}."
        )
    return v


def check_bool(name: str, value: Any) -> bool:
    """Returns ``value`` as a bool, refusing anything but ``True``/``False`` (NumPy's included).

    A string such as ``"no"`` is truthy in Python: taking it as True would do the opposite of
    what was meant, so it is refused.
    """
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"Expected `{name}` to be True or False, got {short(value)}.")
    return bool(value)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Returns ``value`` when it is one of the strings ``choices``, else raises ValueError.

    Anything else (None, a list, an array, which ``in`` would compare elementwise) is refused
    with the same ValueError: the value is not one of the choices.
    """
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"Expected `{name}` to be one of {choices}, got {short(value)}.")
    return value


def check_real(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    exclusive: bool = False,
    allow_none: bool = False,
) -> float | None:
    """Returns ``value`` as a finite float (or None when ``allow_none``), within the bound.

    Accepts Python and NumPy real scalars (and 0-d arrays); refuses bools, strings, arrays with
    elements, NaN and inf, and values below ``minimum`` (or equal to it when ``exclusive``).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, np.ndarray | jax.Array) and value.shape == () and not is_prng_key(value):
        value = value.item()
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        what = "a number" + (" or None" if allow_none else "")
        raise TypeError(f"Expected `{name}` to be {what}, got {short(value)}.")
    v = float(value)
    bound = ""
    if minimum is not None:
        bound = f" {'>' if exclusive else '>='} {minimum:g}"
    if not np.isfinite(v) or (
        minimum is not None and (v < minimum or (exclusive and v == minimum))
    ):
        raise ValueError(f"Expected `{name}` to be a finite number{bound}, got {value!r}.")
    return v


SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1  # the int seeds jax.random.key accepts


def check_seed(name: str, seed: int | np.integer[Any] | numbers.Integral) -> int:
    """An int seed as ``int``; a ValueError unless it fits in 64 signed bits (what
    ``jax.random.key`` accepts, and every seeded function of funcdiff takes)."""
    if not SEED_MIN <= int(seed) <= SEED_MAX:
        raise ValueError(
            f"Expected `{name}` as an int seed to fit in 64 signed bits ({SEED_MIN} to "
            f"{SEED_MAX}), got {seed}. Use a smaller seed or pass jax.random.key(...)."
        )
    return int(seed)


def as_prng_key(name: str, key: Any, *, default: int | None = 0) -> jax.Array:
    """A PRNG key from ``key``: a key (typed or raw ``uint32[2]``), an int seed, or None.

    None gives ``jax.random.key(default)`` (refused when ``default`` is None). An int seed must
    fit in 64 signed bits, as ``jax.random.key`` needs.

    Raises:
      TypeError: not a key, int or None (bools and floats included); a batch of keys.
      ValueError: a seed outside the 64-bit range.
    """
    if key is None:
        if default is None:
            raise TypeError(
                f"Expected `{name}` to be a PRNG key such as jax.random.key(0), got None."
            )
        return jax.random.key(default)
    if isinstance(key, numbers.Integral) and not isinstance(key, bool | np.bool_):
        return jax.random.key(check_seed(name, key))
    if is_prng_key(key):
        if key.shape != ():
            raise TypeError(f"Expected `{name}` to be a single PRNG key, got shape {key.shape}.")
        return key
    if isinstance(key, jax.Array | np.ndarray) and key.shape == (2,) and key.dtype == np.uint32:
        return jax.random.wrap_key_data(jnp.asarray(key))
    raise TypeError(
        f"Expected `{name}` to be a PRNG key such as jax.random.key(0) or an int seed, got "
        f"{short(key)}."
    )


def short(value: Any, width: int = 80) -> str:
    """``repr(value)`` cut to one line of at most ``width`` characters (an array's repr can be
    huge)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= width else text[: width - 3] + "..."


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
