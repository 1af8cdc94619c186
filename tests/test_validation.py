"""The shared boundary helpers: a failing user function is reported as the user's function."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import funcdiff
from funcdiff._validation import UserFunctionError, call_user, user_function


def _branchy(x):
    if x > 0:  # Python `if` on a traced value: not jit-compatible
        return x
    return -x


def test_user_function_error_is_public_and_a_value_error():
    assert funcdiff.UserFunctionError is UserFunctionError
    assert issubclass(UserFunctionError, ValueError)


def test_user_exception_names_argument_type_and_first_line():
    def bad(x):
        raise ValueError("missing weight 'w'\nsecond line")

    with pytest.raises(UserFunctionError) as info:
        call_user("jax_fn", bad, 1.0)
    msg = str(info.value)
    assert "`jax_fn`" in msg and "ValueError" in msg and "missing weight" in msg
    assert "second line" not in msg
    assert info.value.argument == "jax_fn"
    assert isinstance(info.value.original, ValueError)
    assert info.value.__cause__ is info.value.original


def test_key_error_is_named():
    with pytest.raises(UserFunctionError, match=r"`f` raised KeyError: 'w'"):
        call_user("f", lambda p: p["w"], {"b": 1.0})


def test_tracer_error_says_jit_compatible_and_keeps_jax_link():
    with pytest.raises(UserFunctionError) as info:
        jax.jit(lambda x: call_user("f", _branchy, x))(1.0)
    msg = str(info.value)
    assert "`f`" in msg and "jit-compatible" in msg
    assert "TracerBoolConversionError" in msg and "https://" in msg


def test_returned_string_is_refused():
    with pytest.raises(UserFunctionError, match=r"`loss`.*return arrays.*str"):
        jax.jit(lambda x: call_user("loss", lambda _: "oops", x))(1.0)


def test_good_function_passes_through_and_nested_error_is_not_rewrapped():
    assert float(call_user("f", lambda x: {"a": 2 * x}, jnp.float32(3.0))["a"]) == 6.0
    inner = UserFunctionError("inner", argument="g")
    with pytest.raises(UserFunctionError) as info, user_function("f"):
        raise inner
    assert info.value is inner


def test_keyboard_interrupt_is_not_wrapped():
    with pytest.raises(KeyboardInterrupt), user_function("f"):
        raise KeyboardInterrupt
