"""The benchmark harness runs on tiny sizes and writes the schema, table and plots.

No timing assertions: timings are the benchmarks' business, not the tests'.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import ClassVar

import numpy as np
import pytest

from funcdiff._bench import CASES, LEVEL_ENV, Budget, Record, _output, measure, run_bench
from funcdiff._bench.cases import regression, seed_grad
from funcdiff._cli import main

CONTRACT = ("case", "impl", "size", "median_s", "min_s", "max_s", "compile_s", "repeats")
IMPLS = {
    "funcdiff",
    "jax-nojit",
    "torch-eager",
    "torch-compile",
    "torch-func",
    "torch-gradcheck",
    "torch-gradcheck-fast",
    "jax-check-grads",
    "numpy-pass",
    "jax-jit",
    "numdifftools",
    "scipy-differentiate",
}
MACHINE = ("cpu", "cores", "memory", "device", "python", "jax", "jaxlib", "optax", "torch")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    report = run_bench(out=out, level="tiny", progress=False)
    return out, report


def test_tiny_run_writes_the_schema(tiny_run):
    out, report = tiny_run
    data = json.loads((out / "results.json").read_text())
    assert set(MACHINE) <= set(data["machine"])
    assert data["machine"]["device"] == str(report.machine["device"])
    assert data["results"], "no rows at all"
    for row in data["results"]:
        assert set(CONTRACT) <= set(row)
        assert row["case"] in CASES
        assert row["impl"] in IMPLS
        assert isinstance(row["size"], int) and row["size"] >= 1
        assert 0 < row["min_s"] <= row["median_s"] <= row["max_s"]
        assert row["compile_s"] >= 0 and row["repeats"] >= 1
    # Nothing crashed: every skip is a missing dependency or a level choice, never a failure.
    assert not [s for s in data["skipped"] if s["impl"] == "*"], data["skipped"]
    impls = {r["impl"] for r in data["results"] if r["case"] == "seed-grad"}
    assert {"funcdiff", "jax-nojit"} <= impls


def test_tiny_run_has_torch_rows_when_torch_is_installed(tiny_run):
    pytest.importorskip("torch")
    _, report = tiny_run
    labels = {(r.case, r.impl) for r in report.records}
    assert {
        ("seed-grad", "torch-eager"),
        ("seed-grad", "torch-func"),
        ("gradcheck", "torch-gradcheck"),
        ("gradcheck", "torch-gradcheck-fast"),
        ("gradcheck", "jax-check-grads"),
        ("regression", "numpy-pass"),
    } <= labels


def test_tiny_run_writes_table_and_plots(tiny_run):
    pytest.importorskip("matplotlib")
    out, _ = tiny_run
    md = (out / "results.md").read_text()
    for case in ("seed-grad", "regression", "gradcheck", "bootstrap", "parity", "port"):
        assert f"## {case}" in md
    for name in ("time_vs_size.png", "speedup.png", "fd_accuracy.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # fd-accuracy: its accuracy table (the tiny suite: exp at 4 points), also in the json
    table = md.split("## fd-accuracy", 1)[1]
    assert "| function | funcdiff[central] | funcdiff[richardson]" in table
    assert "| exp | " in table and "(!) (" not in table  # every estimate bounded the error
    rows = json.loads((out / "results.json").read_text())["run"]["fd_accuracy"]
    complex_row = next(r for r in rows if r["impl"] == "funcdiff[complex]")
    assert complex_row["rel_error"] <= 1e-15 and complex_row["bounded"]


def test_without_torch_rows_are_skipped_with_a_note(tmp_path):
    report = run_bench(
        out=tmp_path,
        level="tiny",
        cases=["seed-grad"],
        progress=False,
        use_torch=False,
        plots=False,
    )
    assert {r.impl for r in report.records} == {"funcdiff", "jax-nojit"}
    assert {s.impl for s in report.skipped} == {"torch-eager", "torch-func", "torch-compile"}
    assert "plots skipped" in report.notes


def test_without_matplotlib_plots_are_skipped_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    report = run_bench(
        out=tmp_path, level="tiny", cases=["seed-grad"], progress=False, use_torch=False
    )
    assert any("matplotlib is not installed" in n for n in report.notes)
    assert not list(tmp_path.glob("*.png"))
    assert (tmp_path / "results.json").exists() and (tmp_path / "results.md").exists()


def test_a_failing_case_is_recorded_not_fatal(tmp_path, monkeypatch):
    def broken(ctx):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(seed_grad, "run", broken)
    report = run_bench(
        out=tmp_path,
        level="tiny",
        cases=["seed-grad"],
        progress=False,
        use_torch=False,
        plots=False,
    )
    assert report.records == ()
    assert "planted failure" in report.skipped[0].note
    assert json.loads((tmp_path / "results.json").read_text())["skipped"][0]["impl"] == "*"


def test_wrong_answers_are_refused_before_timing():
    with pytest.raises(AssertionError, match="expected"):
        seed_grad._check(np.array([1.0, 0.0]), np.array([1.3633, 0.1912]), "planted")
    with pytest.raises(AssertionError, match="slope"):
        regression._agree({"funcdiff": 1.0, "torch-eager": 1.1}, 100)
    regression._agree({"funcdiff": 1.0, "torch-eager": 1.0000001}, 100)


@pytest.mark.parametrize("warmup", [0, 1, 3])
def test_measure_reports_per_call_statistics(warmup):
    calls = []
    budget = Budget(repeats=4, min_repeats=3, repeat_s=0.001, total_s=0.01, warmup=warmup)
    t = measure(lambda: calls.append(1), lambda r: r, budget)
    assert 3 <= t.repeats <= 4 and t.number >= 1
    assert len(calls) == 1 + warmup + t.repeats * t.number
    assert t.min_s <= t.median_s <= t.max_s and t.compile_s >= 0


def test_speedup_is_baseline_over_row():
    mk = lambda impl, s: Record("seed-grad", impl, 2, s, s, s, 0.0, 3)
    rows = [mk("torch-eager", 70e-6), mk("funcdiff", 5e-6)]
    assert _output.speedup(rows[1], rows) == pytest.approx(14.0)
    assert _output.fmt_time(5e-6) == "5 µs" and _output.fmt_time(0.007) == "7 ms"


def test_cli_unknown_case_lists_the_known_ones(capsys):
    assert main(["bench", "--case", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'nope'" in err
    for case in CASES:
        assert case in err


def test_cli_unwritable_out_is_one_line_exit_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["bench", "--case", "seed-grad", "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Cannot write benchmark results" in err


@pytest.mark.slow
def test_cli_runs_end_to_end(tmp_path):
    env = {**os.environ, LEVEL_ENV: "tiny", "PYTHONPATH": ROOT}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "funcdiff",
            "bench",
            "--quick",
            "--case",
            "seed-grad",
            "--no-torch",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "seed-grad" in proc.stdout and "results.json" in proc.stdout
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["run"]["level"] == "tiny"


def test_parity_case_times_the_catalog_per_dtype(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from _parity_local import good_cases

    import funcdiff.parity
    from funcdiff.parity import _suite

    monkeypatch.setattr(_suite, "_load_catalog", good_cases)
    monkeypatch.setattr(funcdiff.parity, "catalog", good_cases, raising=False)
    report = run_bench(out=tmp_path, level="tiny", cases=["parity"], progress=False, plots=False)
    assert not report.skipped, report.skipped
    (row,) = report.records
    assert (row.case, row.impl, row.size, row.dtype) == ("parity", "funcdiff", 2, "float32")
    assert row.note == "subset: 2 of 3 catalog cases (level 'tiny')"  # and no failures


def test_parity_case_names_what_is_missing(tmp_path, monkeypatch):
    import funcdiff.parity

    monkeypatch.delattr(funcdiff.parity, "run_catalog")
    report = run_bench(out=tmp_path, level="tiny", cases=["parity"], progress=False, plots=False)
    assert report.records == ()
    assert "funcdiff.parity.run_catalog" in report.skipped[0].note


def test_cli_missing_device_is_one_line_exit_1(tmp_path, capsys):
    import jax

    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("this machine has a GPU")
    assert main(["bench", "--device", "gpu", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "No gpu device" in err


def test_port_case_names_what_is_missing(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import dataclasses

    import funcdiff.parity
    from funcdiff._bench import LEVELS

    monkeypatch.setitem(LEVELS, "tiny", dataclasses.replace(LEVELS["tiny"], port_shape=(2, 6)))
    monkeypatch.delattr(funcdiff.parity, "compare_model", raising=False)
    report = run_bench(out=tmp_path, level="tiny", cases=["port"], progress=False, plots=False)
    assert report.records == ()
    (skip,) = report.skipped
    assert (skip.case, skip.impl) == ("port", "funcdiff")
    assert "funcdiff.parity.compare_model" in skip.note


class _TinyPortExample:
    """Stands in for examples/port_resnet.py in the port case: a conv, a BatchNorm, a Linear."""

    FLOAT32_TOL: ClassVar[dict[str, float]] = {"rtol": 1e-4, "atol": 1e-5}

    @staticmethod
    def make_models(dtype):
        import jax.numpy as jnp
        import torch
        from flax import nnx

        class TorchNet(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
                self.bn = torch.nn.BatchNorm2d(4)
                self.fc = torch.nn.Linear(4, 2)

            def forward(self, x):
                return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))

        class Net(nnx.Module):
            def __init__(self):
                rngs = nnx.Rngs(0)
                self.conv = nnx.Conv(3, 4, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs)
                self.bn = nnx.BatchNorm(4, momentum=0.9, epsilon=1e-5, rngs=rngs)
                self.fc = nnx.Linear(4, 2, rngs=rngs)

            def __call__(self, x):
                h = self.bn(self.conv(jnp.transpose(x, (0, 2, 3, 1))))
                return self.fc(nnx.relu(h).mean((1, 2)))

        torch.manual_seed(0)
        return TorchNet(), Net()

    @staticmethod
    def make_input(batch, size, dtype="float32"):
        return np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(dtype)


def test_port_case_times_the_comparison(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("flax")
    import dataclasses

    import funcdiff.parity
    from funcdiff._bench import LEVELS
    from funcdiff._bench.cases import port

    monkeypatch.setitem(LEVELS, "tiny", dataclasses.replace(LEVELS["tiny"], port_shape=(2, 6)))
    monkeypatch.setattr(port, "load", lambda: (funcdiff.parity, _TinyPortExample, None))
    report = run_bench(out=tmp_path, level="tiny", cases=["port"], progress=False, plots=False)
    assert not report.skipped, report.skipped
    rows = {r.impl: r for r in report.records}
    assert set(rows) == {"torch-eager", "jax-jit", "funcdiff"}
    assert all(r.size == 2 and r.dtype == "float32" for r in rows.values())
    note = rows["funcdiff"].note
    assert "compare_model(isolate=True, rtol=0.0001, atol=1e-05): 5 layers" in note, note
    assert note.endswith("agrees")


def test_port_case_is_skipped_at_the_tiny_level(tiny_run):
    _, report = tiny_run
    (skip,) = [s for s in report.skipped if s.case == "port"]
    assert "not run at level 'tiny'" in skip.note and not [
        r for r in report.records if r.case == "port"
    ]


def test_cli_help_lists_every_case():
    from funcdiff._bench.cases import CASES
    from funcdiff._cli import bench as bench_cli

    assert set(bench_cli._CASES) == set(CASES)
