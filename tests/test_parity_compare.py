"""compare(): right twins pass, wrong twins are caught, and nothing leaks or crashes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from funcdiff import UserFunctionError, seed  # noqa: E402
from funcdiff.parity import DEFAULT_TOLERANCES, ParityResult, compare  # noqa: E402
from funcdiff.parity._compare import compare_arrays  # noqa: E402

F = torch.nn.functional
DT = [np.float32, np.float64]


def _rng(dtype, *shape, seed_=0):
    return np.random.default_rng(seed_).standard_normal(shape).astype(dtype)


# ---- user functions compare has never seen: an MLP with pytree params and tuple outputs -----


def jax_mlp(params, x):
    h = jax.nn.relu(x @ params["l1"]["w"] + params["l1"]["b"])
    logits = h @ params["l2"]["w"]
    return jax.nn.log_softmax(logits, axis=-1), {"hidden_norm": jnp.sqrt(jnp.sum(h**2) + 1.0)}


def torch_mlp(params, x):
    h = torch.relu(x @ params["l1"]["w"] + params["l1"]["b"])
    logits = h @ params["l2"]["w"]
    return F.log_softmax(logits, dim=-1), {"hidden_norm": torch.sqrt(torch.sum(h**2) + 1.0)}


def mlp_params(dtype):
    return {
        "l1": {"w": _rng(dtype, 4, 8), "b": _rng(dtype, 8, seed_=1)},
        "l2": {"w": _rng(dtype, 8, 3, seed_=2)},
    }


@pytest.mark.parametrize("dtype", DT)
def test_mlp_with_pytree_params_and_tuple_outputs_agrees(dtype):
    res = compare(jax_mlp, torch_mlp, mlp_params(dtype), _rng(dtype, 5, 4, seed_=3))
    res.assert_ok()
    assert res.dtype == np.dtype(dtype).name
    quantities = {(r.quantity, r.path) for r in res.rows}
    assert ("value", "out[0]") in quantities and ("value", "out[1]['hidden_norm']") in quantities
    for leaf in ("args[0]['l1']['w']", "args[0]['l1']['b']", "args[0]['l2']['w']", "args[1]"):
        assert ("vjp", leaf) in quantities
    assert ("jvp", "out[0]") in quantities
    assert all(r.quantity != "hvp" for r in res.rows)  # not a scalar output


@pytest.mark.parametrize("dtype", DT)
def test_scalar_loss_gets_gradient_and_hvp(dtype):
    def jloss(w, x, y):
        return jnp.mean((jnp.tanh(x @ w) - y) ** 2)

    def tloss(w, x, y):
        return torch.mean((torch.tanh(x @ w) - y) ** 2)

    res = compare(
        jloss, tloss, _rng(dtype, 3), _rng(dtype, 10, 3, seed_=1), _rng(dtype, 10, seed_=2)
    )
    res.assert_ok()
    assert {r.quantity for r in res.rows} == {"value", "grad", "jvp", "hvp"}
    assert sum(r.quantity == "hvp" for r in res.rows) == 3


def test_tutorial_f_against_its_pytorch_twin():
    x = np.asarray(seed.POINT, np.float32)
    res = compare(seed.f, lambda x: (torch.log(x[0] * x[1]), torch.sin(x[1])), x)
    res.assert_ok()
    np.testing.assert_allclose(
        [r.torch_value for r in res.rows if r.quantity == "value"],
        [np.log(0.375), np.sin(0.75)],
        rtol=1e-6,
    )


# ---- wrong twins are caught -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", DT)
def test_detached_torch_twin_is_caught_in_the_gradient_not_the_value(dtype):
    res = compare(
        lambda w, x: jnp.sum(jnp.sin(x * w)),
        lambda w, x: torch.sum(torch.sin(x * w.detach())),
        _rng(dtype, 4),
        _rng(dtype, 4, seed_=1),
    )
    assert not res.ok
    failed = {(r.quantity, r.path) for r in res.failures}
    assert ("grad", "args[0]") in failed and ("value", "out") not in failed
    assert ("grad", "args[1]") not in failed
    with pytest.raises(AssertionError, match=r"grad\s+args\[0\]"):
        res.assert_ok()


def test_stop_gradient_on_the_jax_side_is_caught():
    res = compare(
        lambda x: jnp.sum(jax.lax.stop_gradient(x) * x),
        lambda x: torch.sum(x * x),
        _rng(np.float32, 6),
    )
    assert not res.ok and res.worst.quantity in ("grad", "jvp", "hvp")
    assert [r.quantity for r in res.failures] == ["grad", "jvp", "hvp"]


@pytest.mark.parametrize("dtype", DT)
def test_ddof_slip_in_var_is_caught(dtype):
    x = _rng(dtype, 7)
    assert compare(lambda x: jnp.var(x, ddof=1), lambda x: torch.var(x), x).ok
    res = compare(lambda x: jnp.var(x), lambda x: torch.var(x), x)
    assert not res.ok
    value = next(r for r in res.rows if r.quantity == "value")
    np.testing.assert_allclose(value.torch_value / value.jax_value, 7 / 6, rtol=1e-5)


@pytest.mark.parametrize("dtype", DT)
def test_tanh_gelu_against_exact_gelu_is_caught(dtype):
    x = _rng(dtype, 16)
    assert compare(lambda x: jax.nn.gelu(x, approximate=False), F.gelu, x).ok
    assert compare(jax.nn.gelu, lambda x: F.gelu(x, approximate="tanh"), x).ok
    res = compare(jax.nn.gelu, F.gelu, x)
    assert not res.ok and {r.quantity for r in res.failures} >= {"value", "vjp", "jvp"}


def test_planted_sign_error_in_one_output_leaf_names_that_leaf():
    def tbad(params, x):
        logp, aux = torch_mlp(params, x)
        return logp, {"hidden_norm": -aux["hidden_norm"]}

    res = compare(jax_mlp, tbad, mlp_params(np.float64), _rng(np.float64, 5, 4, seed_=3))
    assert ("value", "out[1]['hidden_norm']") in {(r.quantity, r.path) for r in res.failures}
    assert ("value", "out[0]") not in {(r.quantity, r.path) for r in res.failures}


# ---- structure, NaN/inf, dtypes -------------------------------------------------------------


def test_different_output_trees_fail_with_an_explanation():
    x = _rng(np.float32, 3)
    res = compare(lambda x: (x, x * 2), lambda x: (x, x * 2, x), x)
    assert not res.ok and res.rows[0].quantity == "structure"
    assert "sequence of 2" in res.rows[0].note and "sequence of 3" in res.rows[0].note
    res = compare(lambda x: {"a": x}, lambda x: {"b": x}, x)
    assert not res.ok and "keys" in res.rows[0].note
    assert "structure" in str(res)


def test_different_output_shapes_fail_and_skip_derivatives():
    x = _rng(np.float32, 3)
    res = compare(lambda x: x[:, None] * 2, lambda x: x * 2, x)
    assert not res.ok
    assert "shape (3, 1) (JAX) vs (3,) (PyTorch)" in res.rows[0].note
    assert any("derivatives not compared" in n for n in res.notes)


def test_list_and_tuple_and_namedtuple_outputs_are_the_same_sequence():
    a = _rng(np.float64, 3, 3) + 4 * np.eye(3)
    res = compare(jnp.linalg.slogdet, torch.linalg.slogdet, a)
    res.assert_ok()
    assert compare(lambda x: [x, x], lambda x: (x, x), a).ok


def test_nan_and_inf_must_sit_in_the_same_places_never_zeroed():
    x = np.array([1.0, -1.0, 4.0], np.float32)
    assert compare(lambda x: jnp.sqrt(x), lambda x: torch.sqrt(x), x).rows[0].passed  # NaN both
    res = compare(lambda x: jnp.sqrt(x), lambda x: torch.sqrt(torch.abs(x)), x)
    value = res.rows[0]
    assert not value.passed and value.worst_index == (1,) and "NaN/inf" in value.note
    res = compare(lambda x: 1.0 / x, lambda x: -1.0 / x, np.zeros(2, np.float32))
    assert not res.rows[0].passed  # +inf vs -inf


def test_compare_arrays_rules():
    f32 = np.float32
    r = compare_arrays(
        "value", "out", np.array([1.0, 2.0], f32), np.array([1.0, 2.0 + 1e-3], f32), None, None
    )
    assert not r.passed and r.worst_index == (1,) and r.torch_value == pytest.approx(2.001)
    assert r.max_rel_error == pytest.approx(1e-3 / 2.001, rel=1e-3)
    r = compare_arrays("value", "out", np.ones(2, np.float32), np.ones(2, np.float64), None, None)
    assert not r.passed and "dtype float32 (JAX) vs float64" in r.note
    r = compare_arrays("value", "out", np.arange(3, dtype=np.int32), np.arange(3), None, None)
    assert r.passed and "int32 vs int64" in r.note
    r = compare_arrays("value", "out", np.arange(3, dtype=np.int32), np.arange(1, 4), None, None)
    assert not r.passed  # integers compare exactly


# ---- bad input and special arguments --------------------------------------------------------


@pytest.mark.parametrize("bad", ["abc", 1.5, [object()]])
def test_non_array_leaf_is_a_type_error_naming_the_path(bad):
    with pytest.raises(TypeError, match=r"args\[0\]\['b'\]"):
        compare(lambda p: p["a"], lambda p: p["a"], {"a": np.zeros(2, np.float32), "b": bad})


def test_integer_only_args_compare_values_and_say_gradients_are_skipped():
    n = np.arange(1, 6)
    res = compare(lambda n: jnp.sqrt(n), lambda n: torch.sqrt(n), n)
    assert res.ok and [r.quantity for r in res.rows] == ["value"]
    assert any("gradients skipped" in note for note in res.notes)
    assert "gradients skipped" in str(res)
    res = compare(lambda n: n * 2, lambda n: n * 3, n)
    assert not res.ok


def test_bad_tolerance_and_key_are_refused():
    x = _rng(np.float32, 2)
    with pytest.raises(ValueError, match="rtol"):
        compare(jnp.sin, torch.sin, x, rtol=-1.0)
    with pytest.raises(TypeError, match="key"):
        compare(jnp.sin, torch.sin, x, key="seed")


def test_tolerance_override_applies_to_every_row():
    x = _rng(np.float32, 16)
    res = compare(jax.nn.gelu, F.gelu, x, rtol=0.1, atol=1e-2)
    assert res.ok and all(r.tolerance == (0.1, 1e-2) for r in res.rows)
    default = compare(jnp.sin, torch.sin, x)
    assert default.rows[0].tolerance == DEFAULT_TOLERANCES["float32"]


def test_the_key_seeds_the_directions_reproducibly():
    x = _rng(np.float32, 5)
    run = lambda key: [r.jax_value for r in compare(jnp.sin, torch.sin, x, key=key).rows]
    assert run(jax.random.key(1)) == run(jax.random.key(1))
    assert run(jax.random.key(1)) != run(jax.random.key(2))
    assert run(7) == run(7)


# ---- configuration is scoped to the call ----------------------------------------------------


def test_float64_runs_both_in_float64_and_nothing_leaks():
    seen = {}

    def jfn(x):
        seen["x64"] = jax.config.jax_enable_x64
        seen["precision"] = jax.config.jax_default_matmul_precision
        return x @ x.T + jnp.ones(())

    def tfn(x):
        seen["torch_default"] = torch.get_default_dtype()
        seen["torch_precision"] = torch.get_float32_matmul_precision()
        return x @ x.T + torch.ones(())

    torch.set_float32_matmul_precision("medium")
    try:
        before = (jax.config.jax_enable_x64, torch.get_default_dtype())
        res = compare(jfn, tfn, _rng(np.float64, 3, 2))
        res.assert_ok()
        assert res.dtype == "float64" and res.rows[0].jax_value is not None
        assert seen == {
            "x64": True,
            "precision": "highest",
            "torch_default": torch.float64,
            "torch_precision": "highest",
        }
        assert (jax.config.jax_enable_x64, torch.get_default_dtype()) == before
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision("highest")


def test_nothing_leaks_when_a_twin_raises():
    def boom(x):
        raise RuntimeError("twin exploded")

    with pytest.raises(UserFunctionError, match="`torch_fn` raised RuntimeError: twin exploded"):
        compare(jnp.sin, boom, _rng(np.float64, 2))
    assert not jax.config.jax_enable_x64 and torch.get_default_dtype() == torch.float32


def test_result_is_an_immutable_record_with_a_table():
    res = compare(jnp.sin, torch.sin, _rng(np.float32, 3))
    assert isinstance(res, ParityResult)
    with pytest.raises(AttributeError):
        res.rows = ()  # type: ignore[misc]
    text = str(res)
    assert text.startswith("parity OK: float32 vs torch")
    for header in ("quantity", "path", "max abs err", "max rel err", "worst index", "pass"):
        assert header in text
    assert res.to_dict()["rows"][0]["pass"] is True


def test_port_from_pytorch_example_runs_and_matches_its_header():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = root / "examples" / "port_from_pytorch.py"
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "float32: port agrees True" in out and "float64: port agrees True" in out
    assert "planted bug caught: True" in out
    assert "(12 of 12 rows fail)" in out and "grad  args[0]['fc1']['w']" in out
    assert "AssertionError: JAX and PyTorch disagree:" in out
    header = script.read_text().split('"""')[1]
    for line in out.splitlines():
        assert line.split(", worst")[0] in header, f"header comment out of date: {line!r}"


def test_docs_python_examples_run(monkeypatch):
    import re
    from pathlib import Path

    import _parity_local

    from funcdiff.parity import _suite

    # the catalog may not be merged yet: the docs' run_catalog call gets the local cases
    monkeypatch.setattr(_suite, "_load_catalog", lambda: _parity_local.good_cases())
    text = (Path(__file__).resolve().parents[1] / "docs" / "parity.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    namespace: dict = {}
    for block in blocks:
        block = block.replace('pattern="linalg/*"', 'pattern="*"')
        exec(compile(block, "docs/parity.md", "exec"), namespace)


# ---- the user's functions fail as theirs, not as funcdiff's ---------------------------------


@pytest.mark.parametrize("which", ["jax_fn", "torch_fn"])
def test_a_non_callable_function_is_named(which):
    fns = {"jax_fn": jnp.sin, "torch_fn": torch.sin, which: "sin"}
    with pytest.raises(TypeError, match=f"^Expected `{which}` to be callable, got str"):
        compare(fns["jax_fn"], fns["torch_fn"], _rng(np.float32, 3))


@pytest.mark.parametrize(
    ("twin", "what"),
    [
        (lambda x: torch.sin(x).detach().numpy(), "a NumPy float32 array at out"),
        (lambda x: float(torch.sin(x).sum()), "a Python float at out"),
        (lambda x: (torch.sin(x), np.float32(1.0)), "a NumPy float32 array at out[1]"),
    ],
)
def test_a_torch_twin_returning_numpy_or_a_float_is_refused(twin, what):
    with pytest.raises(UserFunctionError, match="cut off from autograd") as e:
        compare(lambda x: jnp.sin(x), twin, _rng(np.float32, 3))
    assert e.value.argument == "torch_fn" and what in str(e.value)
    # integers carry no derivative: allowed, compared by value
    res = compare(lambda x: (jnp.sin(x), 3), lambda x: (torch.sin(x), 3), _rng(np.float32, 3))
    assert res.ok, res


@pytest.mark.parametrize("which", ["jax_fn", "torch_fn"])
def test_a_raising_function_is_reported_as_the_users(which):
    def boom(x):
        raise KeyError("w")

    fns = {"jax_fn": jnp.sin, "torch_fn": torch.sin, which: boom}
    with pytest.raises(UserFunctionError, match=f"`{which}` raised KeyError: 'w'") as e:
        compare(fns["jax_fn"], fns["torch_fn"], _rng(np.float32, 3))
    assert e.value.argument == which and isinstance(e.value.__cause__, KeyError)


def test_jax_tracer_errors_are_explained_and_python_if_runs_eagerly():
    def numpy_inside(x):
        return jnp.sum(np.asarray(x) * x)  # NumPy on a traced value: no transform can run it

    with pytest.raises(UserFunctionError, match="`jax_fn` is not jit-compatible") as e:
        compare(numpy_inside, lambda x: torch.sum(x * x), _rng(np.float32, 3))
    assert "https://" in str(e.value)  # JAX's hint is kept
    with pytest.raises(UserFunctionError, match=r"`jax_fn` to return arrays.*got str at out"):
        compare(lambda x: "loss", lambda x: x.sum(), _rng(np.float32, 3))

    def branchy(x):  # Python `if` on a value: cannot be jitted, runs eagerly and is compared
        return jnp.sum(x**2) if jnp.sum(x) > -100 else jnp.sum(x)

    res = compare(branchy, lambda x: torch.sum(x**2), _rng(np.float64, 3))
    assert res.ok and {r.quantity for r in res.rows} == {"value", "grad", "jvp", "hvp"}


@pytest.mark.parametrize("bad", [np.array([1e-3]), True, "1e-3"])
def test_a_tolerance_that_is_not_a_number_is_a_type_error(bad):
    with pytest.raises(TypeError, match="`rtol`"):
        compare(jnp.sin, torch.sin, _rng(np.float32, 2), rtol=bad)


# ---- HVP where PyTorch has no second derivative ---------------------------------------------


def _hard_sigmoid_sum(like_torch):
    from funcdiff.parity import hard_sigmoid_like_torch

    op = hard_sigmoid_like_torch if like_torch else jax.nn.hard_sigmoid
    return lambda x: jnp.sum(op(x))


@pytest.mark.parametrize("dtype", DT)
def test_hvp_falls_back_when_torch_has_no_double_backward_hardsigmoid(dtype):
    x = np.linspace(-2.5, 2.5, 6).astype(dtype)  # inside (-3, 3): the Hessian is 0
    # float64: the like-torch variant has torch's float32 slope (a registered divergence)
    res = compare(_hard_sigmoid_sum(dtype == np.float64), lambda x: F.hardsigmoid(x).sum(), x)
    res.assert_ok()
    assert any("hardsigmoid_backward" in n and "central differences" in n for n in res.notes)
    hvp = [r for r in res.rows if r.quantity == "hvp"]
    assert len(hvp) == 1 and hvp[0].torch_value == 0.0
    # a planted curvature bug (1e-3 x^2) is caught in the HVP row, not hidden by the bound
    planted = lambda x: _hard_sigmoid_sum(dtype == np.float64)(x) + 1e-3 * jnp.sum(x**2)
    bad = compare(planted, lambda x: F.hardsigmoid(x).sum(), x)
    assert any(r.quantity == "hvp" for r in bad.failures), bad


def test_hvp_falls_back_for_cdist_and_its_error_bound_is_tight():
    rng = np.random.default_rng(7)  # not compare's default tangent stream (seed 0)
    a, b = rng.standard_normal((5, 3)), rng.standard_normal((4, 3))

    def jax_cdist(a, b):
        return jnp.sum(jnp.sqrt(jnp.sum((a[:, None] - b[None]) ** 2, axis=-1)))

    res = compare(jax_cdist, lambda a, b: torch.cdist(a, b).sum(), a, b)
    res.assert_ok()
    hvp = [r for r in res.rows if r.quantity == "hvp"]
    assert len(hvp) == 2 and all(1e-12 < r.atol < 1e-7 for r in hvp)  # widened, by little
    assert any("_cdist_backward" in n for n in res.notes)
    assert any("JVP skipped" in n for n in res.notes)  # no forward mode either: said, not hidden
    # torch's finite-difference HVP against its exact one (double backward of the formula)
    from funcdiff.parity import _measure as M

    prep = M.prepare((a, b), None)
    cots = [np.ones(())]
    with M.torch_precision(torch, float64=True):
        fd = M.measure_torch(lambda a, b: torch.cdist(a, b).sum(), prep, cots, True)
        t_exact = lambda a, b: torch.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)).sum()
        exact = M.measure_torch(t_exact, prep, cots, True)
    assert 0 < fd.hvp_atol < 1e-7 and exact.hvp_atol == 0
    for (_, h_fd), (_, h) in zip(fd.hvp, exact.hvp, strict=True):
        assert np.abs(h).max() > 0.1
        np.testing.assert_allclose(h_fd, h, rtol=0, atol=fd.hvp_atol)


# ---- structured tangents and cotangents -----------------------------------------------------

SPD = np.array([[4.0, 2.0, 0.4], [2.0, 5.0, 1.0], [0.4, 1.0, 3.0]])


def _sym(a):
    return ((a + a.T) / 2,)


def test_cholesky_agrees_on_symmetric_tangents_and_differs_off_them():
    on = compare(jnp.linalg.cholesky, torch.linalg.cholesky, SPD, tangent=_sym)
    on.assert_ok()
    assert "JVP/HVP along the given `tangent`" in on.notes
    off = compare(jnp.linalg.cholesky, torch.linalg.cholesky, SPD)  # random, non-symmetric
    assert [r.quantity for r in off.failures] == ["jvp"], off
    upper = np.triu(np.ones((3, 3)), 1)
    explicit = compare(jnp.linalg.cholesky, torch.linalg.cholesky, SPD, tangent=(upper,))
    assert [r.quantity for r in explicit.failures] == ["jvp"]
    sym = compare(jnp.linalg.cholesky, torch.linalg.cholesky, SPD, tangent=(upper + upper.T,))
    sym.assert_ok()


def test_the_cotangent_is_used_for_the_vjp_rows():
    x = _rng(np.float64, 4)
    jax_fn = lambda x: (jnp.sin(x), 2 * jax.lax.stop_gradient(x))  # wrong only in out[1]
    torch_fn = lambda x: (torch.sin(x), 2 * x)
    assert "vjp" in {r.quantity for r in compare(jax_fn, torch_fn, x).failures}
    only_first = lambda draw: (draw[0], np.zeros(4))
    res = compare(jax_fn, torch_fn, x, cotangent=only_first)
    assert {r.quantity for r in res.failures} == {"jvp"}  # the VJP no longer sees out[1]
    res = compare(jax_fn, torch_fn, x, cotangent=(np.ones(4), np.zeros(4)))
    assert {r.quantity for r in res.failures} == {"jvp"}
    scalar = compare(lambda x: jnp.sum(x**2), lambda x: (x**2).sum(), x, cotangent=np.array(3.0))
    scalar.assert_ok()
    assert [r.quantity for r in scalar.rows] == ["value", "vjp", "jvp"]
    vjp = next(r for r in scalar.rows if r.quantity == "vjp")
    assert vjp.jax_value == pytest.approx(6 * x[vjp.worst_index])


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"tangent": SPD}, TypeError, "one entry per positional argument"),
        ({"tangent": (SPD, SPD)}, TypeError, "length 2"),
        ({"tangent": (np.ones(3),)}, ValueError, r"`tangent` at tangent\[0\]"),
        ({"tangent": (np.full((3, 3), np.nan),)}, ValueError, "finite `tangent`"),
        ({"tangent": (np.full((3, 3), "a"),)}, TypeError, "real arrays"),
        ({"tangent": lambda a: a}, TypeError, "callable `tangent` must return one"),
        ({"tangent": lambda a: a.missing}, UserFunctionError, "`tangent` raised AttributeError"),
        ({"cotangent": (np.ones((3, 3)),)}, TypeError, "structure of the function's output"),
        ({"cotangent": np.ones(3)}, ValueError, "`cotangent` at cotangent"),
    ],
)
def test_bad_directions_are_refused_by_name(kwargs, error, needle):
    with pytest.raises(error, match=needle):
        compare(jnp.linalg.cholesky, torch.linalg.cholesky, SPD, **kwargs)


# ---- the boundary, fuzzed: a clear error or a result, never another exception ---------------

NOT_CALLABLE = st.one_of(st.none(), st.integers(), st.text(max_size=3), st.just(np.ones(2)))
BAD_LEAF = st.one_of(  # (None is an empty subtree in JAX, not a leaf: allowed)
    st.text(max_size=3),
    st.floats(),
    st.just(object()),
    st.just(np.ones(2, complex)),
    st.just(np.array(["a"])),
)
BAD_TOL = st.one_of(
    st.floats(max_value=-1e-300),
    st.just(float("nan")),
    st.just(float("inf")),
    st.just(np.ones(2)),
    st.text(max_size=2),
    st.booleans(),
)
BAD_KEY = st.one_of(st.floats(), st.text(max_size=2), st.just(np.ones(2)), st.just([1, 2]))
BAD_TANGENT = st.one_of(
    st.just(np.ones(3)),  # not a tuple
    st.just((np.ones(2),)),  # wrong shape
    st.just((np.ones(3), np.ones(3))),  # wrong length
    st.just((np.full(3, np.nan),)),
    st.just(({"a": np.ones(3)},)),  # wrong structure
    st.just(lambda x: 1 / 0),  # a raising callable
)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(
    which=st.sampled_from(["jax_fn", "torch_fn", "leaf", "rtol", "atol", "key", "tangent"]),
    data=st.data(),
)
def test_bad_arguments_are_typed_errors_naming_them(which, data):
    kwargs, jfn, tfn, x = {}, jnp.sin, torch.sin, np.linspace(-1, 1, 3).astype(np.float32)
    args = (x,)
    if which == "jax_fn":
        jfn = data.draw(NOT_CALLABLE)
    elif which == "torch_fn":
        tfn = data.draw(NOT_CALLABLE)
    elif which == "leaf":
        args = ({"x": x, "bad": data.draw(BAD_LEAF)},)
        jfn, tfn = (lambda p: jnp.sin(p["x"])), (lambda p: torch.sin(p["x"]))
    elif which in ("rtol", "atol"):
        kwargs[which] = data.draw(BAD_TOL)
    elif which == "key":
        kwargs["key"] = data.draw(BAD_KEY)
    else:
        kwargs["tangent"] = data.draw(BAD_TANGENT)
    name = {"leaf": "args"}.get(which, which)
    with pytest.raises((TypeError, ValueError)) as e:
        compare(jfn, tfn, *args, **kwargs)
    assert f"`{name}`" in str(e.value), str(e.value)


def test_bfloat16_and_negative_seeds_work():
    x = np.linspace(-1, 1, 4).astype(jnp.bfloat16)  # was "bfloat16 not inexact" (ValueError)
    res = compare(lambda x: jnp.sum(jnp.tanh(x)), lambda x: torch.tanh(x).sum(), x)
    res.assert_ok()
    assert res.dtype == "bfloat16" and res.rows[0].tolerance == DEFAULT_TOLERANCES["bfloat16"]
    run = lambda key: [
        r.jax_value for r in compare(jnp.sin, torch.sin, _rng(np.float32, 4), key=key).rows
    ]
    assert run(-1) == run(-1) != run(1)  # like jax.random.key(-1): allowed, its own stream


def test_tangent_and_cotangent_with_integer_leaves():
    x, n = np.linspace(-1, 1, 3), np.arange(3)
    jax_fn = lambda x, n: (jnp.sin(x) * n, jnp.argmax(x))
    torch_fn = lambda x, n: (torch.sin(x) * n, torch.argmax(x))
    res = compare(jax_fn, torch_fn, x, n, tangent=(np.ones(3), None))  # None: an int leaf
    res.assert_ok()
    both = compare(
        jax_fn, torch_fn, x, n, tangent=lambda x, n: (x, n), cotangent=lambda d: (2 * d[0], d[1])
    )
    both.assert_ok()
    assert [r.quantity for r in both.rows] == ["value", "value", "vjp", "jvp"]
    with pytest.raises(TypeError, match=r"float leaf tangent\[0\], got None"):
        compare(jax_fn, torch_fn, x, n, tangent=(None, None))
