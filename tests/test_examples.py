"""Every script in examples/ runs and prints what its header says it prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str, *args: str, timeout: float = 300) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_seed_autodiff_reproduces_the_tutorial():
    out = run_example("seed_autodiff.py")
    assert "[1.3632776  0.19118989]" in out  # jax.grad and manual_grad, float32
    assert "forward difference : [1.36" in out and "0.191" in out
    assert "check_grad ok      : True" in out
    assert "Epoch 400: Loss =" in out
    header = (ROOT / "examples" / "seed_autodiff.py").read_text().split('"""')[1]
    for line in out.splitlines():
        assert line.strip() in header, f"header comment out of date: {line!r}"


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_every_example_documents_its_output(path):
    doc = path.read_text().split('"""')[1]
    assert "Sample output" in doc or "Output" in doc, f"{path.name} has no output sample"


# ---- the model-porting examples ---------------------------------------------------------------
# Spawning each script would cost a fresh jax + torch + flax import and its full run (ResNet-18:
# four comparisons plus a planted bug, minutes on two busy cores), so the tests import the
# scripts and run them small: the transformer and LSTM scripts' main() in float64 (float32
# runs the same code), ResNet-18 at batch 2, 64x64 on the two comparisons that cover the most
# (float64 train: outputs, every gradient, running statistics; float32 eval with a planted bug,
# everything before it agreeing).


def load_example(name: str):
    import importlib.util

    pytest.importorskip("torch")
    pytest.importorskip("flax")
    pytest.importorskip("equinox")
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", ROOT / "examples" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses (equinox modules) look their module up
    spec.loader.exec_module(module)
    return module


def assert_matches_header(name: str, out: str) -> None:
    """Every printed line is in the header's sample, error figures aside (they vary by BLAS)."""
    header = (ROOT / "examples" / f"{name}.py").read_text().split('"""')[1]
    for line in out.splitlines():
        key = line.split("max abs error:")[0]
        assert key.strip() in header, f"header comment of {name}.py out of date: {line!r}"


@pytest.fixture(scope="module")
def resnet():
    return load_example("port_resnet")


def test_port_resnet_float64_train_agrees_on_everything(resnet):
    mapping, result = resnet.compare("float64", True, batch=2, size=64)
    assert mapping.ok and len(mapping.rows) == 102 and len(mapping.dropped) == 20
    assert result.ok and result.first_divergence is None and result.train, str(result)
    assert result.diagnosis == ()  # the right port draws no convention finding (its BatchNorm2d
    # subclass updates the running variance torch's way and keeps float64 statistics)
    kinds = {layer.kind for layer in result.layers if layer.forward is not None}
    assert {"Conv2d", "BatchNorm2d", "Linear", "Sequential"} <= kinds
    grads = [p for p in result.params if p.quantity == "grad"]
    stats = [p for p in result.params if p.quantity != "grad"]
    assert len(grads) == 62 and len(stats) == 40  # every weight; running mean/var of 20 BNs
    worst = max(p.row.max_abs_error for p in result.params)
    assert worst < 1e-11  # float64 all through, torch's unbiased running variance included
    assert all(layer.grad is not None for layer in result.layers if layer.kind == "Conv2d")
    assert result.summary().startswith("agrees True, 58 layers, 102 parameters")


def test_port_resnet_planted_same_padding_is_named(resnet):
    bad = resnet.planted_bug(batch=2, size=64)
    assert not bad.ok and bad.first_divergence == "layer2.0.conv1"
    assert bad.diagnosis[0].rule == "strided-same-padding"
    assert bad.diagnosis[0].layer == "layer2.0.conv1"
    # Everything before the planted layer agrees in float32 at the documented tolerances.
    before = ("conv1", "bn1", "layer1")
    early = [r for r in bad.layers if r.torch_name.startswith(before) and r.forward is not None]
    assert early and all(r.forward.passed for r in early)


def test_port_transformer_script(capsys):
    load_example("port_transformer").main(["--dtype", "float64"])  # float32: same code path
    out = capsys.readouterr().out
    assert out.count("agrees True, 14 layers, 24 parameters") == 2
    assert "planted bug, torch's mask passed as flax's: agrees False" in out
    assert "first divergence: layers.0.self_attn" in out
    assert "layers.0.self_attn: attention-mask-polarity" in out
    assert_matches_header("port_transformer", out)


def test_port_lstm_script_nnx_and_equinox(capsys):
    load_example("port_lstm").main(["--dtype", "float64"])  # float32: same code path
    out = capsys.readouterr().out
    assert "(nnx), 3 layers aligned" in out and "(equinox), 3 layers aligned" in out
    for line in (
        "nnx     float64: agrees True, 4 layers, 10",
        "equinox float64: agrees True, 4 layers, 10",
    ):
        assert line in out
    assert "planted bug, bias_ih dropped: agrees False" in out
    assert "first divergence: lstm" in out and "lstm: rnn-input-bias" in out
    assert_matches_header("port_lstm", out)


def test_port_lstm_factories_drive_the_cli(capsys, monkeypatch):
    pytest.importorskip("flax")
    from funcdiff._cli import main

    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    code = main(["port", "port_lstm:torch_factory", "port_lstm:nnx_factory", "--input", "3,10,8"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "model parity OK: float32" in out and "lstm (LSTM) <-> lstm" in out
    assert "parameters: 10 of 10 agree" in out
