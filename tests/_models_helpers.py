"""Shared helpers for the model-porting tests (test_models_*.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nnx = pytest.importorskip("flax.nnx")
eqx = pytest.importorskip("equinox")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from funcdiff._config import scoped  # noqa: E402

TOL = 1e-10


@pytest.fixture(autouse=True)
def _x64_and_seed():
    torch.manual_seed(0)
    with scoped(x64=True):
        yield


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _cl(x: np.ndarray) -> jax.Array:
    """torch channels-first -> JAX channels-last."""
    return jnp.asarray(np.moveaxis(x, 1, -1))


def _cf(y: Any) -> np.ndarray:
    return np.moveaxis(np.asarray(y), -1, 1)


def _t(x: np.ndarray) -> Any:
    return torch.tensor(x)


def _attn64(query, key, value, **kwargs):
    """Attention that stays in the input dtype (flax's default softmaxes in float32)."""
    w = jnp.einsum("...qhd,...khd->...hqk", query, key) / jnp.sqrt(query.shape[-1])
    return jnp.einsum("...hqk,...khd->...qhd", jax.nn.softmax(w, axis=-1), value)


def _perturb_running_stats(bn: Any) -> None:
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()
        bn.num_batches_tracked.fill_(7)


def _abstract(cls: Any, *args: Any, **kwargs: Any) -> Any:
    """An NNX module with abstract leaves (nnx.eval_shape): no initialiser runs (or compiles)."""
    return nnx.eval_shape(lambda: cls(*args, rngs=nnx.Rngs(0), **kwargs))


def _eqx_abstract(cls: Any, *args: Any, **kwargs: Any) -> Any:
    return eqx.filter_eval_shape(cls, *args, **kwargs)
