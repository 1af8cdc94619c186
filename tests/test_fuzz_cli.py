"""Fuzz of every CLI subcommand: bad flags and values never give a traceback.

The policy (funcdiff/_cli/__init__.py, README "Errors and exit codes"): a failed or refused
run prints exactly one line on stderr, ``funcdiff COMMAND: error: ...``; exit 2 when the
command line is wrong, 1 when the function or the check failed. Everything runs in-process
through ``funcdiff._cli.main`` (argparse's own errors arrive as ``SystemExit(2)``); two
subprocess runs check the real entry point, warnings included. Nothing here runs a demo, a
benchmark or the catalog: every argv is refused before the work starts, or checks a small
function.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from funcdiff._cli import main

ROOT = Path(__file__).resolve().parents[1]
FUZZ = settings(
    max_examples=30,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` with stdout/stderr captured; argparse's SystemExit becomes its code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, codes: tuple[int, ...] = (1, 2)) -> None:
    assert code in codes, (code, err)
    assert "Traceback" not in err and "Warning" not in err, err
    assert err.count("\n") == 1 and err.startswith("funcdiff"), err
    assert ": error: " in err, err


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    """A user's module with functions that work, raise, or are not jit-compatible."""
    root = tmp_path_factory.mktemp("fuzz_user")
    (root / "fuzz_user_mod.py").write_text(
        textwrap.dedent(
            """
            import jax.numpy as jnp

            def smooth(x):
                return jnp.sum(jnp.sin(x) * x)

            def value_error(x):
                raise ValueError("bad point")

            def key_error(x):
                return x["w"]

            def python_if(x):
                return jnp.sum(x) if x.sum() > 0 else -jnp.sum(x)

            def returns_str(x):
                return "loss"

            def vector(x):
                return jnp.sin(x)

            NOT_A_FUNCTION = 3
            """
        )
    )
    sys.path.insert(0, str(root))
    yield "fuzz_user_mod"
    sys.path.remove(str(root))
    sys.modules.pop("fuzz_user_mod", None)


@pytest.fixture(scope="module")
def csv_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_csv")
    files = {
        "good": "x,y\n1,2\n2,4.1\n3,5.9\n",
        "huge": "x,y\n1,2\n1e300,3\n2,4\n",
        "beyond_f32": "x,y\n1,2\n1e39,3\n2,4\n",
        "nan": "x,y\n1,2\nnan,3\n2,4\n",
        "inf": "x,y\n1,2\n2,-inf\n",
        "text": "x,y\n1,2\nabc,3\n",
        "empty": "",
        "header_only": "x,y\n",
        "short_row": "x,y\n1\n",
    }
    paths = {}
    for name, text in files.items():
        paths[name] = root / f"{name}.csv"
        paths[name].write_text(text)
    paths["binary"] = root / "binary.csv"
    paths["binary"].write_bytes(b"\xff\xfe\x00\x01")
    paths["directory"] = root
    return {k: str(v) for k, v in paths.items()}


# ---- 1. argparse: every typed flag of every subcommand, given a bad value -------------------

NOT_AN_INT = st.one_of(
    st.text(min_size=1, max_size=8).filter(lambda s: not s.strip().lstrip("+-").isdigit()),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: f"{f}.5"),
)
NON_POSITIVE_INT = st.integers(max_value=0).map(str)
ABOVE_INT32 = st.integers(min_value=2**31, max_value=10**30).map(str)  # sizes, epochs
BEYOND_64_BITS = st.one_of(
    st.integers(min_value=2**63, max_value=2**200), st.integers(max_value=-(2**63) - 1)
).map(str)
NOT_POSITIVE_FLOAT = st.one_of(
    st.floats(max_value=0.0).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "", "abc", "1e999"]),
)
CHOICES = set(
    [
        "full",
        "directional",
        "float32",
        "float64",
        "all",
        "auto",
        "torch",
        "golden",
        "sgd",
        "momentum",
        "adam",
        "adamw",
        "autodiff",
        "gram",
        "on",
        "off",
        "cpu",
        "gpu",
        "tpu",
    ]
)
NOT_A_CHOICE = st.text(max_size=10).filter(lambda s: s not in CHOICES and not s.startswith("-"))

# subcommand -> base argv (valid but never reached) and flag -> strategy of bad values
FLAGS = {
    "demo": (
        [],
        {
            "--seed": st.one_of(NOT_AN_INT, BEYOND_64_BITS),
            "--n": st.one_of(NOT_AN_INT, NON_POSITIVE_INT, ABOVE_INT32),
            "--epochs": st.one_of(NOT_AN_INT, NON_POSITIVE_INT, ABOVE_INT32),
            "--lr": NOT_POSITIVE_FLOAT,
            "--device": NOT_A_CHOICE,
        },
    ),
    "check": (
        ["funcdiff.seed:composite", "--at", "[0.5, 0.75]"],
        {
            "--seed": st.one_of(NOT_AN_INT, BEYOND_64_BITS),
            "--num-directions": st.one_of(
                NOT_AN_INT, NON_POSITIVE_INT, st.integers(min_value=100_001).map(str)
            ),
            "--mode": NOT_A_CHOICE,
            "--rtol": st.one_of(st.floats(max_value=-1e-300).map(repr), st.just("nan")),
            "--atol": st.sampled_from(["-1", "inf", "x"]),
        },
    ),
    "parity": (
        [],
        {"--dtype": NOT_A_CHOICE, "--reference": NOT_A_CHOICE},
    ),
    "regress": (
        ["--n", "10"],
        {
            "--seed": st.one_of(NOT_AN_INT, BEYOND_64_BITS),
            "--n": st.one_of(NOT_AN_INT, NON_POSITIVE_INT, ABOVE_INT32),
            "--epochs": st.one_of(NON_POSITIVE_INT, ABOVE_INT32),
            "--lr": NOT_POSITIVE_FLOAT,
            "--batch-size": NON_POSITIVE_INT,
            "--bootstrap": st.one_of(NON_POSITIVE_INT, st.integers(min_value=10**6 + 1).map(str)),
            "--log-every": NON_POSITIVE_INT,
            "--optimizer": NOT_A_CHOICE,
            "--method": NOT_A_CHOICE,
            "--progress": NOT_A_CHOICE,
            "--device": NOT_A_CHOICE,
        },
    ),
    "bench": (
        ["--case", "seed-grad"],
        {"--device": NOT_A_CHOICE},
    ),
}
FLAG_CASES = [(cmd, flag) for cmd, (_, flags) in FLAGS.items() for flag in flags]


@FUZZ
@given(data=st.data())
def test_every_typed_flag_refuses_bad_values_in_one_line(data):
    cmd, flag = data.draw(st.sampled_from(FLAG_CASES), label="flag")
    base, flags = FLAGS[cmd]
    value = data.draw(flags[flag], label="value")
    code, out, err = run_cli([cmd, *base, f"{flag}={value}"])
    assert_one_line_error(code, err, codes=(2,))
    assert flag in err and out == ""


@FUZZ
@given(
    cmd=st.sampled_from(sorted(FLAGS)),
    junk=st.lists(
        st.sampled_from(["--no-such-flag", "-Q", "--json=3", "--x64=yes", "extra", "--"]),
        min_size=1,
        max_size=3,
    ),
)
def test_unknown_flags_and_stray_arguments_exit_2(cmd, junk):
    base, _ = FLAGS[cmd]
    code, _, err = run_cli([cmd, *base, *junk])
    assert_one_line_error(code, err, codes=(2,))


def test_no_or_unknown_subcommand_exits_2():
    for argv in ([], ["frobnicate"], ["--nope"], ["DEMO"]):
        code, _, err = run_cli(argv)
        assert_one_line_error(code, err, codes=(2,))


# ---- 2. values that parse but are wrong, and functions that fail: the table ---------------


AT = ["--at", "[0.5, 0.75]"]
# {mod} is the user's module, {csv:NAME} a file of the csv_files fixture
TABLE: list[tuple[list[str], int, str]] = [
    # check: the point
    (["check", "{mod}:smooth", "--at", "[]"], 2, "at least one number"),
    (["check", "{mod}:smooth", "--at", "[[]]"], 2, "at least one number"),
    (["check", "{mod}:smooth", "--at", "{}"], 2, "at least one number"),
    (["check", "{mod}:smooth", "--at", "[true, false]"], 2, "got true"),
    (["check", "{mod}:smooth", "--at", "[1, null]"], 2, "got null"),
    (["check", "{mod}:smooth", "--at", '{"a": "b"}'], 2, "expected numbers"),
    (["check", "{mod}:smooth", "--at", "[[1, 2], [3]]"], 2, "rectangular"),
    (["check", "{mod}:smooth", "--at", "[NaN]"], 2, "finite"),
    (["check", "{mod}:smooth", "--at", "[Infinity, 1]"], 2, "finite"),
    (["check", "{mod}:smooth", "--at", "[1e400]"], 2, "finite"),
    (["check", "{mod}:smooth", "--at", "[1" + "0" * 400 + "]"], 2, "finite"),
    (["check", "{mod}:smooth", "--at", "[1e39]"], 2, "--x64"),
    (["check", "{mod}:smooth", "--at", "[1,"], 2, "not valid JSON"),
    (["check", "{mod}:smooth", "--at", "[" * 100_000], 2, "--at"),
    (["check", "{mod}:smooth", "--at", "@/no/such/file"], 2, "cannot read"),
    (["check", "{mod}:smooth", "--at", "@{csv:directory}"], 2, "cannot read"),
    (["check", "{mod}:smooth", "--at", "@{csv:binary}"], 2, "--at"),
    # check: the target
    (["check", "fuzz_no_such_module:f", *AT], 2, "cannot import"),
    (["check", "{mod}:nope", *AT], 2, "no attribute"),
    (["check", "{mod}:NOT_A_FUNCTION", *AT], 2, "not callable"),
    (["check", "{mod}", *AT], 2, "MODULE:FUNCTION"),
    (["check", ":", *AT], 2, "MODULE:FUNCTION"),
    (["check", "{mod}:vector", *AT], 2, "scalar"),
    (["check", "{mod}:smooth", *AT, "--grad", "nope"], 2, "MODULE:FUNCTION"),
    # check: the user's function fails at the point -> 1
    (["check", "{mod}:value_error", *AT], 1, "raised ValueError: bad point"),
    (["check", "{mod}:key_error", *AT], 1, "raised"),
    (["check", "{mod}:python_if", *AT], 1, "not jit-compatible"),
    (["check", "{mod}:returns_str", *AT], 1, "to return arrays"),
    (["check", "{mod}:smooth", *AT, "--grad", "{mod}:value_error"], 1, "bad point"),
    # regress: files and data
    (["regress", "--csv", "{csv:huge}", "--x", "x", "--y", "y"], 2, "does not fit"),
    (["regress", "--csv", "{csv:beyond_f32}", "--x", "x", "--y", "y"], 2, "--x64"),
    (["regress", "--csv", "{csv:nan}", "--x", "x", "--y", "y"], 2, "finite"),
    (["regress", "--csv", "{csv:inf}", "--x", "x", "--y", "y"], 2, "finite"),
    (["regress", "--csv", "{csv:text}", "--x", "x", "--y", "y"], 2, "expected numbers"),
    (["regress", "--csv", "{csv:empty}", "--x", "x", "--y", "y"], 2, "empty"),
    (["regress", "--csv", "{csv:header_only}", "--x", "x", "--y", "y"], 2, "no data"),
    (["regress", "--csv", "{csv:short_row}", "--x", "x", "--y", "y"], 2, "line 2"),
    (["regress", "--csv", "{csv:binary}", "--x", "x", "--y", "y"], 2, "--csv"),
    (["regress", "--csv", "{csv:directory}", "--x", "x", "--y", "y"], 2, "cannot read"),
    (["regress", "--csv", "/no/such.csv", "--x", "x", "--y", "y"], 2, "cannot read"),
    (["regress", "--csv", "{csv:good}", "--x", "q", "--y", "y"], 2, "no column 'q'"),
    (["regress", "--csv", "{csv:good}", "--x", ",", "--y", "y"], 2, "--x"),
    (["regress", "--csv", "{csv:good}"], 2, "--csv needs"),
    (["regress", "--x", "x"], 2, "--csv"),
    (["regress", "--csv", "{csv:good}", "--x", "x", "--y", "y", "--n", "3"], 2, "exclusive"),
    (["regress", "--n", "5", "--batch-size", "6"], 2, "--batch-size"),
    (["regress", "--n", "5", "--level", "1.5"], 2, "--level"),
    (["regress", "--n", "5", "--level", "nan"], 2, "--level"),
    (["regress", "--n", "5", "--method", "gram", "--batch-size", "2"], 2, "gram"),
    # parity and bench: refused before anything runs
    (["parity", "--case", "no/such/case*"], 2, "No catalog case"),
    (["bench", "--case", "nope"], 2, "Unknown benchmark case"),
    (["bench", "--case", "seed-grad", "--out", "/dev/null/sub"], 2, "Cannot write"),
]


def _fill(text: str, mod: str, csv: dict[str, str]) -> str:
    text = text.replace("{mod}", mod)
    return re.sub(r"\{csv:(\w+)\}", lambda m: csv[m.group(1)], text)


@pytest.mark.parametrize(
    ("argv", "expected", "needle"), TABLE, ids=[" ".join(a)[:60] for a, _, _ in TABLE]
)
def test_each_bad_command_line_or_failing_function_is_one_line(
    user_module, csv_files, argv, expected, needle
):
    argv = [_fill(a, user_module, csv_files) for a in argv]
    needle = _fill(needle, user_module, csv_files)
    code, _, err = run_cli(argv)
    assert_one_line_error(code, err, codes=(expected,))
    assert needle in err, (argv, err)


# ---- 3. random points: whatever the JSON, a result or one line ----------------------------

JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**400), max_value=10**400),
        st.text(max_size=3),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=2), inner, max_size=2)
    ),
    max_leaves=6,
)


POINTS = st.one_of(
    JSON,
    st.lists(st.floats(-1e3, 1e3, width=32), min_size=1, max_size=3),  # mostly valid
    st.floats(width=32).map(lambda v: [v, 1.0]),
)


@settings(FUZZ, max_examples=30)  # a valid point compiles a check: keep it short
@given(point=POINTS, x64=st.booleans())
def test_any_json_point_gives_a_result_or_one_line(user_module, point, x64):
    text = json.dumps(point, allow_nan=True)
    argv = ["check", f"{user_module}:smooth", "--at", text, "--json"] + (["--x64"] * x64)
    code, out, err = run_cli(argv)
    if code == 0:
        assert json.loads(out)["ok"] is True and err == ""
    else:  # a bad point (2); smooth failing on a dict point, or a failed check (1)
        assert_one_line_error(code, err)
        if code == 1 and "is wrong" in err:  # the report is still on stdout
            assert json.loads(out)["ok"] is False


# ---- 4. the real entry point, in a subprocess ---------------------------------------------


def _subprocess(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "default"}
    return subprocess.run(
        [sys.executable, "-m", "funcdiff", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_subprocess_bad_point_and_huge_csv_value_are_one_line_exit_2(csv_files, tmp_path):
    r = _subprocess(["check", "funcdiff.seed:composite", "--at", "[true, false]"], tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = _subprocess(["regress", "--csv", csv_files["huge"], "--x", "x", "--y", "y"], tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "Warning" not in r.stderr, r.stderr
    assert "1e+300 in column 'x' does not fit in float32" in r.stderr


def test_subprocess_user_function_raising_exits_1(user_module, tmp_path):
    module = Path(sys.modules[user_module].__file__) if user_module in sys.modules else None
    if module is None:
        __import__(user_module)
        module = Path(sys.modules[user_module].__file__)
    r = _subprocess(["check", f"{user_module}:value_error", "--at", "[1.0]"], module.parent)
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert f"`{user_module}:value_error` raised ValueError: bad point" in r.stderr


def test_the_policy_is_written_down_in_the_readme_and_the_cli_docstring():
    import funcdiff._cli as cli

    readme = (ROOT / "README.md").read_text().split("### Errors and exit codes", 1)[1]
    section = readme.split("\n## ", 1)[0]
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 130 |"):
        assert code in section
    for phrase in ("exactly one line on stderr", "the command line is wrong", "UserFunctionError"):
        assert phrase in section
    doc = " ".join((cli.__doc__ or "").split())
    for phrase in ("* 0:", "* 1: the function or the check failed", "* 2: the command line is"):
        assert phrase in doc
