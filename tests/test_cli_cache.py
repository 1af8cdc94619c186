"""The CLI's persistent compilation cache: a second process loads what the first compiled,
``--no-cache`` writes nothing, and a cache the user configured for JAX is left alone.

The subprocess tests run ``funcdiff check`` on the tutorial function (a few small programs)
with a temporary ``XDG_CACHE_HOME``; JAX logs its cache hits with ``JAX_LOG_COMPILES=1``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from funcdiff._config import (
    CACHE_MAX_BYTES,
    NO_CACHE_ENV,
    default_cache_dir,
    enable_persistent_cache,
)

ROOT = Path(__file__).resolve().parents[1]
CHECK = ["check", "funcdiff.seed:composite", "--at", "[0.5, 0.75]"]
HIT = "Persistent compilation cache hit"


def _cli(args: list[str], xdg: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in (NO_CACHE_ENV, "JAX_COMPILATION_CACHE_DIR")
    }
    env.update(XDG_CACHE_HOME=str(xdg), JAX_LOG_COMPILES="1", JAX_PLATFORMS="cpu", **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "funcdiff", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _entries(xdg: Path) -> list[Path]:
    d = xdg / "funcdiff" / "jax"
    return sorted(p for p in d.rglob("*") if p.is_file()) if d.exists() else []


def test_a_second_process_hits_the_cache(tmp_path):
    first = _cli(CHECK, tmp_path)
    assert first.returncode == 0, first.stderr
    assert HIT not in first.stderr
    written = _entries(tmp_path)
    assert written, "the first run wrote nothing to $XDG_CACHE_HOME/funcdiff/jax"
    second = _cli(CHECK, tmp_path)
    assert second.returncode == 0, second.stderr
    assert HIT in second.stderr, second.stderr[-2000:]
    assert second.stdout.splitlines()[0] == first.stdout.splitlines()[0]
    assert second.stdout.startswith("check_grad (full): PASSED")


def test_no_cache_flag_writes_nothing(tmp_path):
    run = _cli([*CHECK, "--no-cache"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert _entries(tmp_path) == []
    assert HIT not in run.stderr


def test_default_dir_follows_xdg(tmp_path):
    assert default_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "funcdiff" / "jax"
    # unset, empty or relative XDG_CACHE_HOME: the XDG default ~/.cache
    home = Path.home() / ".cache" / "funcdiff" / "jax"
    for env in ({}, {"XDG_CACHE_HOME": ""}, {"XDG_CACHE_HOME": "relative/dir"}):
        assert default_cache_dir(env) == home


@pytest.mark.parametrize(
    "env",
    [
        {NO_CACHE_ENV: "1"},
        {NO_CACHE_ENV: "yes"},
        {"JAX_COMPILATION_CACHE_DIR": "/somewhere/of/theirs"},
    ],
)
def test_turned_off_or_user_configured_leaves_jax_alone(env, tmp_path):
    import jax

    before = jax.config.jax_compilation_cache_dir
    assert enable_persistent_cache(environ={"XDG_CACHE_HOME": str(tmp_path), **env}) is None
    assert jax.config.jax_compilation_cache_dir == before
    assert not (tmp_path / "funcdiff").exists()


def test_cache_is_size_bounded():
    assert 0 < CACHE_MAX_BYTES <= 2**30
