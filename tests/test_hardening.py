"""Issue 14, library half: each bad input it names is refused clearly, nothing wrong is ok.

One test per item of the issue (and of the same kind found by tests/test_fuzz_api.py), each
asserting the exception type and that the message names the argument, or the failed verdict.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcdiff
from funcdiff import UserFunctionError, check_consistency, check_grad, scoped, taylor_test

X = jnp.array([0.5, 0.75])


def sq(x):
    return jnp.sum(x**2)


def branchy(x):
    if jnp.sum(x) > 0:  # Python `if` on a traced value
        return jnp.sum(x)
    return -jnp.sum(x)


# ------------------------------------------------------------------ wrong results reported ok


def test_consistency_of_an_all_nan_function_is_not_ok():
    r = check_consistency(lambda x: jnp.sum(x) * jnp.nan, X)
    assert not r.ok
    assert "NaN" in r.message and "NaN" in str(r)
    assert r.to_dict()["ok"] is False
    with pytest.raises(AssertionError, match="NaN"):
        r.assert_ok()


@pytest.mark.parametrize(
    ("rtol", "err"),
    [
        (-1.0, ValueError),
        (float("nan"), ValueError),
        (np.array([1e-3, 1.0]), TypeError),
        ("1", TypeError),
    ],
)
def test_consistency_refuses_bad_rtol(rtol, err):
    with pytest.raises(err, match="`rtol`"):
        check_consistency(sq, X, rtol=rtol)


def test_consistency_refuses_non_bool_grad_and_grad_of_a_vector():
    with pytest.raises(TypeError, match="`grad`"):
        check_consistency(sq, X, grad="yes")
    with pytest.raises(ValueError, match="grad=True"):
        check_consistency(jnp.sin, X, grad=True)


def test_taylor_refuses_complex_direction():
    with pytest.raises(TypeError, match=r"`v`.*complex"):
        taylor_test(sq, X, v=jnp.array([1 + 1j, 1j]))


@pytest.mark.parametrize(
    ("kwargs", "err", "name"),
    [
        ({"min_order": float("nan")}, ValueError, "`min_order`"),
        ({"min_order": "2"}, TypeError, "`min_order`"),
        ({"min_order": -1.0}, ValueError, "`min_order`"),
        ({"grad": "g"}, TypeError, "`grad`"),
        ({"v": jnp.array([jnp.nan, 1.0])}, ValueError, "`v`"),
        ({"v": jnp.ones(3)}, ValueError, "`v`"),
        ({"v": {"a": X}}, ValueError, "`v` with the structure"),
        ({"v": X, "key": jnp.array([jnp.nan, 1.0])}, TypeError, "`key`"),
        ({"num_steps": 10**9}, ValueError, "`num_steps`"),
        ({"key": 2**70}, ValueError, "`key`"),
    ],
)
def test_taylor_refuses_bad_settings(kwargs, err, name):
    with pytest.raises(err, match=name):
        taylor_test(sq, X, **kwargs)


def test_scoped_x64_takes_bools_only():
    with pytest.raises(TypeError, match="`x64`"), scoped(x64="no"):
        pass  # pragma: no cover
    assert not funcdiff.x64_enabled()
    with scoped(x64=np.bool_(True)):
        assert funcdiff.x64_enabled()
    with pytest.raises(ValueError, match="`matmul_precision`"), scoped(matmul_precision="max"):
        pass  # pragma: no cover
    with pytest.raises(TypeError, match="`device`"), scoped(device=3):
        pass  # pragma: no cover


def test_fd_never_returns_nan_or_a_zero_from_a_lost_step():
    with pytest.raises(ValueError, match=r"finite differences at <root>\[0\]"):
        funcdiff.fd_grad(lambda x: jnp.sum(jnp.log(x)), jnp.array([1e-9, 1.0]), step=1e-3)
    with pytest.raises(ValueError, match=r"`step`.*overflows"):
        funcdiff.fd_grad(sq, X, step=1e300)
    with pytest.raises(ValueError, match=r"`step`.*== x"):
        funcdiff.fd_grad(sq, X, step=1e-30)


# ------------------------------------------------------------------ internal exceptions escaping


@pytest.mark.parametrize(
    "call",
    [
        lambda x: funcdiff.fd_grad(sq, x),
        lambda x: funcdiff.fd_jacobian(jnp.sin, x),
        lambda x: funcdiff.fd_jvp(jnp.sin, x, x),
        lambda x: funcdiff.fd_hvp(sq, x, x),
        lambda x: check_grad(sq, x),
        lambda x: check_grad(sq, x, mode="directional"),
        lambda x: taylor_test(sq, x),
    ],
)
def test_empty_x_is_a_value_error(call):
    with pytest.raises(ValueError, match="`x` to hold at least one float element"):
        call(jnp.zeros(0))


@pytest.mark.parametrize("seed", [2**64, 2**63, -(2**63) - 1])
def test_seed_beyond_64_bits(seed):
    """Every seeded function takes the same int seeds: the signed 64-bit range."""
    with pytest.raises(ValueError, match=r"`key`.*64"):
        check_grad(sq, X, mode="directional", key=seed)
    torch = pytest.importorskip("torch")
    from funcdiff.parity import compare

    with pytest.raises(ValueError, match=r"`key`.*64"):
        compare(jnp.sin, torch.sin, np.ones(2), key=seed)


def test_negative_seeds_are_seeds_everywhere():
    assert check_grad(sq, X, mode="directional", key=-1).ok
    torch = pytest.importorskip("torch")
    from funcdiff.parity import compare, run_catalog

    assert compare(jnp.sin, torch.sin, np.ones(2), key=-(2**63)).ok
    assert run_catalog(pattern="tutorial/f", key=-1).ok


def test_too_many_directions_is_refused_before_allocating():
    with pytest.raises(ValueError, match="`num_directions`"):
        check_grad(sq, X, mode="directional", num_directions=10**12)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: funcdiff.fd_grad(sq, X, scheme=np.array(["a", "b"])), "`scheme`"),
        (lambda: funcdiff.fd_grad(sq, X, return_error="yes"), "`return_error`"),
        (lambda: check_grad(sq, X, mode=np.array(["full"])), "`mode`"),
        (lambda: check_grad(sq, X, rtol=np.array([1e-3, 1.0])), "`rtol`"),
        (lambda: check_grad(sq, X, grad="g"), "`grad`"),
    ],
)
def test_settings_given_as_arrays_or_strings_name_the_argument(call, name):
    with pytest.raises((TypeError, ValueError), match=name):
        call()


# ------------------------------------------------------------------ the user's function failing


@pytest.mark.parametrize(
    "call",
    [
        lambda f: funcdiff.fd_grad(f, X),
        lambda f: funcdiff.fd_jacobian(f, X),
        lambda f: funcdiff.fd_hvp(f, X, X),
        lambda f: check_grad(f, X),
        lambda f: check_grad(f, X, mode="directional"),
        lambda f: taylor_test(f, X),
        lambda f: check_consistency(f, X),
    ],
)
def test_non_jittable_fun_is_reported_as_the_users_function(call):
    with pytest.raises(UserFunctionError, match="`fun` is not jit-compatible") as info:
        call(branchy)
    assert "TracerBoolConversionError" in str(info.value) and "https://" in str(info.value)


def test_raising_or_string_returning_functions_are_named():
    with pytest.raises(UserFunctionError, match="`fun` raised KeyError"):
        funcdiff.fd_grad(lambda x: {}["w"], X)
    with pytest.raises(UserFunctionError, match=r"`fun` to return arrays.*str"):
        check_grad(lambda x: "loss", X)
    with pytest.raises(UserFunctionError, match="`grad` raised ZeroDivisionError"):
        check_grad(sq, X, grad=lambda x: 1 / 0)
    with pytest.raises(UserFunctionError, match="`grad` to return arrays"):
        taylor_test(sq, X, grad=lambda x: "g")


def test_custom_vjp_still_checks_without_jvp():
    """A function without forward mode is a note in directional mode, not a user error."""

    @jax.custom_vjp
    def f(x):
        return jnp.sum(jnp.sin(x))

    f.defvjp(lambda x: (f(x), x), lambda x, g: (g * jnp.cos(x),))
    r = check_grad(f, X, mode="directional")
    assert r.ok and "JVP not checked" in r.message and "UserFunctionError" not in r.message


# ------------------------------------------------------------------ regression


def test_mse_refuses_shapes_that_would_broadcast():
    from funcdiff.regression import mse

    with pytest.raises(ValueError, match=r"`pred` and `y` of the same shape.*ravel"):
        mse(jnp.ones((3, 1)), jnp.ones(3))
    with pytest.raises(TypeError, match="`pred`"):
        mse("a", jnp.ones(3))
    assert float(mse(jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0]))) == 2.0


def test_predict_names_a_missing_key_and_a_shape_mismatch():
    from funcdiff.regression import predict

    with pytest.raises(TypeError, match=r"`params`.*\['coef'\]"):
        predict({"coef": 1.0}, jnp.ones(3))
    with pytest.raises(TypeError, match="`params`"):
        predict([1.0, 2.0], jnp.ones(3))
    with pytest.raises(ValueError, match="last axis of size 3"):
        predict({"coef": jnp.ones(3), "intercept": 0.0}, jnp.ones((4, 2)))
    with pytest.raises(TypeError, match="`x`"):
        predict({"coef": 1.0, "intercept": 0.0}, "ab")
    np.testing.assert_allclose(predict({"coef": 2.0, "intercept": 1.0}, jnp.arange(2.0)), [1, 3])


def test_fit_epochs_beyond_the_limit_blame_epochs_not_y():
    from funcdiff.regression import fit

    with pytest.raises(ValueError, match="`epochs`"):
        fit(jnp.ones(3), jnp.ones(3), epochs=10**12)
    with pytest.raises(ValueError, match="`log_every`"):  # found by the fuzz: OverflowError
        fit(jnp.ones(3), jnp.ones(3), epochs=2, log_every=2**70)


def test_fit_loss_failures_are_the_users_and_throw_is_a_bool():
    from funcdiff.regression import fit

    x = jnp.arange(3.0)
    with pytest.raises(UserFunctionError, match="`loss` is not jit-compatible"):
        fit(x, x, epochs=2, loss=lambda p, y: jnp.mean(p) if p.sum() > 0 else 0.0)
    with pytest.raises(UserFunctionError, match="`loss` raised"):
        fit(x, x, epochs=2, loss=lambda p, y: p["a"])
    with pytest.raises(TypeError, match="`throw`"):
        fit(x, x, epochs=2, throw="no")


def test_bootstrap_sizes_are_bounded():
    from funcdiff.regression import bootstrap

    with pytest.raises(ValueError, match="`n_resamples`"):
        bootstrap(jax.random.key(0), jnp.arange(3.0), jnp.ones(3), 10**12, epochs=5)


# ------------------------------------------------------------------ parity (torch optional)


def _torch():
    return pytest.importorskip("torch")


def test_to_torch_cuda_without_cuda_is_device_not_found():
    torch = _torch()
    from funcdiff.parity import to_torch

    if torch.cuda.is_available():  # pragma: no cover - CPU CI
        pytest.skip("this machine has CUDA")
    with pytest.raises(funcdiff.DeviceNotFoundError, match="cuda"):
        to_torch(np.ones(2), device="cuda")
    with pytest.raises(ValueError, match="`device`"):
        to_torch(np.ones(2), device="bogus")
    with pytest.raises(TypeError, match="`device`"):
        to_torch(np.ones(2), device=1.5)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda t: t.eye(2).to_sparse(), "sparse_coo"),
        (lambda t: t.eye(2).to_sparse_csr(), "sparse_csr"),
        (lambda t: t.empty(2, device="meta"), "meta"),
        (lambda t: t.quantize_per_tensor(t.ones(2), 0.1, 0, t.qint8), "dequantize"),
        (lambda t: t.ones(2, dtype=t.complex32), "complex32"),
    ],
)
def test_from_torch_refuses_tensors_without_dense_data(make, match):
    torch = _torch()
    from funcdiff.parity import from_torch

    with pytest.raises(TypeError, match=match) as info:
        from_torch({"w": make(torch)})
    assert "tree['w']" in str(info.value)


def test_get_case_refuses_a_non_string():
    from funcdiff.parity import get_case

    with pytest.raises(TypeError, match="`name`"):
        get_case(3)


def test_run_catalog_refuses_non_cases_and_bad_golden_paths(tmp_path):
    from funcdiff.parity import GoldenError, run_catalog

    with pytest.raises(TypeError, match=r"`cases\[1\]`"):
        run_catalog([funcdiff.parity.get_case("tutorial/f"), 3])
    with pytest.raises(TypeError, match="`cases`"):
        run_catalog("tutorial/f")
    with pytest.raises(GoldenError, match="directory"):
        run_catalog(reference="golden", golden_path=tmp_path, pattern="tutorial/f")
    for text in ("[1, 2]", '{"format": 1}', '{"format": 1, "entries": [1]}'):
        bad = tmp_path / "golden.json"
        bad.write_text(text)
        with pytest.raises(GoldenError, match="Unreadable"):
            run_catalog(reference="golden", golden_path=bad, pattern="tutorial/f")
    with pytest.raises(TypeError, match="`progress`"):
        run_catalog(pattern="tutorial/f", progress="p")
    with pytest.raises(TypeError, match="`pattern`"):
        run_catalog(pattern=3)
    with pytest.raises(TypeError, match="`dtypes`"):
        run_catalog(dtypes=3)
    with pytest.raises(ValueError, match=r"`key`.*64"):
        run_catalog(pattern="tutorial/f", key=2**64)


def test_run_catalog_progress_that_raises_is_the_users(tmp_path):
    from funcdiff.parity import run_catalog

    with pytest.raises(UserFunctionError, match="`progress` raised ZeroDivisionError"):
        run_catalog(pattern="tutorial/f", dtypes="float64", progress=lambda *a: 1 / 0)


def test_compare_optimizers_names_the_users_functions():
    torch = _torch()
    from funcdiff.parity import compare_optimizers

    def make(ps):
        return torch.optim.SGD(ps, lr=0.1)

    def tloss(p):
        return (p**2).sum()

    p0 = np.ones(2)
    with pytest.raises(TypeError, match="`scheduler`"):
        compare_optimizers(make, sq, tloss, p0, steps=2, scheduler="s")
    with pytest.raises(UserFunctionError, match=r"`torch_loss`.*got float"):
        compare_optimizers(make, sq, lambda p: 1.0, p0, steps=2)
    with pytest.raises(UserFunctionError, match="`jax_loss` is not jit-compatible"):
        compare_optimizers(make, branchy, tloss, p0, steps=2)
    with pytest.raises(UserFunctionError, match="`make_torch_optimizer` raised"):
        compare_optimizers(lambda ps: 1 / 0, sq, tloss, p0, steps=2)
    with pytest.raises(ValueError, match="`steps`"):
        compare_optimizers(make, sq, tloss, p0, steps=10**12)
    with pytest.raises(ValueError, match="`params`"):
        compare_optimizers(make, sq, tloss, np.ones(0), steps=2)


# ------------------------------------------------------------------ found by the fuzz


@pytest.mark.parametrize(
    ("x", "err"),
    [
        (10**12, ValueError),
        (object(), TypeError),
        ((X, "s"), TypeError),
        (np.array(["a"]), TypeError),
    ],
)
def test_x_leaves_jax_cannot_hold_name_x(x, err):
    with pytest.raises(err, match="`x`"):
        check_grad(sq, x)
    with pytest.raises((TypeError, ValueError), match="`x`"):
        check_consistency(sq, x)


def test_found_by_fuzz_misc():
    from funcdiff.regression import fit, ols, predict

    # grad=None on a bool x compared values only; jax.grad(bool) escaped before
    assert check_consistency(lambda x: jnp.sum(x * 1.0), jnp.array([True, False])).ok
    with pytest.raises(TypeError, match="`rtol`"):
        check_grad(sq, X, rtol=jax.random.key(0))  # 0-d key: .item() raised NotImplementedError
    with pytest.raises(TypeError, match="`x`"):
        ols(jax.random.key(0), jnp.ones(3))  # np.dtype(key) raised
    with pytest.raises(TypeError, match="`x`"):
        predict({"coef": 1.0, "intercept": 0.0}, jax.random.key(0))
    with pytest.raises(ValueError, match="`method`"):
        fit(jnp.ones(3), jnp.ones(3), epochs=2, method=np.array(["a", "b"]))
    with pytest.raises(TypeError, match="`key`"):
        fit(jnp.ones(3), jnp.ones(3), epochs=2, key=jnp.array([jnp.nan, 1.0]))  # was ignored
    with pytest.raises(TypeError, match="`key`"):
        check_grad(sq, X, key=f_nan_key)  # checked in full mode too (was ignored)


def f_nan_key(x):
    return x


def test_string_arrays_in_conversions_name_tree():
    _torch()
    from funcdiff.parity import from_torch, to_torch

    with pytest.raises(TypeError, match=r"`tree`.*<U1 at tree\['a'\]"):
        to_torch({"a": np.array(["x"])})
    with pytest.raises(TypeError, match="`tree`"):
        from_torch(np.array(["x"]))


def test_data_beyond_float32_is_one_clear_error_without_a_numpy_warning():
    import warnings

    from funcdiff.regression import fit

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # JAX's "overflow encountered in cast"
        with pytest.raises(ValueError, match=r"finite `x` and `y`.*x64"):
            fit(np.array([1e300, 1.0, 2.0]), np.ones(3), epochs=2)
