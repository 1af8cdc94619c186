"""Scoped JAX configuration: applied inside the block, restored after, errors included."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from funcdiff import DeviceNotFoundError, resolve_device, scoped, x64_enabled


def test_x64_is_scoped_and_restored():
    assert not x64_enabled()
    with scoped(x64=True):
        assert x64_enabled()
        assert jnp.zeros(1).dtype == jnp.float64
    assert not x64_enabled()
    assert jnp.zeros(1).dtype == jnp.float32


def test_restored_after_an_exception():
    with pytest.raises(RuntimeError), scoped(x64=True, matmul_precision="highest"):
        raise RuntimeError("boom")
    assert not x64_enabled()
    assert jax.config.jax_default_matmul_precision is None


def test_matmul_precision_is_scoped():
    with scoped(matmul_precision="highest"):
        assert jax.config.jax_default_matmul_precision == "highest"
    assert jax.config.jax_default_matmul_precision is None


def test_nested_scopes_restore_in_order():
    with scoped(x64=True):
        with scoped(x64=False):
            assert not x64_enabled()
        assert x64_enabled()
    assert not x64_enabled()


def test_resolve_device_cpu_and_default():
    assert resolve_device("cpu").platform == "cpu"
    assert resolve_device(None) == jax.devices()[0]


@pytest.mark.skipif(any(d.platform == "gpu" for d in jax.devices()), reason="has a GPU")
def test_missing_device_names_the_ones_that_exist():
    with pytest.raises(DeviceNotFoundError, match=r"No gpu device found; available devices: cpu"):
        resolve_device("gpu")


def test_unknown_platform_is_a_value_error():
    with pytest.raises(ValueError, match=r"Expected `device` to be one of"):
        resolve_device("npu")


def test_device_scope():
    with scoped(device="cpu"):
        assert jnp.ones(2).devices() == {jax.devices("cpu")[0]}
