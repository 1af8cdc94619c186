"""Shared fixtures: every test runs with JAX's global config untouched afterwards."""

from __future__ import annotations

import os

import jax
import pytest

# The CLI turns on JAX's persistent compilation cache in the user's cache directory; the tests
# call the CLI in this process and in subprocesses, and must neither write there nor change
# JAX's config for the tests after them (tests/test_cli_cache.py turns it on where it tests it).
os.environ.setdefault("FUNCDIFF_NO_CACHE", "1")


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
