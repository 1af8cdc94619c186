"""Scoped JAX configuration: x64, matmul precision and the default device.

JAX keeps these settings globally. funcdiff never flips them for good: every change goes
through :func:`scoped` (or one of its narrower helpers) and is undone when the ``with`` block
exits, exceptions included.

Examples:
  >>> import jax.numpy as jnp
  >>> from funcdiff import scoped
  >>> with scoped(x64=True):
  ...     print(jnp.zeros(1).dtype)
  float64
  >>> print(jnp.zeros(1).dtype)
  float32
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import jax

__all__ = ["DeviceNotFoundError", "resolve_device", "scoped", "x64_enabled"]

MatmulPrecision = Literal["default", "high", "highest", "bfloat16", "tensorfloat32", "float32"]
_PLATFORMS = ("cpu", "gpu", "tpu")


class DeviceNotFoundError(RuntimeError):
    """A device platform was asked for that this machine does not have."""


def x64_enabled() -> bool:
    """Whether JAX currently creates 64-bit arrays by default."""
    return bool(jax.config.read("jax_enable_x64"))


def resolve_device(platform: str | None) -> jax.Device:
    """Returns the first device of ``platform`` (``"cpu"``, ``"gpu"`` or ``"tpu"``).

    Args:
      platform: a platform name, or None for JAX's default device.

    Raises:
      ValueError: ``platform`` is not one of cpu, gpu, tpu.
      DeviceNotFoundError: no device of that platform exists; the message lists those that do.
    """
    if platform is None:
        return jax.devices()[0]
    if platform not in _PLATFORMS:
        raise ValueError(f"Expected `device` to be one of {_PLATFORMS}, got {platform!r}.")
    try:
        devices = jax.devices(platform)
    except RuntimeError:
        devices = []
    if not devices:
        available = sorted({d.platform for d in jax.devices()})
        raise DeviceNotFoundError(
            f"No {platform} device found; available devices: {', '.join(available)}. "
            f"Pick one of those with `--device`/`device=`."
        ) from None
    return devices[0]


@contextlib.contextmanager
def scoped(
    *,
    x64: bool | None = None,
    matmul_precision: MatmulPrecision | None = None,
    device: str | jax.Device | None = None,
) -> Iterator[None]:
    """Applies JAX settings for the duration of a ``with`` block, then restores them.

    Args:
      x64: enable (True) or disable (False) 64-bit types; None leaves the setting alone.
      matmul_precision: value for ``jax.default_matmul_precision``; None leaves it alone.
      device: a platform name or a ``jax.Device`` to use as the default device.

    Raises:
      ValueError, DeviceNotFoundError: as :func:`resolve_device`.
    """
    with contextlib.ExitStack() as stack:
        if x64 is not None:
            stack.enter_context(jax.enable_x64(bool(x64)))
        if matmul_precision is not None:
            stack.enter_context(jax.default_matmul_precision(matmul_precision))
        if device is not None:
            dev = device if isinstance(device, jax.Device) else resolve_device(device)
            stack.enter_context(jax.default_device(dev))
        yield
