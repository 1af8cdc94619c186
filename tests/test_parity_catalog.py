"""The reference catalog: structure, inputs, and a cheap value smoke of every case vs torch."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcdiff._config import scoped
from funcdiff.parity import Case, catalog, divergences, get_case, get_divergence
from funcdiff.parity._catalog import catalog_table

CASES = catalog()
GROUPS = ("tutorial", "elementwise", "reductions", "linalg", "nn", "compositions")


def test_at_least_80_unique_cases_in_a_fixed_order():
    names = [c.name for c in CASES]
    assert len(CASES) >= 80
    assert len(set(names)) == len(names)
    assert [c.name for c in catalog()] == names
    assert all(isinstance(c, Case) for c in CASES)
    assert all(re.fullmatch(r"[a-z]+/[a-z0-9_]+", n) for n in names), names
    order = [GROUPS.index(c.group) for c in CASES]
    assert order == sorted(order)


def test_public_names():
    import funcdiff.parity as parity

    assert len(set(parity.__all__)) == len(parity.__all__)
    mine = {
        "Case",
        "catalog",
        "get_case",
        "Divergence",
        "DivergenceMeasurement",
        "divergences",
        "get_divergence",
        "abs_like_torch",
        "clip_like_torch",
        "norm_like_torch",
        "softplus_like_torch",
        "gelu_like_torch",
        "var_like_torch",
        "std_like_torch",
    }
    assert mine <= set(parity.__all__)
    assert all(hasattr(parity, n) for n in parity.__all__)


def test_case_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        CASES[0].name = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    "needed",
    [
        "tutorial/f",
        "tutorial/g",
        "tutorial/composite",
        "tutorial/regression_loss",
        "elementwise/exp",
        "elementwise/log",
        "elementwise/log1p",
        "elementwise/expm1",
        "elementwise/sin",
        "elementwise/tanh",
        "elementwise/cosh",
        "elementwise/sigmoid",
        "elementwise/softplus",
        "elementwise/erf",
        "elementwise/sqrt",
        "elementwise/rsqrt",
        "elementwise/pow_int",
        "elementwise/pow_float",
        "elementwise/abs",
        "elementwise/where_sign",
        "reductions/sum",
        "reductions/mean",
        "reductions/var_ddof1",
        "reductions/std_ddof1",
        "reductions/logsumexp",
        "reductions/max",
        "reductions/min_dim",
        "reductions/norm2",
        "reductions/cumsum",
        "reductions/sort",
        "linalg/matmul",
        "linalg/einsum",
        "linalg/solve",
        "linalg/inv",
        "linalg/det",
        "linalg/slogdet",
        "linalg/cholesky",
        "linalg/qr",
        "linalg/eigh",
        "linalg/svd",
        "nn/softmax",
        "nn/log_softmax",
        "nn/cross_entropy",
        "nn/layer_norm",
        "nn/gelu_exact",
        "nn/gelu_tanh",
        "nn/conv1d",
        "nn/conv2d",
        "nn/attention",
        "compositions/mlp",
        "compositions/convnet",
        "compositions/regression_grad",
    ],
)
def test_the_issue_topics_are_covered(needed):
    assert get_case(needed).name == needed


def test_every_named_divergence_is_registered_and_lists_the_case():
    named = [c for c in CASES if c.divergence]
    assert len(named) >= 10
    for c in named:
        assert c.name in get_divergence(c.divergence).cases, c.name


def test_registry_cases_exist():
    names = {c.name for c in CASES}
    for d in divergences():
        assert set(d.cases) <= names, (d.name, set(d.cases) - names)


def test_get_case_unknown_name():
    with pytest.raises(KeyError, match="did you mean"):
        get_case("elementwise/ex")
    with pytest.raises(KeyError, match="No catalog case named 'zzz'"):
        get_case("zzz")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inputs_have_the_dtype_and_are_deterministic(dtype):
    for c in CASES:
        a, b = c.args(dtype, seed=3), c.args(dtype, seed=3)
        chex.assert_trees_all_equal(a, b)
        for leaf in jax.tree.leaves(a):
            assert isinstance(leaf, np.ndarray), c.name
            assert leaf.dtype == dtype or np.issubdtype(leaf.dtype, np.integer), c.name
            assert 0 < leaf.size <= 100, c.name


def test_both_dtypes_see_the_same_draws():
    for c in CASES:
        a32, a64 = c.args(np.float32), c.args(np.float64)
        chex.assert_trees_all_close(jax.tree.map(np.float64, a32), a64, rtol=1e-6)


def test_catalog_table_lists_every_case():
    text = catalog_table()
    assert all(c.name in text for c in CASES)


def test_building_the_catalog_does_not_import_torch():
    code = (
        "import sys, funcdiff.parity as p; p.catalog(); p.divergences(); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)


# ---- a cheap smoke of every case's values vs torch (the full compare is the suite's) ---------


def _values(case: Case, args: tuple) -> tuple[list[np.ndarray], list[np.ndarray]]:
    torch = pytest.importorskip("torch")
    with scoped(x64=True, matmul_precision="highest"):
        jout = jax.tree.leaves(case.jax_fn(*jax.tree.map(jnp.asarray, args)))
        jout = [np.asarray(x) for x in jout]
    tout = case.torch_fn(*jax.tree.map(torch.as_tensor, args))
    tout = jax.tree.leaves(tout, is_leaf=lambda x: isinstance(x, torch.Tensor))
    return jout, [t.detach().numpy() for t in tout]


def _value_mismatch(case: Case, args: tuple) -> str | None:
    jout, tout = _values(case, args)
    if len(jout) != len(tout):
        return f"{len(jout)} vs {len(tout)} outputs"
    for k, (a, b) in enumerate(zip(jout, tout, strict=True)):
        if a.shape != b.shape:
            return f"out[{k}] shape {a.shape} vs {b.shape}"
        if not np.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True):
            return f"out[{k}] max abs diff {np.nanmax(np.abs(a - b)):.3g}"
    return None


def _value_divergence(case: Case) -> bool:
    return bool(case.divergence) and get_divergence(case.divergence).quantity == "value"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_smoke_values_match_torch_in_float64(case):
    mismatch = _value_mismatch(case, case.args(np.float64))
    if _value_divergence(case):
        assert mismatch, f"{case.name} names value divergence {case.divergence} but agrees"
    else:
        assert mismatch is None, f"{case.name}: {mismatch}"


@pytest.mark.parametrize(
    ("name", "wrong_jax"),
    [
        ("reductions/var_ddof1", lambda x: jnp.var(x, axis=1)),  # ddof slip
        ("nn/gelu_exact", jax.nn.gelu),  # tanh instead of exact
        ("nn/conv2d", lambda x, w, b: jnp.zeros((1, 2, 5, 5), x.dtype)),  # plain wrong
        ("tutorial/f", lambda x: (jnp.log(x[0] * x[1]),)),  # tree mismatch
    ],
)
def test_smoke_catches_a_planted_wrong_twin(name, wrong_jax):
    case = dataclasses.replace(get_case(name), jax_fn=wrong_jax)
    assert _value_mismatch(case, case.args(np.float64)) is not None
