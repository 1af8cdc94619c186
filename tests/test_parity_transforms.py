"""The torch-form optax pieces, against closed forms (no torch needed)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funcdiff.parity import _transforms as T


def _run(tx, grads, params=None):
    params = jnp.zeros_like(grads[0]) if params is None else params
    state = tx.init(params)
    out = []
    for g in grads:
        u, state = tx.update(g, state, params)
        out.append(np.asarray(u))
    return np.array(out)


def test_trace_torch_copies_the_first_gradient_then_dampens():
    g = [jnp.array([1.0]), jnp.array([2.0]), jnp.array([-1.0])]
    got = _run(T.trace_torch(0.9, dampening=0.5), g)[:, 0]
    b1 = 1.0
    b2 = 0.9 * b1 + 0.5 * 2.0
    b3 = 0.9 * b2 + 0.5 * -1.0
    np.testing.assert_allclose(got, [b1, b2, b3], rtol=1e-6)
    nest = _run(T.trace_torch(0.9, dampening=0.5, nesterov=True), g)[:, 0]
    np.testing.assert_allclose(nest, [1 + 0.9 * b1, 2 + 0.9 * b2, -1 + 0.9 * b3], atol=1e-6)


def test_trace_torch_without_dampening_is_optax_trace():
    g = [jnp.array([1.0, -3.0]) * k for k in (1.0, 0.5, -2.0, 4.0)]
    np.testing.assert_allclose(_run(T.trace_torch(0.8), g), _run(optax.trace(0.8), g), rtol=1e-6)


def test_amsgrad_torch_maxes_the_raw_second_moment():
    b1, b2, eps = 0.9, 0.999, 1e-8
    g = [3.0, 0.1, 0.1]
    got = _run(T.scale_by_amsgrad_torch(b1, b2, eps), [jnp.array([x]) for x in g])[:, 0]
    m = v = vmax = 0.0
    expected = []
    for t, x in enumerate(g, start=1):
        m = b1 * m + (1 - b1) * x
        v = b2 * v + (1 - b2) * x * x
        vmax = max(vmax, v)
        expected.append(m / (1 - b1**t) / (math.sqrt(vmax) / math.sqrt(1 - b2**t) + eps))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    stock = _run(optax.scale_by_amsgrad(b1, b2, eps), [jnp.array([x]) for x in g])[:, 0]
    assert abs(stock[2] - expected[2]) > 1e-3  # optax maxes the bias-corrected moment


def test_adagrad_torch_puts_eps_outside_the_root():
    got = _run(T.scale_by_adagrad_torch(0.5, eps=0.1), [jnp.array([1.0]), jnp.array([2.0])])
    np.testing.assert_allclose(
        got[:, 0], [1 / (math.sqrt(1.5) + 0.1), 2 / (math.sqrt(5.5) + 0.1)], rtol=1e-6
    )


def test_cosine_annealing_continues_past_t_max():
    sched = T.cosine_annealing_schedule(0.1, 10, eta_min=0.01)
    stock = optax.cosine_decay_schedule(0.1, 10, alpha=0.1)
    for t in range(0, 11):
        assert float(sched(t)) == pytest.approx(float(stock(t)), rel=1e-6)
    assert float(sched(20)) == pytest.approx(0.1, rel=1e-6)  # back up, as torch
    assert float(stock(20)) == pytest.approx(0.01, rel=1e-6)  # optax stays flat


@settings(max_examples=30, deadline=None)
@given(t=st.integers(0, 500), t_max=st.integers(1, 50))
def test_cosine_annealing_has_period_two_t_max(t, t_max):
    sched = T.cosine_annealing_schedule(0.3, t_max, eta_min=0.05)
    assert float(sched(t)) == pytest.approx(float(sched(t + 2 * t_max)), abs=1e-5)
    assert 0.05 - 1e-7 <= float(sched(t)) <= 0.3 + 1e-7


def test_closed_form_schedules():
    assert [float(T.step_schedule(1.0, 3, 0.5)(t)) for t in (0, 2, 3, 7)] == [1, 1, 0.5, 0.25]
    multi = T.multistep_schedule(1.0, [2, 2, 5], 0.5)  # repeated milestone counts twice
    assert [float(multi(t)) for t in (0, 1, 2, 4, 5, 9)] == [1, 1, 0.25, 0.25, 0.125, 0.125]
    assert float(T.exponential_schedule(2.0, 0.5)(3)) == 0.25
    lin = T.linear_schedule(1.0, 0.25, 1.0, 4)
    assert [float(lin(t)) for t in (0, 2, 4, 10)] == [0.25, 0.625, 1.0, 1.0]
    assert float(T.adagrad_lr_decay(0.1, 0.5)(2)) == pytest.approx(0.05)


def test_schedules_are_float64_exact_under_x64():
    # optax.exponential_decay divides the int32 count in float32; these cast first.
    with jax.enable_x64(True):
        count = jnp.asarray(7, jnp.int32)
        got = T.exponential_schedule(0.1, 0.99)(count)
        assert got.dtype == jnp.float64
        assert float(got) == pytest.approx(0.1 * 0.99**7, rel=1e-15)
        lin = T.linear_schedule(0.1, 1 / 3, 1.0, 9)(count)
        assert float(lin) == pytest.approx(0.1 * (1 / 3 + (2 / 3) * 7 / 9), rel=1e-15)


def test_cosine_refuses_t_max_below_one():
    with pytest.raises(ValueError, match="`t_max`"):
        T.cosine_annealing_schedule(0.1, 0)


def test_transforms_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, funcdiff.parity._transforms; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
