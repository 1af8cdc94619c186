"""fit on a Mesh: 8 simulated CPU devices, and two processes through jax.distributed.

Both run in subprocesses (device count and the distributed runtime are fixed at JAX start-up)
and compare against the single-device fit computed here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import optax
import pytest

from funcdiff.regression import fit

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _data(n, p=None):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n,) if p is None else (n, p)).astype(np.float32)
    lin = x if p is None else x @ np.arange(1.0, p + 1)
    return x, (2 + lin + rng.normal(size=n)).astype(np.float32)


def _env(devices: int) -> dict[str, str]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _expected(p):
    x, y = _data(64, p)
    r = fit(x, y, optimizer=optax.adam(0.05), epochs=200)
    return np.concatenate([[float(r.params["intercept"])], np.ravel(r.params["coef"])])


CHILD_8 = textwrap.dedent(
    """
    import jax, numpy as np, optax, pytest
    from funcdiff.regression import fit, _data
    assert len(jax.devices()) == 8, jax.devices()
    mesh = jax.make_mesh((8,), ("rows",))
    for p in (3,):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64,) if p is None else (64, p)).astype(np.float32)
        lin = x if p is None else x @ np.arange(1.0, p + 1)
        y = (2 + lin + rng.normal(size=64)).astype(np.float32)
        xs, _ = _data.shard_rows(_data.check_data(x, y), mesh)
        assert len(xs.sharding.device_set) == 8 and xs.addressable_shards[0].data.shape[0] == 8
        r = fit(x, y, optimizer=optax.adam(0.05), epochs=200, mesh=mesh)
        print("RESULT", p, float(r.params["intercept"]), *np.ravel(r.params["coef"]).tolist())
        with pytest.raises(ValueError, match="divisible"):
            fit(x[:60], y[:60], mesh=mesh)
    # large data: each of the 8 devices takes the blocked gradient of its rows (shard_map)
    from funcdiff.regression import _fit
    _fit.BLOCK_ROWS = 1024
    n = 8 * 16 * 1024
    rng = np.random.default_rng(2)
    x = rng.normal(size=n).astype(np.float32)
    y = (2 + x + rng.normal(size=n)).astype(np.float32)
    call = _fit._boundary(x, y, optax.sgd(0.1), 20, None, None, None, None, 5, mesh, "autodiff")
    assert call.settings[-3] is not None and call.settings[-2] == 1024
    sharded = fit(x, y, optimizer=optax.sgd(0.1), epochs=20, mesh=mesh)
    plain = fit(x, y, optimizer=optax.sgd(0.1), epochs=20)
    np.testing.assert_allclose(sharded.losses, plain.losses, rtol=1e-5)
    np.testing.assert_allclose(sharded.params["coef"], plain.params["coef"], rtol=1e-5)
    print("SHARDED OK")
    """
)


def test_fit_on_8_simulated_devices_equals_single_device():
    out = subprocess.run(
        [sys.executable, "-c", CHILD_8],
        env=_env(8),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = [line.split()[1:] for line in out.stdout.splitlines() if line.startswith("RESULT")]
    assert len(results) == 1
    assert "SHARDED OK" in out.stdout
    for row, p in zip(results, (3,), strict=True):
        got = np.array([float(v) for v in row[1:]])
        np.testing.assert_allclose(got, _expected(p), rtol=1e-5, atol=1e-6)


CHILD_DIST = textwrap.dedent(
    """
    import sys
    import jax
    pid, port = int(sys.argv[1]), sys.argv[2]
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                               process_id=pid, initialization_timeout=60)
    import numpy as np, optax
    from funcdiff.regression import fit
    assert jax.process_count() == 2 and len(jax.devices()) == 2 and len(jax.local_devices()) == 1
    rng = np.random.default_rng(0)
    x = rng.normal(size=64).astype(np.float32)
    y = (2 + x + rng.normal(size=64)).astype(np.float32)
    mesh = jax.make_mesh((2,), ("rows",))  # one CPU device per process: rows span both
    r = fit(x, y, optimizer=optax.adam(0.05), epochs=200, mesh=mesh)
    print("RESULT", float(r.params["intercept"]), float(r.params["coef"]), flush=True)
    jax.distributed.shutdown()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


def test_fit_across_two_processes_with_jax_distributed():
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD_DIST, str(pid), port],
            env=_env(1),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pid in range(2)
    ]
    outs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=120)
            assert proc.returncode == 0, stderr[-3000:]
            outs.append(stdout)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    expected = _expected(None)
    for stdout in outs:
        row = next(line for line in stdout.splitlines() if line.startswith("RESULT"))
        got = np.array([float(v) for v in row.split()[1:]])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
