"""`funcdiff port`: the tree, JSON, exit codes 0/1/2, both kinds of JAX factory."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("flax")

from funcdiff._cli import main
from funcdiff._cli.port import _inputs, parse_input

FACTORIES = textwrap.dedent(
    """
    import jax.numpy as jnp
    import torch
    from flax import nnx


    class T(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.fc1 = torch.nn.Linear(3, 3)
            self.fc2 = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.fc2(torch.tanh(self.fc1(x)))


    class J(nnx.Module):
        def __init__(self):
            self.fc1 = nnx.Linear(3, 3, rngs=nnx.Rngs(0))
            self.fc2 = nnx.Linear(3, 2, rngs=nnx.Rngs(0))

        def __call__(self, x):
            return self.fc2(jnp.tanh(self.fc1(x)))


    def torch_model():
        return T()


    def jax_unloaded():
        return J()


    def jax_loaded(t, transpose=True):
        j = J()
        for n in ("fc1", "fc2"):
            w = getattr(t, n).weight.detach().numpy()
            getattr(j, n).kernel[...] = w.T if transpose or n == "fc2" else w
            getattr(j, n).bias[...] = getattr(t, n).bias.detach().numpy()
        return j


    def jax_buggy(t):
        return jax_loaded(t, transpose=False)


    def jax_off_by_1e4(t):
        j = jax_loaded(t)
        j.fc2.bias[...] = j.fc2.bias[...] + 1e-4
        return j


    def broken():
        raise RuntimeError("boom")
    """
)


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "portfactories.py").write_text(FACTORIES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("jax_factory", ["portfactories:jax_loaded", "portfactories:jax_unloaded"])
def test_agreeing_port_exits_0_with_the_tree(factories, capsys, jax_factory):
    code = main(["port", "portfactories:torch_model", jax_factory, "--input", "4,3", "--isolate"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "model parity OK: float32" in out and "fc1 (Linear) <-> fc1" in out


def test_bug_exits_1_and_json_names_the_layer(factories, capsys):
    code = main(
        [
            "port",
            "portfactories.py:torch_model",
            "portfactories.py:jax_buggy",
            "--input",
            "4,3,float64",
            "--json",
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 1 and data["ok"] is False and data["dtype"] == "float64"
    assert data["first_divergence"] == "fc1"
    assert "transposed-weight" in {f["rule"] for f in data["diagnosis"]}


def test_x64_and_train_flags(factories, capsys):
    code = main(
        [
            "port",
            "portfactories:torch_model",
            "portfactories:jax_loaded",
            "--input",
            "5,3",
            "--x64",
            "--train",
        ]
    )
    assert code == 0
    assert "float64, train mode" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nocolon", "portfactories:jax_loaded", "--input", "2,3"], "module:function"),
        (["nosuchmodule:f", "portfactories:jax_loaded", "--input", "2,3"], "cannot import"),
        (["portfactories:nothing", "portfactories:jax_loaded", "--input", "2,3"], "no function"),
        (["portfactories:torch_model", "portfactories:jax_loaded", "--input", "2,x,3"], "SHAPE"),
        (["portfactories:torch_model", "portfactories:jax_loaded", "--input", "2,3,cplx"], "dtype"),
        (["portfactories:torch_model", "portfactories:jax_loaded", "--input", "2,5"], "raised"),
    ],
)
def test_usage_errors_exit_2_with_one_line(factories, capsys, argv, message):
    assert main(["port", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("flag", "value"), [("--rtol", "-1"), ("--atol", "nan"), ("--atol", "x"), ("--rtol", "inf")]
)
def test_a_bad_tolerance_exits_2_naming_the_flag(factories, capsys, flag, value):
    argv = ["port", "portfactories:torch_model", "portfactories:jax_loaded", "--input", "2,3"]
    with pytest.raises(SystemExit) as e:
        main([*argv, flag, value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"argument {flag}: expected" in err and err.count("\n") == 1


def test_a_factory_that_raises_exits_1_as_the_users_failure(factories, capsys):
    assert main(["port", "portfactories:broken", "portfactories:jax_loaded", "--input", "2,3"]) == 1
    err = capsys.readouterr().err
    assert "TORCH_FACTORY raised RuntimeError: boom" in err and err.count("\n") == 1


def test_parse_input():
    assert parse_input("4,3,32,32", x64=False) == ((4, 3, 32, 32), "float32")
    assert parse_input("2,7,int64", x64=True) == ((2, 7), "int64")
    assert parse_input("3", x64=True) == ((3,), "float64")


def test_a_negative_seed_draws_inputs_like_compare_models_key():
    # `--seed -1` is passed on as compare_model's key, which reads it as 2**64 - 1; the inputs
    # use the same rule instead of numpy refusing it (an "unexpected ValueError", exit 1)
    (a,) = _inputs(["2,3"], x64=True, seed=-1)
    b = np.random.default_rng(2**64 - 1).standard_normal((2, 3))
    (c,) = _inputs(["2,3"], x64=True, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_rtol_atol_replace_the_default_tolerances(factories, capsys):
    # fc2's bias is off by 1e-4: beyond float32's defaults (rtol 1e-4, atol 1e-5 on outputs of
    # size ~0.5), inside 1e-3 (what a deep float32 port like examples/port_resnet.py needs).
    argv = ["port", "portfactories:torch_model", "portfactories:jax_off_by_1e4", "--input", "4,3"]
    assert main([*argv, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["first_divergence"] == "fc2"
    assert main([*argv, "--rtol", "1e-3", "--atol", "1e-3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True
    fc2 = next(row for row in data["layers"] if row["torch_name"] == "fc2")
    assert {(r["rtol"], r["atol"]) for r in fc2["rows"]} == {(1e-3, 1e-3)}


EQX_FACTORIES = textwrap.dedent(
    """
    from __future__ import annotations

    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import torch
    from equinox.nn import Linear


    class T(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.fc1 = torch.nn.Linear(3, 4)
            self.fc2 = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc2(torch.tanh(self.fc1(x)))


    class J(eqx.Module):
        # string annotations without a module prefix: dataclasses resolve them through
        # sys.modules[J.__module__], which must exist while the file executes.
        fc1: Linear
        fc2: Linear

        def __init__(self):
            k1, k2 = jax.random.split(jax.random.key(0))
            self.fc1 = Linear(3, 4, key=k1)
            self.fc2 = Linear(4, 2, key=k2)

        def __call__(self, x):
            return self.fc2(jnp.tanh(self.fc1(x)))


    def torch_model():
        return T()


    def jax_model():
        return J()
    """
)


def test_a_file_defining_an_equinox_module_loads(tmp_path, monkeypatch, capsys):
    pytest.importorskip("equinox")
    (tmp_path / "eqx-models.py").write_text(EQX_FACTORIES)
    monkeypatch.chdir(tmp_path)
    spec = "eqx-models.py"
    code = main(["port", f"{spec}:torch_model", f"{spec}:jax_model", "--input", "3,float64"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "model parity OK: float64" in captured.out and "fc2 (Linear) <-> fc2" in captured.out
