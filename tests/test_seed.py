"""The tutorial's numbers, from funcdiff.seed, in float32 and float64, with and without jit."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funcdiff import scoped, seed

TUTORIAL_GRAD = (1.3633, 0.1912)  # printed by the tutorial, 4 decimals


def _maybe_jit(fn, use_jit):
    return jax.jit(fn) if use_jit else fn


@pytest.mark.parametrize("use_jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("x64", [False, True], ids=["f32", "f64"])
def test_grad_matches_tutorial_print(use_jit, x64):
    with scoped(x64=x64):
        grad = _maybe_jit(jax.grad(seed.composite), use_jit)(jnp.asarray(seed.POINT))
        assert grad.dtype == (jnp.float64 if x64 else jnp.float32)
        np.testing.assert_allclose(np.asarray(grad), TUTORIAL_GRAD, atol=1e-4)


@pytest.mark.parametrize("use_jit", [False, True], ids=["eager", "jit"])
def test_manual_grad_equals_autodiff_float64(use_jit):
    with scoped(x64=True):
        x = jnp.asarray(seed.POINT)
        auto = _maybe_jit(jax.grad(seed.composite), use_jit)(x)
        manual = _maybe_jit(seed.manual_grad, use_jit)(x)
        np.testing.assert_allclose(np.asarray(auto), np.asarray(manual), rtol=0, atol=1e-6)
        np.testing.assert_allclose(np.asarray(auto), np.asarray(manual), rtol=1e-14)


def test_values_are_the_closed_form():
    with scoped(x64=True):
        x0, x1 = seed.POINT
        y = seed.f(jnp.asarray(seed.POINT))
        assert isinstance(y, tuple) and len(y) == 2
        np.testing.assert_allclose([float(y[0]), float(y[1])], [np.log(x0 * x1), np.sin(x1)])
        np.testing.assert_allclose(float(seed.g(y)), np.log(x0 * x1) * np.sin(x1))
        np.testing.assert_allclose(float(seed.g(jnp.array([2.0, 3.0]))), 6.0)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    x0=st.floats(min_value=0.05, max_value=20.0),
    x1=st.floats(min_value=0.05, max_value=20.0),
)
def test_manual_grad_is_the_gradient_everywhere(x0, x1):
    with scoped(x64=True):
        x = jnp.array([x0, x1])
        np.testing.assert_allclose(
            np.asarray(jax.grad(seed.composite)(x)),
            np.asarray(seed.manual_grad(x)),
            rtol=1e-10,
            atol=1e-12,
        )


def test_manual_grad_detects_a_wrong_gradient():
    """The comparison above can fail: a gradient with one term dropped is caught."""
    with scoped(x64=True):
        x = jnp.asarray(seed.POINT)
        wrong = jnp.stack([jnp.sin(x[1]) / x[0], jnp.sin(x[1]) / x[1]])  # log*cos term dropped
        assert not np.allclose(np.asarray(wrong), np.asarray(seed.manual_grad(x)), atol=1e-6)


def test_vmap_over_points():
    xs = jnp.array([[0.5, 0.75], [1.0, 2.0], [3.0, 0.1]])
    grads = jax.vmap(jax.grad(seed.composite))(xs)
    chex.assert_shape(grads, (3, 2))
    np.testing.assert_allclose(grads, jax.vmap(seed.manual_grad)(xs), rtol=1e-5)


@pytest.mark.parametrize("fn", [seed.f, seed.composite, seed.manual_grad])
@pytest.mark.parametrize("bad", [jnp.ones(3), jnp.ones((2, 2)), jnp.float32(1.0)])
def test_wrong_shape_is_a_value_error_naming_the_shape(fn, bad):
    with pytest.raises(ValueError, match=r"Expected `x` of shape \(2,\), got shape"):
        fn(bad)


def test_wrong_shape_under_jit_is_still_a_value_error():
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        jax.jit(seed.composite)(jnp.ones(4))


def test_g_refuses_a_triple():
    with pytest.raises(ValueError, match="pair of scalars"):
        seed.g((1.0, 2.0, 3.0))


def test_regression_data_shapes_and_model():
    with scoped(x64=True):
        x, y = seed.regression_data(jax.random.key(0), n=20_000)
        chex.assert_shape([x, y], (20_000,))
        chex.assert_type([x, y], jnp.float64)
        resid = np.asarray(y - x)
        assert abs(resid.mean() - 2.0) < 0.05 and abs(resid.std() - 1.0) < 0.05
        assert abs(np.asarray(x).std() - 1.0) < 0.05


def test_regression_data_is_deterministic_per_key():
    a = seed.regression_data(jax.random.key(3), 100)
    b = seed.regression_data(jax.random.PRNGKey(3), 100)
    c = seed.regression_data(jax.random.key(4), 100)
    chex.assert_trees_all_equal(a, b)
    assert not np.allclose(a[0], c[0])
    chex.assert_type(a, jnp.float32)


@pytest.mark.parametrize("n", [0, -5])
def test_regression_data_refuses_bad_n(n):
    with pytest.raises(ValueError, match="`n`"):
        seed.regression_data(jax.random.key(0), n)


@pytest.mark.parametrize("key", [0, "seed", np.zeros(3)])
def test_regression_data_refuses_a_non_key(key):
    with pytest.raises(TypeError, match="`key`"):
        seed.regression_data(key, 10)


def test_pytorch_gives_the_same_tutorial_gradient():
    torch = pytest.importorskip("torch")
    x = torch.tensor(seed.POINT, dtype=torch.float64, requires_grad=True)
    y = torch.log(x[0] * x[1]) * torch.sin(x[1])  # the tutorial's g(f(x))
    y.backward()
    with scoped(x64=True):
        ours = np.asarray(jax.grad(seed.composite)(jnp.asarray(seed.POINT)))
    np.testing.assert_allclose(ours, x.grad.numpy(), rtol=1e-14)
    np.testing.assert_allclose(x.grad.numpy(), TUTORIAL_GRAD, atol=1e-4)
