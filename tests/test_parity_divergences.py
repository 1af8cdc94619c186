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
        assert d.quantity in ("value", "grad")
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


def test_variant_bad_arguments():
    with pytest.raises(ValueError, match="`ord`"):
        norm_like_torch(jnp.ones(3), ord=3)
    with pytest.raises(ValueError, match="`approximate`"):
        parity.gelu_like_torch(jnp.ones(3), approximate="fast")


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
