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
import functools
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import jax
import numpy as np

__all__ = [
    "CACHE_MAX_BYTES",
    "NO_CACHE_ENV",
    "ONE_SHOT_COMPILER_OPTIONS",
    "QUICK_RUN_COMPILER_OPTIONS",
    "DeviceNotFoundError",
    "OneShotJit",
    "default_cache_dir",
    "enable_persistent_cache",
    "one_shot_jit",
    "resolve_device",
    "scoped",
    "x64_enabled",
]

MatmulPrecision = Literal["default", "high", "highest", "bfloat16", "tensorfloat32", "float32"]
_PLATFORMS = ("cpu", "gpu", "tpu")
_PRECISIONS: tuple[str, ...] = get_args(MatmulPrecision)


class DeviceNotFoundError(RuntimeError):
    """A device platform was asked for that this machine does not have.

    Examples:
      >>> from funcdiff import DeviceNotFoundError, resolve_device
      >>> try:
      ...     resolve_device("tpu")
      ... except DeviceNotFoundError as e:
      ...     print(type(e).__name__, "-", str(e).split(";")[0])
      DeviceNotFoundError - No tpu device found
    """


def x64_enabled() -> bool:
    """Whether JAX currently creates 64-bit arrays by default.

    Examples:
      >>> from funcdiff import scoped, x64_enabled
      >>> with scoped(x64=True):
      ...     print(x64_enabled())
      True
    """
    return bool(jax.config.read("jax_enable_x64"))


def resolve_device(platform: str | None) -> jax.Device:
    """Returns the first device of ``platform`` (``"cpu"``, ``"gpu"`` or ``"tpu"``).

    Args:
      platform: a platform name, or None for JAX's default device.

    Raises:
      ValueError: ``platform`` is not one of cpu, gpu, tpu.
      DeviceNotFoundError: no device of that platform exists; the message lists those that do.

    Examples:
      >>> from funcdiff import resolve_device
      >>> resolve_device("cpu").platform
      'cpu'
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
      TypeError: ``x64`` not a bool or None (a string such as ``"no"`` is truthy: refused);
        ``device`` not a string, ``jax.Device`` or None.
      ValueError: unknown ``matmul_precision``; and as :func:`resolve_device`.
      DeviceNotFoundError: as :func:`resolve_device`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from funcdiff import scoped
      >>> with scoped(x64=True, matmul_precision="highest", device="cpu"):
      ...     print(jnp.ones(2).dtype, jax.config.jax_default_matmul_precision)
      float64 highest
      >>> print(jnp.ones(2).dtype, jax.config.jax_default_matmul_precision)
      float32 None
    """
    if x64 is not None and not isinstance(x64, bool | np.bool_):
        raise TypeError(f"Expected `x64` to be True, False or None, got {x64!r}.")
    if matmul_precision is not None and (
        not isinstance(matmul_precision, str) or matmul_precision not in _PRECISIONS
    ):
        raise ValueError(
            f"Expected `matmul_precision` to be one of {_PRECISIONS} or None, got "
            f"{matmul_precision!r}."
        )
    if device is not None and not isinstance(device, str | jax.Device):
        raise TypeError(
            f"Expected `device` to be a platform name ('cpu', 'gpu', 'tpu'), a jax.Device or "
            f"None, got {type(device).__name__}."
        )
    with contextlib.ExitStack() as stack:
        if x64 is not None:
            stack.enter_context(jax.enable_x64(bool(x64)))
        if matmul_precision is not None:
            stack.enter_context(jax.default_matmul_precision(matmul_precision))
        if device is not None:
            dev = device if isinstance(device, jax.Device) else resolve_device(device)
            stack.enter_context(jax.default_device(dev))
        yield


# XLA options for programs that usually run once (a gradient check at one point), on CPU,
# where compiling is most of a one-shot check: XLA's legacy loop emitters compile the same
# program about 30% faster than its fusion emitters, and for programs whose run is tiny next
# to their compile (a check along 8 directions) LLVM's optimisation level 0 cuts compile time
# by about 3x (measured in docs/gradcheck.md). jaxlib 0.10 knows these options; older ones
# keep XLA's defaults. Other platforms always keep XLA's defaults.
_NEW_JAXLIB = jax.__version_info__ >= (0, 10, 0)
ONE_SHOT_COMPILER_OPTIONS: dict[str, Any] | None = (
    {"xla_cpu_use_fusion_emitters": False} if _NEW_JAXLIB else None
)
QUICK_RUN_COMPILER_OPTIONS: dict[str, Any] | None = (
    {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 0}
    if _NEW_JAXLIB
    else None
)


class OneShotJit:
    """``jax.jit(fn)`` that compiles with CPU one-shot options when its arguments live on CPU.

    Two jitted versions of ``fn``; each call picks one by the platform of its first array
    argument (JAX's default backend for tracers and non-arrays), so GPU/TPU programs keep
    XLA's defaults.
    """

    def __init__(self, fn: Any, options: dict[str, Any] | None, **jit_kwargs: Any) -> None:
        functools.update_wrapper(self, fn)
        self._cpu = jax.jit(fn, compiler_options=options, **jit_kwargs)
        self._default = jax.jit(fn, **jit_kwargs) if options else self._cpu

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return (self._cpu if _on_cpu(args) else self._default)(*args, **kwargs)

    def _cache_size(self) -> int:
        sizes = {id(j): j._cache_size() for j in (self._cpu, self._default)}  # type: ignore[attr-defined]
        return sum(sizes.values())


def _on_cpu(args: tuple[Any, ...]) -> bool:
    for a in args:
        if isinstance(a, jax.Array) and not isinstance(a, jax.core.Tracer):
            return all(d.platform == "cpu" for d in a.devices())
    return jax.default_backend() == "cpu"


def one_shot_jit(*, quick_run: bool = False, **jit_kwargs: Any) -> Any:
    """Decorator: :class:`OneShotJit` with the one-shot options (``quick_run``: also LLVM -O0,
    for programs whose run is tiny next to their compile)."""
    options = QUICK_RUN_COMPILER_OPTIONS if quick_run else ONE_SHOT_COMPILER_OPTIONS
    return lambda fn: OneShotJit(fn, options, **jit_kwargs)


# ---- the CLI's persistent compilation cache -------------------------------------------------

NO_CACHE_ENV = "FUNCDIFF_NO_CACHE"
"""Set to anything but ``""``/``0`` to keep the CLI off the persistent compilation cache."""

CACHE_MAX_BYTES = 256 * 2**20
"""Size bound of funcdiff's cache directory: JAX evicts the least recently used entries."""


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/funcdiff/jax``, or ``~/.cache/funcdiff/jax`` (the XDG default)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "funcdiff" / "jax"


def enable_persistent_cache(
    *, max_bytes: int = CACHE_MAX_BYTES, environ: Mapping[str, str] | None = None
) -> Path | None:
    """Points JAX's persistent compilation cache at funcdiff's per-user directory.

    What the CLI calls before a command runs, so that a second ``funcdiff demo`` or
    ``funcdiff check`` loads its XLA executables instead of compiling them. Every program is
    cached (no minimum compile time), the directory is bounded by ``max_bytes`` (least
    recently used entries go first). Nothing changes when the user turned it off
    (``FUNCDIFF_NO_CACHE=1``) or configured a cache for JAX already
    (``jax_compilation_cache_dir`` set, or ``JAX_COMPILATION_CACHE_DIR`` in the environment):
    theirs is used as they set it. Library calls never call this: they follow JAX's own
    configuration.

    Args:
      max_bytes: the size bound of the cache directory (bytes, > 0).
      environ: the environment to read (default ``os.environ``).

    Returns:
      The directory now used, or None when funcdiff left JAX's configuration alone.

    Examples:
      >>> enable_persistent_cache(environ={"FUNCDIFF_NO_CACHE": "1"}) is None
      True
    """
    env = os.environ if environ is None else environ
    if env.get(NO_CACHE_ENV, "").strip() not in ("", "0"):
        return None
    if env.get("JAX_COMPILATION_CACHE_DIR") or getattr(
        jax.config, "jax_compilation_cache_dir", None
    ):
        return None
    path = default_cache_dir(env)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: run without the cache rather than fail
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_compilation_cache_max_size", int(max_bytes))
    return path
