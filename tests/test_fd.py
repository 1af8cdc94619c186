"""Tests for funcdiff._fd: schemes, steps, error estimates, pytrees, caching, bad input."""

from __future__ import annotations

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcdiff
from funcdiff import _fd, fd_grad, fd_hvp, fd_jacobian, fd_jvp, scoped, seed

SCHEMES = ("forward", "backward", "central", "richardson")


@pytest.mark.parametrize("x64", [False, True])
def test_tutorial_forward_difference(x64):
    with scoped(x64=x64):
        x = jnp.asarray(seed.POINT)
        g = fd_grad(seed.composite, x, scheme="forward", step=1e-3)
        assert g.dtype == x.dtype
        np.testing.assert_allclose(np.asarray(g), [1.3619, 0.1919], atol=1e-4)


@pytest.mark.parametrize("x64", [False, True])
def test_tutorial_central_difference_matches_manual(x64):
    with scoped(x64=x64):
        x = jnp.asarray(seed.POINT)
        g = fd_grad(seed.composite, x, scheme="central", step=1e-3)
        np.testing.assert_allclose(np.asarray(g), np.asarray(seed.manual_grad(x)), atol=1e-4)


def _smooth(x):
    return jnp.sum(jnp.sin(x) * jnp.exp(0.1 * x)) + jnp.log1p(x[0] ** 2)


# the float32 cases cost a compile each: one-sided and extrapolated cover the two step rules
@pytest.mark.parametrize(
    ("scheme", "x64", "bound"),
    [
        ("forward", True, 1e-6),
        ("backward", True, 1e-6),
        ("central", True, 1e-8),
        ("richardson", True, 1e-8),
        ("forward", False, 0.05),
        ("richardson", False, 0.05),
    ],
)
def test_schemes_within_their_error_estimate(scheme, x64, bound):
    with scoped(x64=x64):
        x = jnp.asarray([0.3, -1.2, 2.5, 10.0])
        g, err = fd_grad(_smooth, x, scheme=scheme, return_error=True)
        actual = np.abs(np.asarray(g - jax.grad(_smooth)(x)))
        assert err.shape == x.shape
        assert np.all(np.asarray(err) > 0)
        assert np.all(actual <= np.asarray(err))  # the estimate bounds the true error
        assert float(jnp.max(err)) < bound  # and is not absurdly loose
        if x64:  # dtype-aware default steps reach the scheme's accuracy
            expected = {"forward": 1e-7, "backward": 1e-7, "central": 1e-8, "richardson": 1e-9}
            assert actual.max() < expected[scheme]


def test_pytree_input():
    with scoped(x64=True):
        t = {"a": jnp.ones(3), "b": (jnp.arange(2.0) + 1, jnp.asarray(0.5))}
        f = lambda t: jnp.sum(jnp.sin(t["a"])) * jnp.prod(t["b"][0]) + t["b"][1] ** 3
        g = fd_grad(f, t)
        chex.assert_trees_all_close(g, jax.grad(f)(t), atol=1e-8)
        chex.assert_trees_all_equal_shapes_and_dtypes(g, t)


def test_jacobian_pytree_output_matches_jax_layout():
    with scoped(x64=True):
        t = {"a": jnp.ones(3), "b": jnp.arange(2.0) + 1}
        h = lambda t: {"u": jnp.sin(t["a"]) * t["b"][0], "v": (t["b"] ** 2, jnp.sum(t["a"]))}
        jac, err = fd_jacobian(h, t, return_error=True)
        ref = jax.jacobian(h)(t)
        chex.assert_trees_all_equal_shapes(jac, ref)
        chex.assert_trees_all_equal_shapes(err, ref)
        chex.assert_trees_all_close(jac, ref, atol=1e-8)


def test_jvp_and_hvp():
    with scoped(x64=True):
        x = jnp.asarray([0.2, 0.7, -1.1])
        v = jnp.asarray([1.0, -2.0, 0.5])
        h = lambda x: (jnp.tanh(x) * x[0], jnp.sum(x**3))
        val, err = fd_jvp(h, x, v, return_error=True)
        ref = jax.jvp(h, (x,), (v,))[1]
        chex.assert_trees_all_close(val, ref, atol=1e-8)
        assert all(bool(jnp.all(e >= 0)) for e in jax.tree.leaves(err))
        f = lambda x: jnp.sum(jnp.sin(x) * x**2)
        hv = fd_hvp(f, x, v)
        ref_hv = jax.jvp(jax.grad(f), (x,), (v,))[1]
        np.testing.assert_allclose(np.asarray(hv), np.asarray(ref_hv), atol=1e-7)


def test_wrong_answers_are_visible():
    """The FD gradient is a real measurement: it disagrees with a wrong closed form."""
    with scoped(x64=True):
        x = jnp.asarray(seed.POINT)
        wrong = seed.manual_grad(x) * jnp.asarray([1.0, 1.02])
        g, err = fd_grad(seed.composite, x, return_error=True)
        assert float(jnp.abs(g - wrong)[1]) > 100 * float(err[1])


def test_half_precision_is_upcast_with_warning():
    x = jnp.asarray([0.5, 0.75], dtype=jnp.float16)
    with pytest.warns(UserWarning, match="upcast to float32"):
        g = fd_grad(lambda x: jnp.sum(x.astype(jnp.float32) ** 2), x)
    assert g.dtype == jnp.float32  # computed and returned in float32 (documented)
    np.testing.assert_allclose(np.asarray(g, dtype=np.float32), [1.0, 1.5], rtol=1e-2)


@pytest.mark.parametrize("scheme", ["central", "richardson", "adaptive", "complex"])
def test_large_input_is_chunked(monkeypatch, scheme):
    """Batches of perturbed copies (cache-sized on a CPU) give what one batch gives."""
    x = np.linspace(-1.0, 1.0, 40)
    maps = []
    real_map = jax.lax.map
    with scoped(x64=True):
        whole = fd_grad(lambda x: jnp.sum(jnp.exp(x)), x, scheme=scheme, return_error=True)
        monkeypatch.setattr(
            jax.lax, "map", lambda *a, **k: maps.append(k["batch_size"]) or real_map(*a, **k)
        )
        monkeypatch.setattr(_fd, "_CPU_CHUNK_ELEMENTS", 7 * 40 * 6)  # a fresh lambda: retraced
        g, err = fd_grad(lambda x: jnp.sum(jnp.exp(x)), x, scheme=scheme, return_error=True)
    assert maps and min(maps) > 1  # in batches (the last one shorter), not one vmap
    assert np.all(np.abs(np.asarray(g) - np.exp(x)) <= np.asarray(err))
    np.testing.assert_allclose(
        np.asarray(g), np.asarray(whole[0]), rtol=0, atol=np.asarray(err).max()
    )


def test_no_recompilation_at_a_new_point():
    traces = []

    def f(x):
        traces.append(1)
        return jnp.sum(jnp.tanh(x) ** 2)

    fd_grad(f, jnp.ones(5))
    n = len(traces)
    for k in range(3):
        fd_grad(f, jnp.full(5, 0.1 * k))
    assert len(traces) == n
    fd_grad(f, jnp.ones(5), step=1e-3)  # a user step is a traced value too...
    m = len(traces)
    fd_grad(f, jnp.ones(5), step=2e-3)
    assert len(traces) == m


@pytest.mark.parametrize("bad", ["sideways", "CENTRAL", None])
def test_unknown_scheme(bad):
    with pytest.raises(ValueError, match="`scheme`"):
        fd_grad(jnp.sum, jnp.ones(2), scheme=bad)


@pytest.mark.parametrize("step", [0.0, -1e-3, float("nan")])
def test_bad_step(step):
    with pytest.raises(ValueError, match="`step`"):
        fd_grad(jnp.sum, jnp.ones(2), step=step)


def test_integer_input_names_leaf_and_dtype():
    with pytest.raises(TypeError, match=r"int32 at \['n'\]"):
        fd_grad(lambda t: jnp.sum(t["w"]), {"w": jnp.ones(2), "n": jnp.arange(2)})
    with pytest.raises(TypeError, match="int32"):
        fd_grad(jnp.sum, jnp.arange(3))


def test_non_scalar_output_points_to_fd_jacobian():
    with pytest.raises(ValueError, match="fd_jacobian"):
        fd_grad(jnp.sin, jnp.ones(3))


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf])
def test_non_finite_point_or_value(bad):
    with pytest.raises(ValueError, match="finite"):
        fd_grad(jnp.sum, jnp.asarray([1.0, bad]))
    with pytest.raises(ValueError, match="finite"):
        fd_grad(lambda x: jnp.sum(jnp.log(x)), jnp.asarray([1.0, -1.0]))


def test_jvp_direction_structure_checked():
    with pytest.raises(ValueError, match="`v`"):
        fd_jvp(jnp.sin, jnp.ones(3), jnp.ones(2))


def test_public_names():
    for name in ("fd_grad", "fd_jvp", "fd_jacobian", "fd_hvp"):
        assert name in funcdiff.__all__
    assert list(funcdiff.__all__) == sorted(funcdiff.__all__)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fd_grad(jnp.sum, jnp.ones(2))
