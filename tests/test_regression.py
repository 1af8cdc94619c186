"""funcdiff.regression.fit and ols: closed forms, the tutorial's trajectory, the log."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcdiff import regression, scoped, seed
from funcdiff.regression import FitLog, FitResult, fit, ols

SGD = optax.sgd(0.1)


def _data(n=100, seed_value=0, dtype=None):
    return seed.regression_data(jax.random.key(seed_value), n, dtype=dtype)


def _numpy_ols(x, y):
    a = np.column_stack([np.ones(len(x)), np.asarray(x, np.float64)])
    sol = np.linalg.lstsq(a, np.asarray(y, np.float64), rcond=None)[0]
    return sol[0], sol[1:]


def test_public_names():
    assert set(regression.__all__) >= {
        "fit",
        "ols",
        "bootstrap",
        "confidence_interval",
        "FitResult",
        "FitLog",
    }
    for name in regression.__all__:
        assert hasattr(regression, name)


@pytest.mark.parametrize("x64", [False, True])
def test_fit_converges_to_ols_1d(x64):
    with scoped(x64=x64):
        x, y = _data()
        r = fit(x, y, optimizer=SGD, epochs=500)
        sol = ols(x, y)
        b0, b = _numpy_ols(x, y)
        tol = 1e-5 if not x64 else 1e-12
        np.testing.assert_allclose(sol["intercept"], b0, rtol=tol, atol=tol)
        np.testing.assert_allclose(sol["coef"], b[0], rtol=tol, atol=tol)
        np.testing.assert_allclose(r.params["intercept"], b0, rtol=10 * tol, atol=10 * tol)
        np.testing.assert_allclose(r.params["coef"], b[0], rtol=10 * tol, atol=10 * tol)
        assert r.params["coef"].dtype == (jnp.float64 if x64 else jnp.float32)
        assert sol["coef"].dtype == (jnp.float64 if x64 else jnp.float32)
        chex.assert_shape([r.params["intercept"], r.params["coef"]], ())
        resid = np.asarray(y, np.float64) - b0 - b[0] * np.asarray(x, np.float64)
        np.testing.assert_allclose(r.final_loss, np.mean(resid**2), rtol=10 * tol)
        assert r.ok and int(r.status) == regression.OK and int(r.diverged_at) == -1


def test_fit_converges_to_ols_2d_with_adam():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.7 + rng.normal(size=300)).astype(np.float32)
    r = fit(x, y, optimizer=optax.adam(0.05), epochs=3000, log_every=1000)
    b0, b = _numpy_ols(x, y)
    chex.assert_shape(r.params["coef"], (4,))
    np.testing.assert_allclose(r.params["coef"], b, atol=1e-4)
    np.testing.assert_allclose(r.params["intercept"], b0, atol=1e-4)
    sol = ols(x, y)
    np.testing.assert_allclose(sol["coef"], b, atol=1e-5)
    np.testing.assert_allclose(sol["intercept"], b0, atol=1e-5)


def test_ols_is_stable_on_ill_conditioned_data():
    # cond(X) ~ 1e6: the normal equations square it (1e12) and lose float64 digits; QR/SVD not.
    with scoped(x64=True):
        rng = np.random.default_rng(1)
        t = rng.normal(size=200)
        x = np.column_stack([t, t + 1e-6 * rng.normal(size=200)])
        coef = np.array([1.0, 2.0])
        y = 0.5 + x @ coef
        sol = ols(x, y)
        np.testing.assert_allclose(sol["coef"], coef, rtol=1e-7)
        np.testing.assert_allclose(sol["intercept"], 0.5, atol=1e-9)


def test_sgd_trajectory_matches_a_hand_written_loop():
    """losses[k] is the loss at epoch k's starting params; log.grad the gradient there."""
    with scoped(x64=True):
        x, y = _data(50, seed_value=3)
        xn, yn = np.asarray(x), np.asarray(y)
        b0, b1 = 0.3, -0.7
        losses, grads = [], []
        for _ in range(25):
            r = yn - (b0 + b1 * xn)
            losses.append(np.mean(r**2))
            g = np.array([-2 * np.mean(r), -2 * np.mean(r * xn)])
            grads.append(g)
            b0, b1 = b0 - 0.1 * g[0], b1 - 0.1 * g[1]
        res = fit(
            x, y, optimizer=SGD, epochs=25, log_every=10, params={"intercept": 0.3, "coef": -0.7}
        )
        np.testing.assert_allclose(res.losses, losses, rtol=1e-12)
        assert isinstance(res.log, FitLog)
        np.testing.assert_array_equal(res.log.epoch, [0, 10, 20])
        np.testing.assert_allclose(res.log.loss, np.array(losses)[[0, 10, 20]], rtol=1e-12)
        g = np.array(grads)[[0, 10, 20]]
        np.testing.assert_allclose(res.log.grad["intercept"], g[:, 0], rtol=1e-10)
        np.testing.assert_allclose(res.log.grad["coef"], g[:, 1], rtol=1e-10)
        np.testing.assert_allclose(res.params["intercept"], b0, rtol=1e-12)
        np.testing.assert_allclose(res.params["coef"], b1, rtol=1e-12)
        r = yn - (b0 + b1 * xn)
        np.testing.assert_allclose(res.final_loss, np.mean(r**2), rtol=1e-12)


def test_hand_written_loop_check_can_fail():
    """A planted wrong learning rate makes the trajectory comparison fail."""
    x, y = _data(50)
    a = fit(x, y, optimizer=SGD, epochs=5)
    b = fit(x, y, optimizer=optax.sgd(0.11), epochs=5)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(a.losses, b.losses, rtol=1e-6)


@pytest.mark.parametrize(
    "epochs,log_every,expected",
    [(500, 100, [0, 100, 200, 300, 400]), (7, 3, [0, 3, 6]), (5, 10, [0])],
)
def test_log_epochs(epochs, log_every, expected):
    x, y = _data(20)
    r = fit(x, y, epochs=epochs, log_every=log_every)
    chex.assert_shape(r.losses, (epochs,))
    np.testing.assert_array_equal(r.log.epoch, expected)
    chex.assert_shape([r.log.grad["intercept"], r.log.grad["coef"]], (len(expected),))
    chex.assert_shape(r.log.loss, (len(expected),))


def test_default_params_are_zeros_and_custom_loss():
    x, y = _data(30)
    r = fit(x, y, epochs=1, log_every=1)
    np.testing.assert_allclose(r.losses[0], np.mean(np.asarray(y) ** 2), rtol=1e-6)
    mae = lambda pred, t: jnp.mean(jnp.abs(pred - t))
    r2 = fit(x, y, epochs=1, loss=mae)
    np.testing.assert_allclose(r2.losses[0], np.mean(np.abs(np.asarray(y))), rtol=1e-6)


def test_result_is_a_pytree_that_vmaps():
    x, y = _data(40)
    r = fit(x, y, epochs=10)
    leaves = jax.tree.leaves(r)
    assert len(leaves) >= 8
    doubled = jax.tree.map(lambda a: a * 2, r)
    assert isinstance(doubled, FitResult)
    xs = jnp.stack([x, x + 1.0])
    out = jax.vmap(lambda xx: fit(xx, y, epochs=10))(xs)
    chex.assert_shape(out.params["coef"], (2,))
    np.testing.assert_allclose(out.params["coef"][0], r.params["coef"], rtol=1e-6)


def test_str_is_a_table():
    x, y = _data()
    text = str(fit(x, y))
    assert "intercept" in text and "coef" in text and "final loss" in text
    assert text.count("\n") > 8


def test_fit_in_chunks_follows_the_same_trajectory():
    from funcdiff.regression._fit import fit_in_chunks

    x, y = _data(60)
    seen = []
    a = fit_in_chunks(
        x, y, optimizer=SGD, epochs=25, log_every=10, chunk_epochs=10,
        on_chunk=lambda done, loss: seen.append(done),
    )  # fmt: skip
    b = fit(x, y, optimizer=SGD, epochs=25, log_every=10)
    assert seen == [10, 20, 25]
    chex.assert_trees_all_close(a, b, rtol=1e-6)
