"""The machine record written beside every benchmark result: CPU, cores, memory, device,
threads and library versions, so figures from different machines and devices stay apart."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import sys
from typing import Any

import jax

__all__ = ["machine_info", "split_cpu_into_cores"]

_PACKAGES = ("jax", "jaxlib", "optax", "numpy", "torch", "matplotlib", "funcdiff")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_device_count() -> int | None:
    try:
        return len(jax.devices("cpu"))
    except RuntimeError:
        return None


def _usable_cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count()


def split_cpu_into_cores() -> bool:
    """Gives JAX one CPU device per usable core, so a ``Mesh`` over them runs on every core.

    Must run before JAX starts its backends (``funcdiff bench`` calls it first thing); the
    default device stays ``cpu:0``, so single-device rows are unchanged. Returns False, and
    changes nothing, when JAX has already started or the user set the device count
    (``XLA_FLAGS=--xla_force_host_platform_device_count`` or ``jax_num_cpu_devices``).
    """
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return False
    if int(getattr(jax.config, "jax_num_cpu_devices", -1)) > 0:
        return False
    try:
        jax.config.update("jax_num_cpu_devices", _usable_cores() or 1)
    except (RuntimeError, AttributeError):  # backends already up, or an older jax
        return False
    return True


def machine_info(
    device: jax.Device, torch_threads: int | None, torch_device: str | None
) -> dict[str, Any]:
    """Describes this machine and the device the benchmarks ran on.

    Args:
      device: the JAX device every JAX implementation ran on.
      torch_threads: ``torch.get_num_threads()``, or None without torch.
      torch_device: the torch device string (``"cpu"``, ``"cuda:0"``), or None without torch.
    """
    mem = _memory_bytes()
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "memory": f"{mem / 2**30:.1f} GiB" if mem else None,
        "memory_bytes": mem,
        "device": str(device),
        "device_platform": device.platform,
        "device_kind": getattr(device, "device_kind", None),
        "jax_cpu_devices": _cpu_device_count(),
        "torch_device": torch_device,
        "torch_threads": torch_threads,
        "env_threads": {
            k: os.environ[k]
            for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")
            if k in os.environ
        },
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    for name in _PACKAGES:
        info[name] = _version(name)
    return info
