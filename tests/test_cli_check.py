"""Tests for `funcdiff check` (in-process through main, plus the example script)."""

from __future__ import annotations

import json
import runpy
import sys
import textwrap
from pathlib import Path

import pytest

from funcdiff._cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "fdcheck_user_mod.py").write_text(
        textwrap.dedent(
            """
            import jax, jax.numpy as jnp

            def right(x):
                return jnp.sum(jnp.sin(x) * x)

            @jax.custom_vjp
            def wrong(x):
                return jnp.sum(jnp.sin(x) * x)

            wrong.defvjp(
                lambda x: (wrong(x), x),
                lambda x, g: (g * (jnp.sin(x) + x * jnp.cos(x)) * jnp.array([1.0, 1.02, 1.0]),),
            )

            def tree(t):
                return jnp.sum(t["a"] ** 2) * t["b"]

            def boom(x):
                raise RuntimeError("kaboom")

            def value_error(x):
                raise ValueError("no")

            def python_if(x):
                return jnp.sum(x) if x[0] > 0 else -jnp.sum(x)

            def returns_str(x):
                return "loss"

            NOT_CALLABLE = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return "fdcheck_user_mod"


def test_right_gradient_exit_0(capsys):
    code = main(["check", "funcdiff.seed:composite", "--at", "[0.5, 0.75]"])
    out = capsys.readouterr().out
    assert code == 0
    assert "PASSED" in out and "autodiff = jax.grad(fun)" in out


def test_manual_grad_directional_x64_json(capsys):
    argv = [
        "check",
        "funcdiff.seed:composite",
        "--at",
        "[0.5, 0.75]",
        "--mode",
        "directional",
        "--grad",
        "funcdiff.seed:manual_grad",
        "--x64",
        "--json",
    ]
    code = main(argv)
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["ok"] is True and data["mode"] == "directional"
    assert data["function"] == "funcdiff.seed:composite"
    assert data["leaves"][0]["dtype"] == "float64"


def test_wrong_gradient_exit_1_names_element(user_module, capsys):
    code = main(["check", f"{user_module}:wrong", "--at", "[0.3, 1.1, 2.0]", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert data["ok"] is False and data["worst"]["index"] == [1]
    assert main(["check", f"{user_module}:tree", "--at", '{"a": [0.3, 1.1], "b": 2}']) == 0


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["check", "funcdiff.seed", "--at", "[1]"], "MODULE:FUNCTION"),
        (["check", "no_such_module_xyz:f", "--at", "[1]"], "cannot import"),
        (["check", "funcdiff.seed:nope", "--at", "[1]"], "no attribute"),
        (["check", "funcdiff.seed:POINT", "--at", "[1]"], "not callable"),
        (["check", "funcdiff.seed:composite", "--at", "[1,"], "not valid JSON"),
        (["check", "funcdiff.seed:composite", "--at", '["a", 1]'], "expected numbers"),
        (["check", "funcdiff.seed:composite", "--at", "[]"], "expected at least one number"),
        (["check", "funcdiff.seed:composite", "--at", "[true, false]"], "got true"),
        (["check", "funcdiff.seed:composite", "--at", "[NaN, 1]"], "finite"),
        (["check", "funcdiff.seed:composite", "--at", "[1e39, 1]"], "pass --x64"),
        (["check", "funcdiff.seed:f", "--at", "[1, 2]"], "fd_jacobian"),
        (["check", "funcdiff.seed:composite", "--at", "@/no/such/file.json"], "cannot read"),
    ],
)
def test_usage_errors_exit_2_one_line(argv, needle, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["check", "funcdiff.seed:composite", "--at", "[1, 2]", "--mode", "sideways"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["check", "funcdiff.seed:composite"])
    assert e.value.code == 2


def test_user_function_raising_exit_1(user_module, capsys):
    code = main(["check", f"{user_module}:boom", "--at", "[1.0]"])
    assert code == 1
    err = capsys.readouterr().err
    assert f"`{user_module}:boom` raised RuntimeError: kaboom" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        # the user's function refuses the point: its failure, not a usage error
        (["funcdiff.seed:composite", "--at", "[1, 2, 3]"], "raised ValueError: Expected `x`"),
        (["MOD:value_error", "--at", "[1.0, 2.0]"], "`MOD:value_error` raised ValueError: no"),
        (["MOD:python_if", "--at", "[1.0, 2.0]"], "not jit-compatible"),
        (["MOD:returns_str", "--at", "[1.0, 2.0]"], "to return arrays"),
        (["MOD:right", "--at", "[1.0]", "--grad", "MOD:boom"], "`MOD:boom` raised"),
    ],
)
def test_a_failing_user_function_exits_1_with_one_line(user_module, capsys, argv, needle):
    argv = [a.replace("MOD", user_module) for a in argv]
    needle = needle.replace("MOD", user_module)
    assert main(["check", *argv]) == 1
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_example_runs(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["check_custom_vjp.py"])
    ns = runpy.run_path(str(ROOT / "examples" / "check_custom_vjp.py"))
    verdicts = ns["main"]()
    assert verdicts == {
        "right_full": True,
        "right_directional": True,
        "planted_full": False,
        "planted_directional": False,
        "planted_index": True,
        "taylor_right": True,
        "taylor_planted": False,
    }
    assert "worst <root>[5]" in capsys.readouterr().out
