"""`funcdiff regress`: CSV and generated data, JSON, bootstrap, plot, one-line errors."""

from __future__ import annotations

import json
import sys

import jax
import numpy as np
import optax
import pytest

from funcdiff import seed
from funcdiff._cli import main
from funcdiff.regression import fit, ols


@pytest.fixture
def csv_file(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=40), rng.normal(size=40)
    t = 1.5 + 2 * a - b + 0.1 * rng.normal(size=40)
    path = tmp_path / "data.csv"
    lines = ["a,b,target"] + [f"{u},{v},{w}" for u, v, w in zip(a, b, t, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path, np.column_stack([a, b]), t


def _json(capsys, argv):
    code = main(argv)
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_generated_tutorial_data_matches_the_library(capsys):
    code, out = _json(capsys, ["regress", "--json", "--n", "100", "--epochs", "500"])
    assert code == 0
    x, y = seed.regression_data(jax.random.key(0), 100)
    r = fit(x, y, optimizer=optax.sgd(0.1), epochs=500)
    np.testing.assert_allclose(out["params"]["intercept"], r.params["intercept"], rtol=1e-6)
    np.testing.assert_allclose(out["params"]["coef"], r.params["coef"], rtol=1e-6)
    np.testing.assert_allclose(out["ols"]["coef"], ols(x, y)["coef"], rtol=1e-6)
    assert [row["epoch"] for row in out["log"]] == [0, 100, 200, 300, 400]
    assert out["status"] == "ok" and out["diverged_at"] is None


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "adamw"])
def test_csv_with_two_columns_reaches_least_squares(capsys, csv_file, optimizer):
    path, x, t = csv_file
    lr = "0.05" if optimizer in ("sgd", "momentum") else "0.1"
    argv = ["regress", "--csv", str(path), "--x", "a,b", "--y", "target", "--json",
            "--optimizer", optimizer, "--lr", lr, "--epochs", "1500", "--x64"]  # fmt: skip
    code, out = _json(capsys, argv)
    assert code == 0
    a = np.column_stack([np.ones(len(t)), x])
    sol = np.linalg.lstsq(a, t, rcond=None)[0]
    np.testing.assert_allclose(out["ols"]["coef"], sol[1:], rtol=1e-10)
    atol = 1e-3 if optimizer == "adamw" else 1e-5  # adamw decays the weights a little
    np.testing.assert_allclose(out["params"]["coef"], sol[1:], atol=atol)
    assert out["dtype"] == "float64"


def test_bootstrap_and_text_output(capsys, csv_file):
    path, _, _ = csv_file
    argv = ["regress", "--csv", str(path), "--x", "a", "--y", "target", "--bootstrap", "50"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "bootstrap SE" in text and "95% interval" in text and "coef[a]" in text
    code, out = _json(capsys, [*argv, "--json", "--level", "0.9"])
    assert code == 0 and out["bootstrap"]["n_resamples"] == 50
    lo, hi = out["bootstrap"]["confidence_interval"][1]
    assert lo < out["ols"]["coef"] < hi


def test_progress_bar_gives_the_same_fit(capsys):
    _, plain = _json(capsys, ["regress", "--json", "--epochs", "120", "--progress", "off"])
    assert main(["regress", "--epochs", "120", "--progress", "on"]) == 0
    text = capsys.readouterr().out
    assert f"{plain['params']['coef']:.6f}"[:7] in text


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--x", "a,zz", "--y", "target"], "no column 'zz'; columns are a, b, target"),
        (["--x", "a", "--y", "nope"], "no column 'nope'"),
        (["--x", "a"], "--csv needs --x COL"),
        (["--x", "a", "--y", "target", "--n", "5"], "exclusive"),
        (["--x", "a", "--y", "target", "--batch-size", "1000"], "--batch-size"),
        (["--x", "a", "--y", "target", "--level", "2"], "--level"),
    ],
)
def test_usage_errors_are_one_line_exit_2(capsys, csv_file, argv, message):
    path, _, _ = csv_file
    assert main(["regress", "--csv", str(path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("content", [None, "", "a,target\n1,x\n", "a,target\n", b"\xff\xfe\x00"])
def test_unreadable_or_bad_files_exit_2(capsys, tmp_path, content):
    path = tmp_path / "bad.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert main(["regress", "--csv", str(path), "--x", "a", "--y", "target"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("funcdiff regress: error: --csv") and err.count("\n") == 1


def test_x_without_csv_and_bad_flags(capsys):
    assert main(["regress", "--x", "a"]) == 2
    assert "--csv" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["regress", "--optimizer", "lbfgs"])
    assert e.value.code == 2


def test_divergence_exits_1_with_the_epoch(capsys):
    code, out = _json(capsys, ["regress", "--json", "--lr", "5"])
    assert code == 1 and out["status"] == "diverged" and out["diverged_at"] > 0


def test_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "fit.png"
    assert main(["regress", "--plot", str(out), "--epochs", "50"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["regress", "--plot", str(tmp_path / "p.png")]) == 2
    err = capsys.readouterr().err
    assert "funcdiff[plot]" in err and err.count("\n") == 1
