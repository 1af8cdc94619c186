"""Tests for the accurate schemes (issue 13): scale-aware steps, O(h^6) Richardson, the
adaptive ladder, the complex step, and check_grad's sharper reference."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcdiff import _fd, _fd_adaptive, check_grad, fd_grad, fd_hvp, fd_jacobian, fd_jvp, scoped

CASES = [  # (name, f, x, f')
    ("exp", jnp.exp, 1.0, np.exp(1.0)),
    ("1/x near 0", lambda x: 1.0 / x, 0.01, -1e4),
    ("log near 0", jnp.log, 0.01, 100.0),
    ("x**99", lambda x: x**99, 1.01, 99 * 1.01**98),
    ("tanh(100x)", lambda x: jnp.tanh(100 * x), 0.005, 100 / np.cosh(0.5) ** 2),
]


def _rel(fun, x, exact, scheme):
    g, err = fd_grad(lambda v: jnp.sum(fun(v)), jnp.array([x]), scheme=scheme, return_error=True)
    actual = abs(float(g[0]) - exact)
    assert actual <= float(err[0]), "the error estimate must bound the true error"
    return actual / abs(exact)


@pytest.mark.parametrize(("scheme", "bound"), [("richardson", 1e-12), ("adaptive", 1e-11)])
def test_richardson_and_adaptive_accuracy_float64(scheme, bound):
    with scoped(x64=True):
        rel = {name: _rel(f, x, d, scheme) for name, f, x, d in CASES}
    # richardson was 1e-3 at x = 0.01 (steps eps^(1/5) * max(1, |x|): h/x = 0.07), then 9e-8
    # on x**99 (fixed step eps^(1/7) * |x|, scale 1/99); its ladder now picks the step: 1e-13
    assert max(rel.values()) < bound, rel
    assert rel["1/x near 0"] < 1e-12 and rel["log near 0"] < 1e-11, rel


def test_richardson_picks_its_step_per_coordinate():
    # fixed steps could not serve all three: exp at 0 wants a large step (1.6e-12 with the
    # floor 2**-7), x**99 at 1 a small one (9e-8), Rosenbrock (a polynomial) large ones (6e-14)
    rosen = lambda v: jnp.sum(100.0 * (v[1:] - v[:-1] ** 2) ** 2 + (1.0 - v[:-1]) ** 2)
    with scoped(x64=True):
        assert _rel(jnp.exp, 0.0, 1.0, "richardson") < 1e-13
        assert _rel(lambda x: x**99, 1.0, 99.0, "richardson") < 1e-13
        x = jnp.array([-1.2, 1.0])
        g, err = fd_grad(rosen, x, scheme="richardson", return_error=True)
        exact = np.asarray(jax.grad(rosen)(x))
        actual = np.abs(np.asarray(g) - exact)
        assert np.all(actual <= np.asarray(err))
        assert np.max(actual / np.abs(exact)) < 1e-13
        jv = fd_jvp(jnp.exp, jnp.array([0.5, 1.0]), jnp.array([1.0, -2.0]), scheme="richardson")
        np.testing.assert_allclose(jv, np.exp([0.5, 1.0]) * [1.0, -2.0], rtol=1e-12)


@pytest.mark.parametrize("x0", [1e-5, 1e-6])
def test_richardson_beyond_its_ladder_says_so(x0, monkeypatch):
    # 1/x at x = 1e-6: every window of the ladder (steps down to 4.8e-7) straddles the pole
    # or is too coarse; the result is wrong, and the estimate must say so. Without the regime
    # check a window far from the pole agrees with itself and reports a small error for a
    # 6% (1e-5) or 100% (1e-6) one.
    def run(regime):
        ladder = _fd_adaptive.LADDERS["richardson"]._replace(regime=regime)
        monkeypatch.setitem(_fd_adaptive.LADDERS, "richardson", ladder)
        f = lambda v: jnp.sum(1.0 / v)  # a new function: a new trace with this ladder
        g, err = fd_grad(f, jnp.array([x0]), scheme="richardson", return_error=True)
        return abs(float(g[0]) + 1 / x0**2), float(err[0])

    with scoped(x64=True):
        actual, err = run(True)
        assert actual <= err
        actual, err = run(False)
        assert actual > 10 * err  # the planted failure: what the check catches


def test_richardson_float32_across_a_pole_is_bounded():
    # the fixed float32 step (eps^(1/5) * max(1, |x|) = 0.04) stepped across the pole of 1/x
    # at x = 0.01: a 24x error reported as 21x
    f = lambda v: jnp.sum(1.0 / v)
    g, err = fd_grad(f, jnp.array([0.01], jnp.float32), scheme="richardson", return_error=True)
    assert g.dtype == jnp.float32
    actual = abs(float(g[0]) + 1e4)
    assert actual <= float(err[0])
    assert actual / 1e4 < 1e-4


def test_complex_step_is_machine_precision():
    with scoped(x64=True):
        rel = {name: _rel(f, x, d, "complex") for name, f, x, d in CASES}
        assert max(rel.values()) <= 1e-15, rel
        jac = fd_jacobian(lambda v: jnp.sin(v) * v[0], jnp.array([0.3, 2.0]), scheme="complex")
        np.testing.assert_allclose(
            jac, jax.jacobian(lambda v: jnp.sin(v) * v[0])(jnp.array([0.3, 2.0])), rtol=1e-15
        )


@pytest.mark.parametrize(
    ("fun", "what"),
    [
        (lambda x: jnp.sum(jnp.abs(x)), "abs"),
        (lambda x: jnp.sum(jnp.maximum(x, 0.5)), "max"),
        (lambda x: jnp.sum(jnp.where(x > 0, x, -x)), "applied"),
        (lambda x: jnp.sum(x.real**2), "real"),
    ],
)
def test_complex_step_refuses_non_holomorphic(fun, what):
    with pytest.raises(ValueError, match=rf"holomorphic.*{what}"):
        fd_grad(fun, jnp.ones(3), scheme="complex")


def test_complex_step_refuses_half_and_int():
    with pytest.raises(TypeError, match="float16"):
        fd_grad(jnp.sum, jnp.ones(3, jnp.float16), scheme="complex")
    with pytest.raises(TypeError, match="int"):
        fd_grad(jnp.sum, jnp.ones(3, jnp.int32), scheme="complex")


def test_adaptive_skips_rungs_across_the_pole_and_along_directions():
    with scoped(x64=True):
        # the ladder's top rungs (h = 0.5) step across 0: they lose on their estimate
        assert _rel(lambda x: 1.0 / x, 1e-3, -1e6, "adaptive") < 1e-9
        jv = fd_jvp(jnp.exp, jnp.array([0.5, 1.0]), jnp.array([1.0, -2.0]), scheme="adaptive")
        np.testing.assert_allclose(jv, np.exp([0.5, 1.0]) * [1.0, -2.0], rtol=1e-11)


def test_check_grad_float32_false_alarm_is_gone():
    # autodiff 288.87 is right; the old central/Richardson reference gave 26.1 (WRONG)
    r = check_grad(lambda x: jnp.sum(jnp.sin(x) * x), jnp.array([289.0], jnp.float32))
    assert r.ok, str(r)


def _planted(x64, x, delta):
    f = lambda v: jnp.sum(jnp.sin(v) * v) + jnp.sum(1.0 / v)
    g = jax.grad(f)
    with scoped(x64=x64):
        plant = lambda v: g(v) * (1 + delta * (jnp.arange(3) == 1))
        return check_grad(f, jnp.asarray(x), grad=plant).ok


@pytest.mark.parametrize(
    ("x64", "x", "caught"),
    [(True, [289.0, 0.01, 3.0], 1e-5), (False, [2.0, 0.05, 3.0], 1e-2)],
)
def test_check_grad_catches_smaller_planted_errors(x64, x, caught):
    # before: float64 caught 1e-4 (not 1e-5); float32 missed even 10% at 1/x, x = 0.05
    assert _planted(x64, x, 0.0)
    assert not _planted(x64, x, caught)


@pytest.mark.parametrize("x0", [1e-3, 1e-6])
def test_domain_keeps_log_and_sqrt_inside(x0):
    f = lambda v: jnp.sum(jnp.log(v) + jnp.sqrt(v))
    exact = 1 / x0 + 0.5 / np.sqrt(x0)
    with scoped(x64=True):
        for scheme, bound in (("adaptive", 1e-12), ("richardson", 1e-3), ("central", 1e-2)):
            g, err = fd_grad(
                f, jnp.array([x0]), scheme=scheme, domain=(0.0, None), return_error=True
            )
            actual = abs(float(g[0]) - exact)
            assert actual <= float(err[0]), scheme
            assert actual / exact < bound, (scheme, actual / exact)


def test_domain_one_sided_on_the_bound_and_bad_domains():
    with scoped(x64=True):
        cube = lambda v: jnp.sum(v**3)
        g, err = fd_grad(
            cube, jnp.array([1.0, -1.0]), scheme="adaptive", domain=(-1.0, 1.0), return_error=True
        )
        np.testing.assert_allclose(g, [3.0, 3.0], rtol=1e-12)
        assert np.all(np.asarray(err) < 1e-10)
    with pytest.raises(ValueError, match=r"`domain`.*x = 2"):
        fd_grad(cube, jnp.array([2.0]), domain=(0.0, 1.0))
    with pytest.raises(ValueError, match="`domain`"):
        fd_grad(cube, jnp.array([0.3]), domain=(0.5, 0.2))
    with pytest.raises(ValueError, match=r"boundary of `domain`.*adaptive"):
        fd_grad(cube, jnp.array([0.0]), domain=(0.0, None))
    with pytest.raises(TypeError, match="`domain`"):
        fd_grad(cube, jnp.array([0.0]), domain="positive")
    tree = lambda d: jnp.sum(d["b"] ** 3)
    np.testing.assert_allclose(
        fd_grad(tree, {"b": jnp.array([0.5])}, domain=({"b": 0.0}, None))["b"], [0.75], rtol=1e-3
    )
    with pytest.raises(ValueError, match="`domain`'s low bound"):  # one leaf, other structure
        fd_grad(tree, {"b": jnp.array([0.5])}, domain=({"zzz": 0.0}, None))
    with pytest.raises(ValueError, match="complex"):
        fd_grad(cube, jnp.array([0.5]), scheme="complex", domain=(0.0, 1.0))


def test_warm_fast_path_keeps_every_check():
    f = lambda v: jnp.sum(jnp.log(v))
    np.testing.assert_allclose(fd_grad(f, jnp.array([1.0, 2.0])), [1.0, 0.5], rtol=1e-4)
    np.testing.assert_allclose(fd_grad(f, jnp.array([4.0, 2.0])), [0.25, 0.5], rtol=1e-4)
    with pytest.raises(ValueError, match="finite near `x`"):  # log(1e-9 - h) is NaN
        fd_grad(f, jnp.array([1e-9, 2.0]))
    with pytest.raises(ValueError, match="`x` to be finite"):
        fd_grad(f, jnp.array([np.nan, 2.0]))


def test_warm_fast_path_of_jacobian_jvp_and_hvp():
    """A repeated fd_jacobian/fd_jvp/fd_hvp runs one cached program (tens of microseconds at
    d = 10): the same numbers as the checked first call, pytrees included, and every error of
    the checked path still raised."""
    f = lambda p: {"s": jnp.sin(p["a"]) * p["b"][0], "t": jnp.sum(jnp.log(p["b"]))}
    x = {"a": jnp.array([0.3, 1.2]), "b": jnp.array([2.0, 0.5, 1.5])}
    v = {"a": jnp.array([1.0, -1.0]), "b": jnp.array([0.5, 0.0, 2.0])}
    with scoped(x64=True):
        x = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), x)
        v = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), v)
        first = fd_jacobian(f, x, return_error=True)
        again = fd_jacobian(f, x, return_error=True)
        chex.assert_trees_all_equal(first, again)
        chex.assert_trees_all_close(first[0], jax.jacobian(f)(x), atol=1e-8)
        key = ("jacobian", f)
        assert any(k[:2] == key for k in _fd._FAST_SPECS)  # the second call took the fast path
        jv = [fd_jvp(f, x, v) for _ in range(2)]
        chex.assert_trees_all_equal(*jv)
        assert any(k[:2] == ("jvp", f) for k in _fd._FAST_SPECS)
        chex.assert_trees_all_close(jv[0], jax.jvp(f, (x,), (v,))[1], atol=1e-8)
        g = lambda p: jnp.sum(jnp.sin(p["a"])) * jnp.sum(p["b"] ** 2)
        hv = [fd_hvp(g, x, v) for _ in range(2)]
        chex.assert_trees_all_equal(*hv)
        assert any(k[:2] == ("jvp", _fd.grad_of(g)) for k in _fd._FAST_SPECS)
        chex.assert_trees_all_close(hv[0], jax.jvp(jax.grad(g), (x,), (v,))[1], atol=1e-6)
        # the checks of the checked path still apply to a cached function
        bad = {"a": jnp.array([0.3, 1.2]), "b": jnp.array([2.0, 1e-12, 1.5])}
        with pytest.raises(ValueError, match="finite near `x`"):  # log(1e-12 - h)
            fd_jacobian(f, bad)
        with pytest.raises(ValueError, match="`v` to have the structure"):
            fd_jvp(f, x, {"a": v["a"], "c": v["b"]})
        with pytest.raises(ValueError, match="`v` to be finite"):
            fd_jvp(f, x, {"a": v["a"], "b": jnp.array([np.nan, 0.0, 1.0])})


@pytest.mark.parametrize("power", [1.5, 2.5])
def test_one_sided_ladder_at_a_rough_endpoint_says_so(power, monkeypatch):
    """x**1.5 and x**2.5 at 0 (domain (0, inf)): D(h) = h**(power - 1), not a series in h, so
    the one-sided extrapolation assumed the wrong powers and reported a third (x**1.5) of its
    error; windows whose gaps shrink at the wrong rate are now scored by the tail."""

    def run(order):
        monkeypatch.setattr(_fd_adaptive, "_order", order)
        f = lambda v: jnp.sum(v**power)  # a new function: traced with this `_order`
        g, err = fd_grad(
            f, jnp.array([0.0]), scheme="adaptive", domain=(0.0, None), return_error=True
        )
        return abs(float(g[0])), float(err[0])  # the derivative at 0 is 0

    with scoped(x64=True):
        actual, err = run(_fd_adaptive._order)
        assert actual <= err
        actual, err = run(lambda d, cand, total, *a: total)  # the planted failure
        assert actual > err
