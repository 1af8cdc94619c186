"""`funcdiff demo`: the tutorial's numbers and the --json contract."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from funcdiff._cli import main
from funcdiff._demo import run_demo

TOP_KEYS = {
    "gradient",
    "manual_gradient",
    "finite_difference",
    "regression",
    "device",
    "dtype",
    "versions",
}
REGRESSION_KEYS = {"n", "epochs", "lr", "log", "b0", "b1", "ols", "final_loss"}


@pytest.fixture(scope="module")
def demo_json():
    """One real run of `python -m funcdiff demo --json` in a subprocess (the user's path)."""
    proc = subprocess.run(
        [sys.executable, "-m", "funcdiff", "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # exactly one JSON object on stdout


def test_json_contract(demo_json):
    assert set(demo_json) == TOP_KEYS
    assert set(demo_json["finite_difference"]) == {"forward", "central", "step"}
    assert demo_json["finite_difference"]["step"] == 0.001
    reg = demo_json["regression"]
    assert set(reg) == REGRESSION_KEYS
    assert (reg["n"], reg["epochs"], reg["lr"]) == (100, 500, 0.1)
    assert [row["epoch"] for row in reg["log"]] == [0, 100, 200, 300, 400]
    for row in reg["log"]:
        assert set(row) == {"epoch", "loss", "grad"} and len(row["grad"]) == 2
    assert demo_json["device"] == "cpu" and demo_json["dtype"] == "float32"
    assert {"jax", "optax"} <= set(demo_json["versions"])


def test_json_has_the_tutorials_numbers(demo_json):
    np.testing.assert_allclose(demo_json["gradient"], [1.3633, 0.1912], atol=1e-4)
    np.testing.assert_allclose(demo_json["manual_gradient"], demo_json["gradient"], rtol=1e-6)
    fd = demo_json["finite_difference"]
    np.testing.assert_allclose(fd["forward"], [1.3619, 0.1919], atol=1e-4)
    np.testing.assert_allclose(fd["central"], [1.3633, 0.1912], atol=2e-4)
    reg = demo_json["regression"]
    np.testing.assert_allclose([reg["b0"], reg["b1"]], reg["ols"], atol=1e-4)
    # The slope and intercept of y = 2 + x + noise, n = 100.
    assert abs(reg["b0"] - 2) < 0.4 and abs(reg["b1"] - 1) < 0.4
    # Converged as in the tutorial: the gradient vanishes by epoch 100 and the loss is flat.
    first, *rest = reg["log"]
    assert np.abs(first["grad"]).max() > 1e-2
    for row in rest:
        assert np.abs(row["grad"]).max() < 1e-4
        assert row["loss"] == pytest.approx(reg["final_loss"], rel=1e-5)


def test_log_gradient_is_the_loss_gradient_before_the_update():
    """Each logged grad is d(MSE)/d(b0, b1) at that epoch's starting parameters."""
    result = run_demo(epochs=3, n=10, x64=True)
    import jax

    from funcdiff import seed

    k_data, k_init = jax.random.split(jax.random.key(0))
    with jax.enable_x64(True):
        x, y = seed.regression_data(k_data, 10)
        b = jax.random.normal(k_init, (2,), dtype=x.dtype)
        loss = lambda b: ((y - b[0] - b[1] * x) ** 2).mean()
        row = result.log[0]
        np.testing.assert_allclose(row["loss"], float(loss(b)), rtol=1e-12)
        np.testing.assert_allclose(row["grad"], np.asarray(jax.grad(loss)(b)), rtol=1e-10)


def test_x64_demo_is_tight():
    result = run_demo(x64=True)
    assert result.dtype == "float64" and result.ok
    np.testing.assert_allclose(result.gradient, result.manual_gradient, rtol=1e-12)
    np.testing.assert_allclose([result.b0, result.b1], result.ols, atol=1e-10)


def test_table_output_shows_every_section(capsys):
    assert main(["demo", "--epochs", "200", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    for text in (
        "jax.jit(jax.grad(composite))",
        "manual_grad",
        "forward difference, h=0.001",
        "central difference",
        "optax.sgd(lr=0.1)",
        "least squares",
        "1.3633",
        "0.1912",
    ):
        assert text in out


def test_flags_change_the_run(capsys):
    assert main(["demo", "--json", "--n", "50", "--epochs", "250", "--lr", "0.05", "--x64"]) == 0
    out = json.loads(capsys.readouterr().out)
    reg = out["regression"]
    assert (reg["n"], reg["epochs"], reg["lr"]) == (50, 250, 0.05)
    assert [r["epoch"] for r in reg["log"]] == [0, 100, 200]
    assert out["dtype"] == "float64"


def _usage_error(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    return exc.value.code, err


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--n", "0"],
        ["demo", "--n", "-5"],
        ["demo", "--epochs", "abc"],
        ["demo", "--lr", "-1"],
        ["demo", "--lr", "nan"],
        ["demo", "--device", "npu"],
        ["frobnicate"],
        [],
    ],
)
def test_usage_errors_are_one_line_exit_2(capsys, argv):
    code, err = _usage_error(capsys, argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "error" in err and "Traceback" not in err


@pytest.mark.parametrize("platform", ["gpu", "tpu"])
def test_missing_device_is_one_line_exit_1(capsys, platform):
    import jax

    if any(d.platform == platform for d in jax.devices()):
        pytest.skip(f"this machine has a {platform}")
    assert main(["demo", "--device", platform]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"No {platform} device found; available devices: cpu" in err
