"""Shared fixtures: every test runs with JAX's global config untouched afterwards."""

from __future__ import annotations

import jax
import pytest


def _global_config() -> tuple[object, ...]:
    return (
        jax.config.jax_enable_x64,
        jax.config.jax_default_matmul_precision,
        jax.config.jax_default_device,
    )


@pytest.fixture(autouse=True)
def _no_config_leak():
    """Fails any test that leaves x64, matmul precision or the default device changed."""
    before = _global_config()
    yield
    after = _global_config()
    assert after == before, f"JAX global config leaked: {before} -> {after}"
