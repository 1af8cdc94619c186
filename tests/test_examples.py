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
