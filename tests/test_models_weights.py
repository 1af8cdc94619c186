"""load_torch_weights / export_torch_weights: layouts checked against torch's own forward."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nnx = pytest.importorskip("flax.nnx")
eqx = pytest.importorskip("equinox")

import jax.numpy as jnp  # noqa: E402

from funcdiff._config import scoped  # noqa: E402
from funcdiff.parity import load_torch_weights  # noqa: E402


def test_square_linear_is_transposed_by_type():
    torch.manual_seed(0)
    t = torch.nn.Linear(3, 3).double()
    with scoped(x64=True):
        m = nnx.Linear(3, 3, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
        res = load_torch_weights(m, t)
        assert res.ok and res.model is m
        x = np.random.default_rng(0).normal(size=(2, 3))
        y = np.asarray(m(jnp.asarray(x)))
    np.testing.assert_allclose(y, t(torch.tensor(x)).detach().numpy(), rtol=0, atol=1e-12)
    assert [r.rule for r in res.rows] == ["weight.T", "as is"]
