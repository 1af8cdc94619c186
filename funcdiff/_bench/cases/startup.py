"""Case ``startup``: what a user meets cold, each command as a fresh process.

Timed in the same run, as medians of whole processes (``python -m ...`` from exec to exit):

* ``jax-bare``: ``import jax, optax; jax.numpy.zeros(1).block_until_ready()``, the floor;
* ``jax-torch-bare``: the same with ``import torch`` (the floor of a ``compare`` process);
* ``funcdiff-demo``: ``funcdiff demo``;
* ``funcdiff-check``: ``funcdiff check funcdiff.seed:composite --at '[0.5, 0.75]'``;
* ``funcdiff-compare``: a script with one ``parity.compare`` on a small elementwise function;

each ``cold`` (no persistent compilation cache) and ``warm-cache`` (a cache directory the
first, untimed run filled: the CLI's own in a temporary ``XDG_CACHE_HOME``, for the library
script JAX's ``JAX_COMPILATION_CACHE_DIR``). The ``note`` of a row gives its ratio to
``jax-bare`` (to ``jax-torch-bare`` for ``compare``) and, from one more run with
``JAX_LOG_COMPILES=1``, the seconds JAX spent tracing, lowering and compiling: the rest over
the floor is import and Python. A last row, ``funcdiff-compare`` in mode ``warm-process``,
times one ``compare`` call on a new function in this (warm) process.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from funcdiff._bench._context import Context, Settings
from funcdiff._bench._timing import Timing, measure

NAME = "startup"
_REPEATS = {"full": 5, "quick": 3}  # processes per row; the tiny (test) level skips the case

_BARE = "import jax, optax; jax.numpy.zeros(1).block_until_ready()"
_BARE_TORCH = "import jax, optax, torch; jax.numpy.zeros(1).block_until_ready()"
_COMPARE = (
    "import numpy as np, jax.numpy as jnp, torch\n"
    "from funcdiff.parity import compare\n"
    "x = np.linspace(-1, 1, 5, dtype=np.float32)\n"
    "assert compare(lambda x: jnp.tanh(x) * x, lambda x: torch.tanh(x) * x, x).ok\n"
)
_CLI = [sys.executable, "-m", "funcdiff"]
COMMANDS: dict[str, list[str]] = {
    "jax-bare": [sys.executable, "-c", _BARE],
    "jax-torch-bare": [sys.executable, "-c", _BARE_TORCH],
    "funcdiff-demo": [*_CLI, "demo"],
    "funcdiff-check": [*_CLI, "check", "funcdiff.seed:composite", "--at", "[0.5, 0.75]"],
    "funcdiff-compare": [sys.executable, "-c", _COMPARE],
}
_FLOOR = {"funcdiff-compare": "jax-torch-bare"}
_STAGES = {"tracing": "trace", "jaxpr to MLIR module conversion": "lower", "XLA": "compile"}
_LOG = re.compile(r"Finished (tracing|jaxpr to MLIR module conversion|XLA) .*? in ([0-9.e-]+) sec")


def count(settings: Settings) -> int:
    return 2 + 2 * 3 + 1 if settings.level in _REPEATS else 1


def _env(device: str, xdg: str, cache: bool, library_cache: str | None) -> dict[str, str]:
    import funcdiff

    root = str(Path(funcdiff.__file__).resolve().parents[1])
    drop = ("FUNCDIFF_NO_CACHE", "JAX_COMPILATION_CACHE_DIR", "JAX_LOG_COMPILES")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["XDG_CACHE_HOME"] = xdg
    if device == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
    if not cache:
        env["FUNCDIFF_NO_CACHE"] = "1"
    elif library_cache is not None:  # the conftest.py recipe of docs/benchmarks.md, by env
        env["JAX_COMPILATION_CACHE_DIR"] = library_cache
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return env


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"`{' '.join(cmd[:4])}` exited {proc.returncode}: {tail}")
    return wall, proc.stderr


def breakdown(stderr: str) -> dict[str, float]:
    """Seconds of tracing, lowering and XLA compilation in a ``JAX_LOG_COMPILES=1`` log."""
    out = dict.fromkeys(_STAGES.values(), 0.0)
    for stage, secs in _LOG.findall(stderr):
        out[_STAGES[stage]] += float(secs)
    return out


def _timing(walls: list[float]) -> Timing:
    med = statistics.median(walls)
    return Timing(med, min(walls), max(walls), walls[0], 0.0, len(walls), 1)


def run(ctx: Context) -> None:
    repeats = _REPEATS.get(ctx.settings.level)
    if repeats is None:
        ctx.skip(NAME, "funcdiff-demo", f"not run at level {ctx.settings.level!r}", steps=1)
        return
    has_torch = ctx.torch is not None
    medians: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory(prefix="funcdiff-startup-") as tmp:
        for mode in ("cold", "warm-cache"):
            cache = mode == "warm-cache"
            for impl, cmd in COMMANDS.items():
                if ("torch" in impl or impl == "funcdiff-compare") and not has_torch:
                    ctx.skip(NAME, impl, str(ctx.torch_note))
                    continue
                if impl.endswith("bare") and cache:
                    continue  # nothing to cache: the floor is the same
                lib = os.path.join(tmp, "jax-lib") if impl == "funcdiff-compare" else None
                env = _env(ctx.device.platform, os.path.join(tmp, "xdg"), cache, lib)
                if cache:
                    _run(cmd, env)  # fills the cache
                walls = [_run(cmd, env)[0] for _ in range(repeats)]
                medians[impl, mode] = statistics.median(walls)
                note = ""
                if not impl.endswith("bare"):
                    floor = medians.get((_FLOOR.get(impl, "jax-bare"), "cold"))
                    stages = breakdown(_run(cmd, {**env, "JAX_LOG_COMPILES": "1"})[1])
                    parts = ", ".join(f"{k} {v:.2f} s" for k, v in stages.items())
                    ratio = f"{medians[impl, mode] / floor:.2f}x bare; " if floor else ""
                    note = f"{ratio}{parts}"
                ctx.record(NAME, impl, 1, _timing(walls), mode=mode, note=note or None)
    if has_torch:
        _warm_process_compare(ctx)


def _warm_process_compare(ctx: Context) -> None:
    """One ``compare`` on a new function (a new program) in a process that has run others."""
    import jax.numpy as jnp

    from funcdiff.parity import compare

    torch = ctx.torch
    assert torch is not None
    x = np.linspace(-1, 1, 5, dtype=np.float32)
    calls = [0]

    def one() -> bool:
        calls[0] += 1
        c = 1.0 + calls[0] * 1e-3  # a new constant: a new function, traced and compiled
        ok = compare(lambda x: jnp.tanh(c * x) * x, lambda x: torch.tanh(c * x) * x, x).ok
        if not ok:
            raise AssertionError("compare disagreed on tanh(c x) x")
        return ok

    t = measure(one, lambda r: r, ctx.settings.budget)
    ctx.record(NAME, "funcdiff-compare", 5, t, mode="warm-process")
