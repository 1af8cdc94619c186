"""funcdiff.regression: bad input, divergence, compile caching, minibatch, gram, bootstrap."""

from __future__ import annotations

import contextlib
import logging

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcdiff import scoped, seed
from funcdiff.regression import (
    DIVERGED,
    DivergenceError,
    bootstrap,
    confidence_interval,
    fit,
    ols,
    standard_error,
)

SGD = optax.sgd(0.1)
BIG_LR = optax.sgd(5.0)  # diverges on the tutorial data
SGD05 = optax.sgd(0.05)


def _data(n=100, seed_value=0):
    return seed.regression_data(jax.random.key(seed_value), n)


# ---------------------------------------------------------------------------- bad input
X, Y = np.linspace(-1, 1, 10, dtype=np.float32), np.linspace(0, 2, 10, dtype=np.float32)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"x": X, "y": Y[:9]}, ValueError, "same number of rows, got 10 rows in `x` and 9"),
        ({"x": X[:0], "y": Y[:0]}, ValueError, "at least one row"),
        ({"x": X.reshape(2, 5, 1), "y": Y}, ValueError, r"`x` of shape \(n,\) or \(n, p\)"),
        ({"x": X, "y": Y.reshape(10, 1)}, ValueError, r"`y` of shape \(n,\).*ravel"),
        ({"x": X.astype(complex), "y": Y}, TypeError, "`x` to hold real numbers"),
        ({"x": X > 0, "y": Y}, TypeError, "`x` to hold real numbers"),
        ({"x": "abc", "y": Y}, TypeError, "`x` to be an array"),
        ({"epochs": 0}, ValueError, "`epochs` to be an integer >= 1, got 0"),
        ({"epochs": -3}, ValueError, "`epochs`"),
        ({"epochs": 2.5}, TypeError, "`epochs`"),
        ({"params": {"intercept": 0.0}}, TypeError, "`params` to be a dict with keys"),
        (
            {"params": {"intercept": 0.0, "coef": np.zeros(2)}},
            ValueError,
            r"params\['coef'\]` of shape \(\)",
        ),
        ({"params": {"intercept": np.zeros(1), "coef": 0.0}}, ValueError, r"params\['intercept'\]"),
        ({"params": {"intercept": np.nan, "coef": 0.0}}, ValueError, "finite `params`"),
        ({"batch_size": 11, "key": jax.random.key(0)}, ValueError, "`batch_size` between 1 and"),
        ({"batch_size": 0, "key": jax.random.key(0)}, ValueError, "`batch_size`"),
        ({"batch_size": 4}, ValueError, "PRNG `key`"),
        ({"batch_size": 4, "key": 3}, TypeError, "`key`"),
        ({"optimizer": "sgd"}, TypeError, "optax.GradientTransformation"),
        ({"loss": 3}, TypeError, "`loss` to be a callable"),
        ({"method": "newton"}, ValueError, "`method`"),
        ({"method": "gram", "loss": lambda p, t: jnp.mean(jnp.abs(p - t))}, ValueError, "gram"),
        ({"log_every": 0}, ValueError, "`log_every`"),
        ({"mesh": "cpu"}, TypeError, "`mesh`"),
        ({"loss": lambda p, t: (p - t) ** 2}, TypeError, "`loss` to return a scalar"),
    ],
)
def test_bad_input_is_refused_at_the_boundary(kwargs, exc, match):
    args = {"x": X, "y": Y, **kwargs}
    with pytest.raises(exc, match=match):
        fit(args.pop("x"), args.pop("y"), **args)


@pytest.mark.parametrize("where", ["x", "y"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_data_is_refused(where, bad):
    x, y = X.copy(), Y.copy()
    (x if where == "x" else y)[3] = bad
    # the MSE finds bad data from its first non-finite loss, a custom loss up front; every
    # path (gram, minibatch, throw=False) still refuses the data rather than reporting a
    # divergence
    mae = lambda p, t: jnp.mean(jnp.abs(p - t))
    for kwargs in (
        {},
        {"method": "gram"},
        {"batch_size": 4, "key": jax.random.key(0)},
        {"loss": mae},
        {"throw": False},
    ):
        with pytest.raises(ValueError, match="finite `x` and `y`"):
            fit(x, y, epochs=3, **kwargs)
    with pytest.raises(ValueError, match="finite `x` and `y`"):
        ols(x, y)


def test_mesh_that_does_not_divide_rows_is_refused():
    mesh = jax.make_mesh((1,), ("rows",))
    fit(X, Y, epochs=2, mesh=mesh)  # 1 divides everything
    fake = jax.sharding.Mesh(np.array(jax.devices() * 3), ("rows",))  # size 3 on one device
    with pytest.raises(ValueError, match="divisible by the size of mesh axis 'rows' \\(3\\)"):
        fit(X, Y, epochs=2, mesh=fake)


def test_integers_are_cast_to_float():
    xi = np.arange(10)
    yi = 2 * xi + 1
    r = fit(xi, yi, optimizer=optax.sgd(0.01), epochs=3000, log_every=1000)
    assert r.params["coef"].dtype == jnp.float32
    np.testing.assert_allclose(r.params["coef"], 2.0, atol=1e-3)
    sol = ols(xi, yi)
    np.testing.assert_allclose(sol["coef"], 2.0, rtol=1e-5)
    np.testing.assert_allclose(sol["intercept"], 1.0, atol=1e-4)


# ---------------------------------------------------------------------------- divergence
def test_divergence_raises_with_the_epoch():
    x, y = _data()
    with pytest.raises(
        DivergenceError, match=r"diverged .* at epoch \d+\. Try a smaller learning rate"
    ):
        fit(x, y, optimizer=BIG_LR, epochs=100, log_every=10)
    with pytest.raises(FloatingPointError):
        fit(x, y, optimizer=BIG_LR, epochs=100, log_every=10)


def test_divergence_with_throw_false_returns_last_finite_params():
    x, y = _data()
    r = fit(x, y, optimizer=BIG_LR, throw=False, epochs=100, log_every=10)
    assert not r.ok and r.status == "diverged" and int(r.status_code) == DIVERGED
    k = int(r.diverged_at)
    losses = np.asarray(r.losses)
    assert 0 < k < 100
    assert np.isfinite(losses[:k]).all() and not np.isfinite(losses[k])
    assert np.isfinite(r.final_loss)
    np.testing.assert_allclose(r.final_loss, losses[k - 1], rtol=1e-6)
    # the returned params are epoch k-1's starting params: their loss is losses[k-1]
    pred = r.params["intercept"] + r.params["coef"] * x
    np.testing.assert_allclose(jnp.mean((y - pred) ** 2), losses[k - 1], rtol=1e-4)
    assert "diverged" in str(r) and "epoch" in str(r)


def test_a_converging_run_is_not_flagged():
    x, y = _data()
    r = fit(x, y, optimizer=optax.sgd(0.5), throw=False, epochs=100, log_every=10)
    assert r.ok and int(r.diverged_at) == -1


# ---------------------------------------------------------------------------- compile once
@contextlib.contextmanager
def _count_compiles(name="run"):
    """Counts XLA compilations of jitted functions called ``name`` (cf. optax test_utils)."""
    seen: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            if msg.startswith(f"Compiling jit({name})"):
                seen.append(msg)

    handler = Handler(level=logging.DEBUG)
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles(True):
            yield seen
    finally:
        logger.removeHandler(handler)


def test_same_optimizer_shapes_dtypes_do_not_recompile():
    opt = optax.adam(0.05)
    x, y = _data(37)
    with _count_compiles() as seen:
        fit(x, y, optimizer=opt, epochs=11)
        assert len(seen) == 1
        fit(x * 2, y + 1, optimizer=opt, epochs=11, params={"intercept": 1.0, "coef": 2.0})
        fit(np.asarray(x), np.asarray(y), optimizer=opt, epochs=11)
        assert len(seen) == 1
        fit(x, y, optimizer=opt, epochs=12)  # a new static setting compiles again ...
        assert len(seen) == 2
        fit(x[:20], y[:20], optimizer=opt, epochs=11)  # ... and so does a new shape
        assert len(seen) == 3


# ---------------------------------------------------------------------------- minibatch
def test_minibatch_is_reproducible_and_converges():
    x, y = _data(103)
    key = jax.random.key(5)
    a = fit(x, y, optimizer=SGD05, batch_size=10, key=key, epochs=100, log_every=10)
    b = fit(x, y, optimizer=SGD05, batch_size=10, key=key, epochs=100, log_every=10)
    chex.assert_trees_all_equal(a.params, b.params)
    c = fit(x, y, optimizer=SGD05, batch_size=10, key=jax.random.key(6), epochs=100, log_every=10)
    assert float(c.params["coef"]) != float(a.params["coef"])
    sol = ols(x, y)
    np.testing.assert_allclose(a.params["coef"], sol["coef"], atol=0.1)
    # losses are full-data losses at each epoch's starting params
    pred = a.params["intercept"] + a.params["coef"] * x
    np.testing.assert_allclose(a.final_loss, jnp.mean((y - pred) ** 2), rtol=1e-5)


def test_minibatch_full_size_batch_equals_full_batch():
    x, y = _data(40)
    a = fit(x, y, batch_size=40, key=jax.random.key(0), epochs=50)
    b = fit(x, y, epochs=50)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-5)
    chex.assert_trees_all_close(a.params, b.params, rtol=1e-5)


def test_minibatch_follows_the_documented_shuffle_and_remainder_rule():
    """Epoch e shuffles with fold_in(key, e), takes n // batch_size steps, drops the rest."""
    x, y = np.asarray(X), np.asarray(Y)
    key = jax.random.key(7)
    r = fit(x, y, optimizer=SGD, batch_size=4, key=key, epochs=3, log_every=1)
    b0, b1 = 0.0, 0.0
    for epoch in range(3):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), 10))
        for s in range(10 // 4):  # 2 steps; 2 rows of this shuffle skipped
            rows = perm[4 * s : 4 * s + 4]
            res = y[rows] - (b0 + b1 * x[rows])
            b0, b1 = b0 + 0.1 * 2 * res.mean(), b1 + 0.1 * 2 * (res * x[rows]).mean()
    np.testing.assert_allclose(r.params["intercept"], b0, rtol=1e-5)
    np.testing.assert_allclose(r.params["coef"], b1, rtol=1e-5)


# ---------------------------------------------------------------------------- gram
@pytest.mark.parametrize("p", [None, 3])
def test_gram_path_follows_the_autodiff_trajectory(p):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200,) if p is None else (200, p)).astype(np.float32)
    y = (1.0 + (x if p is None else x @ np.arange(1.0, p + 1)) + rng.normal(size=200)).astype(
        np.float32
    )
    for opt in (SGD,) if p is None else (optax.adam(0.05),):
        a = fit(x, y, optimizer=opt, epochs=150)
        g = fit(x, y, optimizer=opt, epochs=150, method="gram")
        np.testing.assert_allclose(g.losses, a.losses, rtol=2e-5)
        chex.assert_trees_all_close(g.params, a.params, rtol=1e-5, atol=1e-5)
        chex.assert_trees_all_close(g.log.grad, a.log.grad, atol=1e-5)


def test_gram_comparison_can_fail():
    x, y = _data()
    a = fit(x, y, epochs=5)
    g = fit(x, y + 0.01, epochs=5, method="gram")  # planted mismatch
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(g.losses, a.losses, rtol=2e-5)


# ---------------------------------------------------------------------------- bootstrap
def test_bootstrap_standard_errors_match_analytic_ols():
    with scoped(x64=True):
        x, y = _data(200, seed_value=4)
        boot = bootstrap(jax.random.key(1), x, y, 600, optimizer=SGD, epochs=150)
        chex.assert_shape([boot.params["coef"], boot.params["intercept"]], (600,))
        chex.assert_shape(boot.losses, (600, 150))
        xn, yn = np.asarray(x), np.asarray(y)
        n = len(xn)
        sol = ols(x, y)
        resid = yn - float(sol["intercept"]) - float(sol["coef"]) * xn
        s2 = resid @ resid / (n - 2)
        sxx = np.sum((xn - xn.mean()) ** 2)
        se_coef = np.sqrt(s2 / sxx)
        se_int = np.sqrt(s2 * (1 / n + xn.mean() ** 2 / sxx))
        se = standard_error(boot)
        np.testing.assert_allclose(se["coef"], se_coef, rtol=0.15)
        np.testing.assert_allclose(se["intercept"], se_int, rtol=0.15)
        lo, hi = confidence_interval(boot, level=0.95)["coef"]
        assert lo < float(sol["coef"]) < hi
        np.testing.assert_allclose(hi - lo, 2 * 1.96 * se_coef, rtol=0.2)
        # each resample is a fit: its params are the OLS solution of its own resample
        np.testing.assert_allclose(np.mean(boot.params["coef"]), sol["coef"], atol=3 * se_coef / 10)


def test_bootstrap_resamples_are_fits_of_resampled_rows():
    x, y = _data(30)
    key = jax.random.key(3)
    boot = bootstrap(key, x, y, 4, optimizer=SGD, epochs=50)  # log_every 100: one log row
    k_rows, _ = jax.random.split(jax.random.split(key, 4)[2])
    rows = jax.random.randint(k_rows, (30,), 0, 30)
    one = fit(x[rows], y[rows], optimizer=SGD, epochs=50)
    np.testing.assert_allclose(boot.params["coef"][2], one.params["coef"], rtol=1e-5)
    np.testing.assert_allclose(boot.losses[2], one.losses, rtol=1e-5)


def test_bootstrap_bad_input():
    x, y = _data(30)
    with pytest.raises(TypeError, match="`key`"):
        bootstrap(0, x, y, 10)
    with pytest.raises(ValueError, match="`n_resamples`"):
        bootstrap(jax.random.key(0), x, y, 0)
    with pytest.raises(TypeError, match="mesh"):
        bootstrap(jax.random.key(0), x, y, 2, mesh=None)
    with pytest.raises(ValueError, match="same number of rows"):
        bootstrap(jax.random.key(0), x, y[:5], 2)
    with pytest.raises(DivergenceError, match="resamples"):
        bootstrap(jax.random.key(0), x, y, 3, optimizer=BIG_LR, epochs=50)
    r = fit(x, y, epochs=50)
    with pytest.raises(ValueError, match="leading resample axis"):
        confidence_interval(r)
    boot = bootstrap(jax.random.key(0), x, y, 3, epochs=50, optimizer=BIG_LR, throw=False)
    with pytest.raises(ValueError, match="`level`"):
        confidence_interval(boot, level=1.5)
    with pytest.raises(ValueError, match="at least 2 resamples whose loss stayed finite"):
        confidence_interval(boot)
    assert "diverged in 3 of 3 resamples" in str(boot)


# ---------------------------------------------------------------------------- blocked gradient
def test_blocked_cpu_gradient_equals_the_whole_array_gradient():
    """Large data on CPU: the MSE gradient is taken block by block; same trajectory."""
    from funcdiff.regression import _fit

    n = 16 * _fit.BLOCK_ROWS + 123  # a partial last block too
    rng = np.random.default_rng(0)
    x = rng.normal(size=n).astype(np.float32)
    y = (2 + x + rng.normal(size=n)).astype(np.float32)
    call = _fit._boundary(x, y, SGD, 12, None, None, None, None, 5, None, "autodiff")
    assert call.settings[-2] == _fit.BLOCK_ROWS
    blocked = fit(x, y, optimizer=SGD, epochs=12, log_every=5)
    whole = _fit.to_result(_fit.cached_run(*call.settings[:-2], 0, False)(x, y, call.params, None))
    np.testing.assert_allclose(blocked.losses, whole.losses, rtol=1e-5)
    chex.assert_trees_all_close(blocked.params, whole.params, rtol=1e-5)
    chex.assert_trees_all_close(blocked.log.grad, whole.log.grad, rtol=1e-4, atol=1e-6)
    ref = ols(x, y)
    assert abs(float(blocked.params["coef"]) - float(ref["coef"])) < 0.1
    # a custom loss, or a small data set, keeps the whole-array gradient
    mae = lambda p, t: jnp.mean(jnp.abs(p - t))
    assert (
        _fit._boundary(x, y, SGD, 12, None, mae, None, None, 5, None, "autodiff").settings[-2] == 0
    )
    assert (
        _fit._boundary(
            x[:1000], y[:1000], SGD, 12, None, None, None, None, 5, None, "autodiff"
        ).settings[-2]
        == 0
    )


def test_sharded_blocked_gradient_on_a_cpu_mesh_equals_the_plain_fit(monkeypatch):
    """A CPU mesh runs the blocked gradient per shard under shard_map (one core per device);
    planted here on a 1-device mesh with small blocks: same trajectory as the plain fit, and a
    wrong shard weighting (each shard weighted by its own rows) would double the gradient."""
    from funcdiff.regression import _fit

    monkeypatch.setattr(_fit, "BLOCK_ROWS", 1024)
    n = 16 * 1024 * 2 + 7
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    y = (2 + x @ np.array([1.0, -0.5]) + rng.normal(size=n)).astype(np.float32)
    mesh = jax.make_mesh((1,), ("rows",))
    call = _fit._boundary(x, y, SGD, 12, None, None, None, None, 5, mesh, "autodiff")
    shard, block = call.settings[-3], call.settings[-2]
    assert isinstance(shard, jax.sharding.Mesh) and block == 1024  # at least 1024 rows
    sharded = fit(x, y, optimizer=SGD, epochs=12, log_every=5, mesh=mesh)
    plain = fit(x, y, optimizer=SGD, epochs=12, log_every=5)
    np.testing.assert_allclose(sharded.losses, plain.losses, rtol=1e-5)
    chex.assert_trees_all_close(sharded.log.grad, plain.log.grad, rtol=1e-4, atol=1e-6)
    value, grad = _fit._sharded_value_and_grad(call.params, call.x, call.y, shard, block)
    first = jax.tree.map(lambda g: g[0], plain.log.grad)  # the gradient at epoch 0
    chex.assert_trees_all_close(grad, first, rtol=1e-4, atol=1e-6)
    with pytest.raises(AssertionError):  # the comparison sees a gradient off by 2x
        chex.assert_trees_all_close(jax.tree.map(lambda g: 2 * g, grad), first, rtol=1e-3)
    np.testing.assert_allclose(value, plain.losses[0], rtol=1e-5)
    # a custom loss on the mesh keeps XLA's automatic partitioning
    mae = lambda p, t: jnp.mean(jnp.abs(p - t))
    assert (
        _fit._boundary(x, y, SGD, 12, None, mae, None, None, 5, mesh, "autodiff").settings[-3]
        is None
    )


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"method": "gram"}, {"loss": lambda p, t: jnp.mean((p - t) ** 2)}],
    ids=["blocked", "gram", "whole-array"],
)
def test_fit_needs_at_most_two_extra_copies_of_the_data(kwargs):
    """The memory goal, from XLA's own analysis of the compiled run: its scratch buffers stay
    under two copies of x and y (the blocked CPU gradient needs far less)."""
    from funcdiff.regression._fit import BLOCK_ROWS, compiled_memory

    n = 16 * BLOCK_ROWS
    x = np.ones(n, np.float32)
    y = 2 * x
    mem = compiled_memory(x, y, optimizer=SGD, epochs=20, **kwargs)
    data = x.nbytes + y.nbytes
    assert mem.argument_size_in_bytes >= data  # x and y are arguments, not copied in
    assert mem.temp_size_in_bytes <= 2 * data, mem.temp_size_in_bytes / data
    if not kwargs:
        assert mem.temp_size_in_bytes <= 0.5 * data
    with pytest.raises(TypeError, match="Unexpected keyword"):
        compiled_memory(x, y, epoch=3)
