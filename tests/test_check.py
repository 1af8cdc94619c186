"""Tests for funcdiff._check: check_grad in both modes, planted wrong gradients, kinks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcdiff
from funcdiff import GradCheckResult, _check, check_grad, scoped, seed


def planted(n: int, k: int, factor: float = 1.02):
    """sum(sin(x) * x) with a custom_vjp whose element ``k`` is off by ``factor``."""

    @jax.custom_vjp
    def f(x):
        return jnp.sum(jnp.sin(x) * x)

    def fwd(x):
        return f(x), x

    def bwd(x, g):
        d = jnp.sin(x) + x * jnp.cos(x)
        return (g * d * jnp.ones(n, x.dtype).at[k].set(factor),)

    f.defvjp(fwd, bwd)
    return f


def logsumexp_tanh(d: int, seed_: int = 0):
    a = jnp.asarray(np.random.default_rng(seed_).normal(size=(d, d)) / np.sqrt(d))
    return lambda x: jax.nn.logsumexp(jnp.tanh(a @ x))


@pytest.mark.parametrize(
    ("x64", "grad", "mode"),
    [
        (False, None, "full"),
        (False, seed.manual_grad, "full"),
        (False, seed.manual_grad, "directional"),
        (True, None, "full"),
        (True, None, "directional"),
    ],
)
def test_tutorial_checks_pass(x64, grad, mode):
    with scoped(x64=x64):
        r = check_grad(seed.composite, jnp.asarray(seed.POINT), grad=grad, mode=mode)
        assert r.ok, str(r)
        assert r.mode == mode
        r.assert_ok()


PLANTED = planted(10, 3)
UNPLANTED = planted(10, 3, 1.0)


@pytest.mark.parametrize("x64", [False, True])
@pytest.mark.parametrize("mode", ["full", "directional"])
def test_planted_wrong_custom_vjp_fails_and_is_named(x64, mode):
    with scoped(x64=x64):
        f = PLANTED
        x = jnp.linspace(0.1, 2.0, 10)
        r = check_grad(f, x, mode=mode)
        assert not r.ok
        assert r.worst is not None and r.worst.status == "WRONG"
        if mode == "full":
            assert r.worst.path == "<root>" and r.worst.index == (3,)
            assert [e.index for e in r.failures] == [(3,)]
            np.testing.assert_allclose(r.max_rel_error, 0.02 / 1.02, rtol=0.05)
        else:
            assert "VJP" in {e.path for e in r.failures}
            assert "JVP not checked" in r.message  # custom_vjp has no forward mode
        with pytest.raises(AssertionError, match=r"autodiff = jax\.grad"):
            r.assert_ok()
        # the unplanted rule passes
        assert check_grad(UNPLANTED, x, mode=mode).ok


def test_wrong_manual_grad_fails_right_one_passes():
    x = jnp.asarray(seed.POINT)
    wrong = lambda x: seed.manual_grad(x) * jnp.asarray([1.0, 0.98])
    r = check_grad(seed.composite, x, grad=wrong)
    assert not r.ok and r.worst.index == (1,)
    assert "grad=<lambda>" in str(r)
    rd = check_grad(seed.composite, x, grad=wrong, mode="directional")
    assert not rd.ok and {"VJP", "transpose"} <= {e.path for e in rd.failures}


@pytest.mark.parametrize("x64", [False, True])
@pytest.mark.parametrize("mode", ["full", "directional"])
def test_real_functions_pass(x64, mode):
    with scoped(x64=x64):
        if x64:
            f = logsumexp_tanh(30)
            x = jax.random.normal(jax.random.key(1), (30,))
            assert check_grad(f, x, mode=mode, key=jax.random.key(3)).ok
        else:
            tree = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": (jnp.asarray(0.3),)}
            assert check_grad(_tree_fun, tree, mode=mode).ok


def _tree_fun(t):
    return jnp.sum(jnp.exp(0.5 * t["w"]) * jnp.cos(t["b"][0])) + t["b"][0] ** 4


def test_pytree_worst_names_leaf_path_and_index():
    def f(t):
        return jnp.sum(t["w"] ** 2) + jnp.sum(t["b"] ** 3)

    def grad(t):
        gw = 2 * t["w"]
        return {"w": gw.at[1, 2].multiply(1.05), "b": 3 * t["b"] ** 2}

    t = {"w": jnp.ones((2, 3)), "b": jnp.arange(3.0)}
    r = check_grad(f, t, grad=grad)
    assert not r.ok
    assert (r.worst.path, r.worst.index) == ("['w']", (1, 2))
    rows = {row.path: row for row in r.leaves}
    assert rows["['w']"].failed == 1 and rows["['b']"].failed == 0
    assert len(r.steps) == 2


def test_kink_is_reported_not_failed():
    r = check_grad(lambda x: jnp.sum(jnp.abs(x)), jnp.asarray([0.0, 1.0, -2.0]))
    assert r.ok
    assert [(k.path, k.index) for k in r.kinks] == [("<root>", (0,))]
    assert "non-differentiable" in str(r)
    # a kink that central differences happen to match (max at a tie) is still reported
    tie = check_grad(jnp.max, jnp.asarray([1.0, 1.0, 0.5]))
    assert tie.ok and {k.index for k in tie.kinks} == {(0,), (1,)}
    # a "gradient" outside the one-sided derivatives at the kink is still wrong
    bad = check_grad(jax.nn.relu, jnp.asarray(0.0), grad=lambda x: jnp.asarray(3.0))
    assert not bad.ok


def test_non_float_leaves_skipped_and_listed():
    t = {"a": jnp.asarray([0.5, 1.5]), "n": 3, "flag": jnp.asarray(True), "key": jax.random.key(0)}
    f = lambda t: jnp.sum(jnp.sin(t["a"])) * t["n"] + jax.random.uniform(t["key"])
    r = check_grad(f, t)
    assert r.ok
    assert len(r.skipped) == 3
    assert any("['n']" in s and "int" in s for s in r.skipped)
    assert "skipped" in str(r)
    assert check_grad(f, t, mode="directional").ok


def test_integer_input_type_error_names_leaf():
    with pytest.raises(TypeError, match=r"int32 at <root>"):
        check_grad(lambda x: jnp.sum(x), jnp.arange(3))


def test_non_scalar_output():
    with pytest.raises(ValueError, match="fd_jacobian"):
        check_grad(jnp.sin, jnp.ones(3))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "both"}, "`mode`"),
        ({"num_directions": 0}, "`num_directions`"),
        ({"rtol": -1.0}, "`rtol`"),
        ({"atol": float("nan")}, "`atol`"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_grad(seed.composite, jnp.asarray(seed.POINT), **kwargs)


def test_bad_key():
    with pytest.raises(TypeError, match="`key`"):
        check_grad(seed.composite, jnp.asarray(seed.POINT), mode="directional", key="k")


@pytest.mark.parametrize("mode", ["full", "directional"])
def test_nan_is_a_failure_never_a_pass(mode):
    r = check_grad(jnp.sum, jnp.asarray([1.0, jnp.nan]), mode=mode)
    assert not r.ok and "not finite" in r.message
    r = check_grad(lambda x: jnp.sum(jnp.log(x)), jnp.asarray([1.0, -1.0]), mode=mode)
    assert not r.ok and "nan" in r.message.lower()
    # NaN only in the gradient
    r = check_grad(lambda x: jnp.sum(x**2), jnp.ones(2), grad=lambda x: x * jnp.nan, mode=mode)
    assert not r.ok


def test_explicit_tolerances_override():
    x = jnp.asarray(seed.POINT)
    wrong = lambda x: seed.manual_grad(x) * jnp.asarray([1.0, 0.98])
    assert check_grad(seed.composite, x, grad=wrong, rtol=0.05).ok
    r = check_grad(seed.composite, x, rtol=0.0, atol=0.0)
    assert r.rtol == 0.0 and r.atol == 0.0


def test_half_precision_upcast_warns():
    with pytest.warns(UserWarning, match="float16"):
        r = check_grad(lambda x: jnp.sum(jnp.sin(x)), jnp.ones(3, jnp.float16))
    assert r.ok


def test_no_recompilation_for_repeated_calls():
    traces = []

    def f(x):
        traces.append(1)
        return jnp.sum(jnp.sin(x) ** 2)

    for mode in ("full", "directional"):
        check_grad(f, jnp.ones(4), mode=mode)
        n = len(traces)
        for k in range(3):
            check_grad(f, jnp.full(4, 0.3 * k), mode=mode, key=k)
        assert len(traces) == n, mode
    before = _check._full_core_small._cache_size()  # 4 elements: the quick-run program
    check_grad(f, jnp.full(4, 2.0))
    assert _check._full_core_small._cache_size() == before > 0


def test_result_record():
    r = check_grad(seed.composite, jnp.asarray(seed.POINT))
    assert isinstance(r, GradCheckResult)
    d = r.to_dict()
    assert (d["ok"] is True and d["worst"]["index"] == list(r.worst.index)) or d["worst"]["index"]
    assert set(d) >= {"ok", "mode", "max_abs_error", "max_rel_error", "worst", "leaves", "steps"}
    with pytest.raises(AttributeError):
        r.ok = False  # type: ignore[misc]


def test_taylor_test_right_passes_wrong_fails():
    from funcdiff import taylor_test

    with scoped(x64=True):
        x = jnp.asarray(seed.POINT)
        right = taylor_test(seed.composite, x)
        assert right.ok and abs(right.order - 2.0) < 0.1
        wrong = taylor_test(seed.composite, x, grad=lambda x: seed.manual_grad(x) * 1.02)
        assert not wrong.ok and abs(wrong.order - 1.0) < 0.2
        assert "FAILED" in str(wrong)
    # linear functions: every remainder is round-off, a pass with a note
    lin = taylor_test(lambda x: jnp.sum(3.0 * x), jnp.ones(3))
    assert lin.ok and "round-off" in lin.message
    with pytest.raises(ValueError, match="`num_steps`"):
        taylor_test(seed.composite, jnp.asarray(seed.POINT), num_steps=2)


def test_consistency_catches_impure_function():
    from funcdiff import check_consistency

    r = check_consistency(seed.composite, jnp.asarray(seed.POINT))
    assert r.ok and len(r.rows) == 4
    calls = {"n": 0}

    def impure(x):
        calls["n"] += 1
        return jnp.sum(x) * calls["n"]

    bad = check_consistency(impure, jnp.ones(3))
    assert not bad.ok
    with pytest.raises(AssertionError, match="eager vs jit"):
        bad.assert_ok()


@pytest.mark.parametrize(
    "call",
    [
        lambda x: funcdiff.fd_grad(3, x),
        lambda x: funcdiff.fd_jacobian("f", x),
        lambda x: funcdiff.fd_jvp(None, x, x),
        lambda x: funcdiff.fd_hvp(3, x, x),
        lambda x: funcdiff.check_grad(3, x),
        lambda x: funcdiff.taylor_test(3, x),
        lambda x: funcdiff.check_consistency(3, x),
    ],
)
def test_non_callable_fun_is_a_type_error(call):
    with pytest.raises(TypeError, match=r"Expected `fun` to be callable, got "):
        call(jnp.array([0.5, 0.75]))


@pytest.mark.parametrize("x64", [False, True])
def test_both_full_programs_catch_a_planted_error(x64):
    """Full mode compiles a quick-run program up to QUICK_RUN_MAX_SIZE elements and the
    optimised one above: each passes the right rule and names the planted element (10% off:
    in float32 the differences of a 64-term sum carry a round-off bound of about 2%)."""
    with scoped(x64=x64):
        for n in (_check.QUICK_RUN_MAX_SIZE, _check.QUICK_RUN_MAX_SIZE + 16):
            x = jnp.linspace(0.1, 2.0, n)
            k = n // 2  # x near 1.05, where the derivative is largest (1.39)
            r = check_grad(planted(n, k, 1.1), x)
            assert not r.ok and r.worst.index == (k,), (n, str(r))
            assert [e.index for e in r.failures] == [(k,)]
            assert check_grad(planted(n, k, 1.0), x).ok, n


def test_one_shot_jit_compiles_cpu_calls_with_its_options():
    """CPU arguments go to the program compiled with the one-shot options; its values equal
    XLA's default compilation."""
    from funcdiff._config import QUICK_RUN_COMPILER_OPTIONS, OneShotJit

    def fn(x, n):
        return jnp.tanh(x) * n + jax.nn.logsumexp(x)

    j = OneShotJit(fn, QUICK_RUN_COMPILER_OPTIONS, static_argnames="n")
    x = jnp.linspace(-2.0, 2.0, 33)
    got = j(x, 3)
    assert j._cpu._cache_size() == 1
    if QUICK_RUN_COMPILER_OPTIONS:  # jaxlib >= 0.10: two programs, the CPU one used here
        assert j._default._cache_size() == 0
        assert "xla_backend_optimization_level" in QUICK_RUN_COMPILER_OPTIONS
    assert j.__name__ == "fn" and j._cache_size() == 1
    np.testing.assert_allclose(got, jax.jit(fn, static_argnames="n")(x, 3), rtol=1e-6)
    # the Gaussian directions of directional mode are jax.random.normal's
    key = jax.random.key(3)
    np.testing.assert_allclose(
        _check._directions(key, (4, 5), jnp.float32),
        jax.random.normal(key, (4, 5), jnp.float32),
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    ("x64", "x", "caught", "missed"),
    [
        (True, [0.3, 1.7, -2.2], 1e-7, 1e-8),  # rtol 1e-8: was 1e-5 caught with rtol 1e-6
        (False, [2.0, 0.05, 3.0], 1e-3, 1e-4),  # rtol 1e-4: was 1e-2 with rtol 1e-3
    ],
)
def test_default_tolerance_sets_the_smallest_error_caught(x64, x, caught, missed):
    """One gradient element scaled by 1 + delta: the defaults catch ``caught``, not ``missed``
    (below the reference's resolution there), and pass the right gradient."""
    f = lambda v: jnp.sum(jnp.sin(v) * v) + jnp.sum(1.0 / v)

    def ok(delta):
        with scoped(x64=x64):
            plant = lambda v: jax.grad(f)(v) * (1 + delta * (jnp.arange(3) == 1))
            return check_grad(f, jnp.asarray(x), grad=plant).ok

    assert _check.default_rtol(jnp.float64 if x64 else jnp.float32) == (1e-8 if x64 else 1e-4)
    assert ok(0.0) and not ok(caught) and ok(missed)


def test_a_sum_that_cancels_is_no_false_alarm():
    """sum(tanh(100 x)) on a symmetric grid is 4e-16: the fixed Richardson reference bounded
    its round-off by |f| and called elements 4 and 5 (exact 100 sech^2(11.1) ~ 1e-7) wrong;
    now its estimate is floored by its gap to the ladder. A planted 1% error (9e-10, above
    what differences of O(1) terms resolve here, 2.5e-10) is still caught."""
    f = lambda v: jnp.sum(jnp.tanh(100 * v))
    with scoped(x64=True):
        x = jnp.linspace(-1.0, 1.0, 10)
        assert check_grad(f, x).ok
        plant = lambda v: jax.grad(f)(v) * (1 + 1e-2 * (jnp.arange(10) == 4))  # 9e-10 off
        r = check_grad(f, x, grad=plant)
    assert not r.ok and [e.index for e in r.failures] == [(4,)], str(r)
