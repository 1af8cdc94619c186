"""The divergence registry: every entry still holds, its match-torch variant matches torch,
and docs/divergences.md is the registry's table."""

from __future__ import annotations

import dataclasses
import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcdiff.parity as parity
from funcdiff._config import scoped
from funcdiff.parity import (
    Divergence,
    abs_like_torch,
    divergences,
    get_divergence,
    norm_like_torch,
)
from funcdiff.parity._divergences import registry_markdown, registry_table

REG = divergences()
DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "divergences.md"
REQUIRED = (
    "abs-at-zero",
    "clip-at-bounds",
    "norm-at-zero",
    "softplus-threshold",
    "gelu-default",
    "var-default-ddof",
    "pow-zero-exponent-at-zero",
    "max-dim-ties",
    "atan2-origin",
)


def test_registry_shape():
    names = [d.name for d in REG]
    assert len(set(names)) == len(names)
    assert set(REQUIRED) <= set(names)
    for d in REG:
        assert isinstance(d, Divergence)
        assert d.op and d.point and d.source, d.name
        assert d.quantity in ("value", "grad", "jvp")
        assert len(d.jax_value) == len(d.torch_value) >= 1
        assert d.cases or d.note, d.name  # either shows up in the catalog or says why not
        with pytest.raises(dataclasses.FrozenInstanceError):
            d.name = "x"  # type: ignore[misc]


def test_get_divergence():
    assert get_divergence("abs-at-zero").jax_value == (1.0,)
    with pytest.raises(KeyError, match="registered: abs-at-zero"):
        get_divergence("nope")


@functools.cache
def _measured(name: str):
    return get_divergence(name).measure()


@pytest.mark.parametrize("d", REG, ids=lambda d: d.name)
def test_divergence_still_holds(d):
    """Fails when a jax or torch upgrade changes either side: then update the registry."""
    pytest.importorskip("torch")
    m = _measured(d.name)
    assert d.holds(m), (
        f"{d.name}: registered jax {d.jax_value} / torch {d.torch_value}, "
        f"measured jax {m.jax.tolist()} / torch {m.torch.tolist()}"
    )


@pytest.mark.parametrize("d", [d for d in REG if d.match_torch is not None], ids=lambda d: d.name)
def test_match_torch_variant_gives_torchs_answer(d):
    pytest.importorskip("torch")
    m = _measured(d.name)
    np.testing.assert_allclose(m.match_torch, m.torch, rtol=1e-12, atol=1e-15, equal_nan=True)


def test_holds_can_fail():
    d = get_divergence("abs-at-zero")
    assert not dataclasses.replace(d, torch_value=(1.0,)).holds(d.measure())  # value changed
    same = dataclasses.replace(
        d, torch_fn=lambda x: x.abs(), jax_fn=abs_like_torch, jax_value=(0.0,)
    )
    assert not same.holds()  # both agree: no longer a divergence


# ---- the match-torch variants away from the kinks: the same function as JAX's op -----------

X = np.array([[-1.7, -0.4, 0.3], [0.8, 1.9, -2.6]])
AWAY = [
    ("abs", jnp.abs, parity.abs_like_torch),
    ("clip", lambda x: jnp.clip(x, -1.0, 1.0), lambda x: parity.clip_like_torch(x, -1.0, 1.0)),
    ("hardtanh", jax.nn.hard_tanh, parity.hardtanh_like_torch),
    ("leaky_relu", jax.nn.leaky_relu, parity.leaky_relu_like_torch),
    ("norm", jnp.linalg.norm, parity.norm_like_torch),
    ("norm_axis", lambda x: jnp.linalg.norm(x, axis=1), lambda x: norm_like_torch(x, axis=1)),
    ("norm1", lambda x: jnp.sum(jnp.abs(x)), lambda x: norm_like_torch(x, ord=1)),
    ("norm_inf", lambda x: jnp.max(jnp.abs(x)), lambda x: norm_like_torch(x, ord=jnp.inf)),
    ("softplus", jax.nn.softplus, parity.softplus_like_torch),
    ("gelu", lambda x: jax.nn.gelu(x, approximate=False), parity.gelu_like_torch),
    ("var", lambda x: jnp.var(x, ddof=1), parity.var_like_torch),
    ("std", lambda x: jnp.std(x, axis=0, ddof=1), lambda x: parity.std_like_torch(x, 0)),
    ("max", lambda x: jnp.max(x, axis=1), lambda x: parity.max_like_torch(x, 1)),
    ("min", lambda x: jnp.min(x, axis=0), lambda x: parity.min_like_torch(x, 0)),
    ("median", lambda x: jnp.median(x[0]), lambda x: parity.median_like_torch(x[0])),
    ("pow", lambda x: jnp.abs(x) ** 1.5, lambda x: parity.pow_like_torch(jnp.abs(x), 1.5)),
    ("atan2", lambda x: jnp.arctan2(x, x[::-1]), lambda x: parity.atan2_like_torch(x, x[::-1])),
    (
        "xlogy",
        lambda x: jax.scipy.special.xlogy(x, jnp.abs(x)),
        lambda x: parity.xlogy_like_torch(x, jnp.abs(x)),
    ),
    ("fmax", lambda x: jnp.fmax(x, x[::-1]), lambda x: parity.fmax_like_torch(x, x[::-1])),
    ("hard_sigmoid", jax.nn.hard_sigmoid, parity.hard_sigmoid_like_torch),
    ("digamma", jax.scipy.special.digamma, parity.digamma_like_torch),
    (
        "polygamma",
        lambda x: jax.scipy.special.polygamma(2, x),
        lambda x: parity.polygamma_like_torch(2, x),
    ),
]


def test_variants_equal_the_jax_op_away_from_kinks():
    """Value and gradient (distinct-weight cotangent) equal the plain JAX op's; one jit."""

    def weighted(f):
        def loss(x):
            y = f(x)
            return jnp.sum(y * jnp.arange(1.0, 1.0 + y.size).reshape(y.shape))

        return loss

    @jax.jit
    def both(x):
        return [
            (jax.value_and_grad(weighted(like))(x), jax.value_and_grad(weighted(plain))(x))
            for _, plain, like in AWAY
        ]

    with scoped(x64=True):
        results = both(jnp.asarray(X))
    for (name, _, _), ((v_like, g_like), (v_plain, g_plain)) in zip(AWAY, results, strict=True):
        np.testing.assert_allclose(v_like, v_plain, rtol=1e-12, err_msg=name)
        rtol = 1e-7 if name == "hard_sigmoid" else 1e-12  # torch's float32 slope, on purpose
        np.testing.assert_allclose(g_like, g_plain, rtol=rtol, err_msg=name)


def test_variant_check_can_fail():
    with scoped(x64=True):
        g = jax.grad(lambda x: jnp.sum(parity.clip_like_torch(x, -1.0, 1.0)))(jnp.array([1.0]))
        g_plain = jax.grad(lambda x: jnp.sum(jnp.clip(x, -1.0, 1.0)))(jnp.array([1.0]))
    assert not np.allclose(g, g_plain)  # at the bound they differ, as registered


def test_variants_vmap_and_jvp():
    with scoped(x64=True):
        x = jnp.asarray(X)
        vm = jax.jit(jax.vmap(norm_like_torch))(x)
        np.testing.assert_allclose(vm, jnp.linalg.norm(x, axis=1))
        _, t = jax.jvp(abs_like_torch, (jnp.array([0.0, -2.0]),), (jnp.array([1.0, 1.0]),))
        np.testing.assert_array_equal(t, [0.0, -1.0])
        g = jax.grad(lambda x: parity.pow_like_torch(x, 0).sum())(jnp.array([0.0, 2.0]))
        np.testing.assert_array_equal(g, [0.0, 0.0])  # integer exponent accepted


X23 = jnp.ones((2, 3))


@pytest.mark.parametrize(
    ("call", "error", "needle"),
    [
        (lambda: norm_like_torch(jnp.ones(3), ord=3), ValueError, "`ord`"),
        (lambda: norm_like_torch(X23, ord=np.array([1, 2])), ValueError, "`ord`"),
        (lambda: norm_like_torch(X23, axis=5), ValueError, r"`axis` in \[-2, 2\)"),
        (lambda: parity.gelu_like_torch(X23, approximate="fast"), ValueError, "`approximate`"),
        (lambda: parity.max_like_torch(X23, axis=5), ValueError, r"`axis` in \[-2, 2\).*got 5"),
        (lambda: parity.max_like_torch(X23, axis=-3), ValueError, "`axis`"),
        (lambda: parity.min_like_torch(X23, axis=1.0), TypeError, "`axis` to be an integer"),
        (lambda: parity.max_like_torch(X23, axis=None), TypeError, "`axis`"),
        (lambda: parity.max_like_torch(jnp.ones((0, 3)), 0), ValueError, "non-empty `x`"),
        (lambda: parity.var_like_torch(X23, axis=(0, 5)), ValueError, "`axis`"),
        (lambda: parity.var_like_torch(X23, axis=(1, 1)), ValueError, "distinct axes"),
        (lambda: parity.std_like_torch(jnp.ones(3), correction=5), ValueError, "`correction`"),
        (lambda: parity.var_like_torch(X23, correction=-1), ValueError, "`correction`"),
        (lambda: parity.median_like_torch(jnp.ones(0)), ValueError, "non-empty `x`"),
        (lambda: parity.softplus_like_torch(X23, beta=0), ValueError, "`beta`"),
        (lambda: parity.softplus_like_torch(X23, threshold=np.nan), ValueError, "`threshold`"),
        (lambda: parity.softplus_like_torch(X23, beta=np.ones(2)), TypeError, "`beta`"),
        (lambda: parity.hardtanh_like_torch(X23, 1.0, -1.0), ValueError, "`min_val` <="),
        (lambda: parity.leaky_relu_like_torch(X23, "a"), TypeError, "`negative_slope`"),
        (lambda: parity.clip_like_torch(X23, "a", 1.0), TypeError, "`min`"),
        (lambda: parity.abs_like_torch("a"), TypeError, "`x` to be a real array"),
        (lambda: parity.abs_like_torch(jnp.ones(2, complex)), TypeError, "complex"),
        (lambda: parity.pow_like_torch(X23, "a"), TypeError, "`y`"),
        (lambda: parity.atan2_like_torch(jnp.ones(2), jnp.ones(3)), ValueError, "broadcast"),
        (lambda: parity.fmax_like_torch(jnp.ones(2), jnp.ones(3)), ValueError, "broadcast"),
        (lambda: parity.xlogy_like_torch(jnp.ones(2), jnp.ones(3)), ValueError, "broadcast"),
        (lambda: parity.polygamma_like_torch(-1, 1.0), ValueError, "`n`"),
        (lambda: parity.polygamma_like_torch(20, 1.0), ValueError, "`n`"),
        (lambda: parity.polygamma_like_torch(1.0, 1.0), TypeError, "`n`"),
        (lambda: parity.digamma_like_torch(None), TypeError, "`x`"),
    ],
)
def test_variant_bad_arguments(call, error, needle):
    with pytest.raises(error, match=needle):
        call()


def test_variants_keep_torchs_edge_behaviour():
    assert float(parity.max_like_torch(jnp.float32(2.0), axis=0)) == 2.0  # torch.max(0-d, 0)
    var = parity.var_like_torch(jnp.array([1.0, 2.0, 4.0]), correction=1.5)
    assert float(var) == pytest.approx(14 / 3 / 1.5)  # torch.var(..., correction=1.5): 3.1111
    g = jax.jit(jax.grad(lambda x: parity.max_like_torch(x, 1).sum()))(jnp.array([[1.0, 1.0]]))
    np.testing.assert_array_equal(g, [[1.0, 0.0]])


# ---- digamma / polygamma for negative x, against an exact identity and mpmath -------------


def _polygamma_reference(n, x):
    """psi_n(x) = psi_n(x + k) - (-1)^n n! sum_{j<k} (x + j)^-(n+1), with x + k >= 1 (the
    exact recurrence; scipy is accurate for positive arguments), and mpmath when installed."""
    import math

    import scipy.special

    k = int(np.ceil(1 - x))
    tail = sum((x + j) ** -(n + 1) for j in range(k))
    by_recurrence = scipy.special.polygamma(n, x + k) - (-1) ** n * math.factorial(n) * tail
    try:
        import mpmath
    except ImportError:
        return by_recurrence
    exact = float(mpmath.polygamma(n, x))
    assert by_recurrence == pytest.approx(exact, rel=1e-10)
    return exact


PG_POINTS = [-0.3, -2.5, -7.5, -8.5, -9.3, -12.25, -20.5, -33.7]


def test_polygamma_like_torch_is_right_for_negative_x_and_jax_is_not():
    xs = np.array(PG_POINTS)

    @jax.jit  # one compile for everything below
    def everything(xs):
        orders = (1, 2, 5)
        return {
            "mine": [parity.polygamma_like_torch(n, xs) for n in orders],
            "plain": [jax.scipy.special.polygamma(n, xs) for n in orders],
            "grad": jax.vmap(jax.grad(parity.digamma_like_torch))(xs),
            "second": jax.grad(jax.grad(parity.digamma_like_torch))(xs[3]),
            "positive": parity.polygamma_like_torch(3, -xs[:3]),
            "jax_positive": jax.scipy.special.polygamma(3, -xs[:3]),
            "poles": (
                parity.polygamma_like_torch(1, jnp.array([0.0, -3.0])),
                parity.polygamma_like_torch(2, jnp.array([-3.0])),
            ),
        }

    with scoped(x64=True):
        got = jax.tree.map(np.asarray, everything(xs))
    for i, n in enumerate((1, 2, 5)):
        ref = np.array([_polygamma_reference(n, x) for x in xs])
        np.testing.assert_allclose(got["mine"][i], ref, rtol=1e-11, err_msg=f"n={n}")
        assert np.max(np.abs(got["plain"][i] - ref) / np.abs(ref)) > 0.1  # jax#37635 still there
    ref1 = np.array([_polygamma_reference(1, x) for x in xs])
    np.testing.assert_allclose(got["grad"], ref1, rtol=1e-11)  # digamma's derivative
    assert float(got["second"]) == pytest.approx(_polygamma_reference(2, -8.5), rel=1e-11)
    np.testing.assert_allclose(got["positive"], got["jax_positive"])  # x > 0: JAX's own
    assert np.all(np.isposinf(got["poles"][0])) and np.all(np.isnan(got["poles"][1]))


def test_polygamma_against_torch_with_compare():
    pytest.importorskip("torch")
    import torch

    # off the half-integers, where torch's even orders lose digits (3e-5 at n = 6, x = -29.5)
    xs = np.array([-0.3, -2.7, -7.3, -8.6, -9.3, -12.2, -20.4, -33.7])
    res = parity.compare(
        lambda x: parity.polygamma_like_torch(5, x), lambda x: torch.special.polygamma(5, x), xs
    )
    res.assert_ok()
    plain = parity.compare(
        lambda x: jax.scipy.special.polygamma(5, x), lambda x: torch.special.polygamma(5, x), xs
    )
    assert {r.quantity for r in plain.failures} == {"value", "vjp", "jvp"}


def test_a_jvp_entry_stops_holding_on_the_symmetric_subspace():
    pytest.importorskip("torch")
    d = get_divergence("cholesky-nonsymmetric-tangent")
    m = d.measure()
    assert d.holds(m)
    sym = dataclasses.replace(d, tangent=np.array([[0.0, 1.0], [1.0, 0.0]]))
    assert not sym.holds()  # both frameworks agree there: not a divergence


# ---- docs --------------------------------------------------------------------------------


def test_docs_table_is_the_registry():
    text = DOC.read_text()
    begin, end = "<!-- registry:begin -->\n", "\n<!-- registry:end -->"
    assert begin in text and end in text
    table = text.split(begin, 1)[1].split(end, 1)[0]
    assert table == registry_markdown(), (
        "docs/divergences.md is out of date; regenerate the table with "
        "funcdiff.parity._divergences.registry_markdown()"
    )


def test_docs_python_examples_run():
    import re

    pytest.importorskip("torch")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/divergences.md", "exec"), namespace)


def test_registry_table_renders():
    text = registry_table()
    assert all(d.name in text for d in REG)
    assert "abs-at-zero" in str(get_divergence("abs-at-zero"))


# ---- with funcdiff.parity.compare: values, gradient/VJP, JVP and HVP at the kink ------------


# torch's own forward mode (JVP) disagrees with its reverse mode at these points, so no JAX
# function can match both; the match-torch variant follows torch's gradient.
TORCH_JVP_DIFFERS_FROM_ITS_GRAD = {"atan2-origin", "fmax-ties"}


@pytest.mark.parametrize("d", [d for d in REG if d.match_torch is not None], ids=lambda d: d.name)
def test_compare_passes_the_match_torch_variant_and_fails_the_plain_op(d):
    """At the registered point, compare() sees the plain JAX op differ from torch and the
    match-torch variant agree on value, gradient/VJP and JVP. (Second order at a kink is not
    claimed: torch's HVP of the norm at 0 is NaN, and it has no double backward for
    hardsigmoid; 1-element arrays keep elementwise ops first order.)"""
    pytest.importorskip("torch")
    args = tuple(np.atleast_1d(a) for a in d.args)
    plain = parity.compare(d.jax_fn, d.torch_fn, *args)
    assert not plain.ok, plain
    like = parity.compare(d.match_torch, d.torch_fn, *args)
    bad = [r.quantity for r in like.failures if r.quantity != "hvp"]
    assert bad == (["jvp"] if d.name in TORCH_JVP_DIFFERS_FROM_ITS_GRAD else []), like


def test_polygamma_like_torch_high_orders_in_float32_equal_jax_for_positive_x():
    """The cotangent polynomial's coefficients pass int32 from n = 12 on: they are floats."""
    x = jnp.array([0.5, 2.5], dtype=jnp.float32)
    for n in (12, 19):
        mine = parity.polygamma_like_torch(n, x)
        ref = jax.scipy.special.polygamma(n, x)
        np.testing.assert_allclose(np.asarray(mine), np.asarray(ref), rtol=1e-5)
