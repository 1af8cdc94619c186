"""Kink and tie search: exact zeros, ties, clamp bounds, -inf rows, 0**0 and atan2(0, 0) fed
into the catalog's functions; every disagreement found must be a registered divergence."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from funcdiff.parity import catalog, divergences, get_case
from funcdiff.parity._kinks import explain, probe

torch = pytest.importorskip("torch")

POOLS = {
    "real": (0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -3.0, 3.0, 6.0, 20.5),
    "positive": (0.0, 0.5, 1.0, 2.0),
    "unit": (0.0, -0.0, 0.5, -0.5, 1.0, -1.0),
    "rows": (0.0, 1.0, -1.0, 2.0, -np.inf),
}
KINK_CASES = [c for c in catalog() if "kinks" in c.tags]
SETTINGS = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _domains(case) -> list[str]:
    tag = next(t for t in case.tags if t.startswith("domain:"))
    return tag.split(":", 1)[1].split(",")


@st.composite
def kink_args(draw, case):
    """The case's argument shapes filled with special values (zeros, ties, bounds, -inf)."""
    template = case.args(np.float64)
    doms = _domains(case)
    out = []
    for i, a in enumerate(template):
        pool = POOLS[doms[min(i, len(doms) - 1)]]
        if case.tags and "domain:rows" in case.tags and a.ndim == 2 and draw(st.booleans()):
            vals = draw(st.lists(st.sampled_from(pool), min_size=a.size, max_size=a.size))
            arr = np.asarray(vals, np.float64).reshape(a.shape)
            arr[draw(st.integers(0, a.shape[0] - 1))] = -np.inf  # an all -inf row
        else:
            vals = draw(st.lists(st.sampled_from(pool), min_size=a.size, max_size=a.size))
            arr = np.asarray(vals, np.float64).reshape(a.shape)
        out.append(arr)
    return tuple(out)


def _unexplained(case, args) -> list[str]:
    found = probe(case, args)
    if found and not explain(case, args):
        return [f"{case.name} at {[a.tolist() for a in args]}: {d}" for d in found]
    return []


def test_kink_cases_cover_the_families():
    names = {c.name for c in KINK_CASES}
    assert len(KINK_CASES) >= 30
    for needed in (
        "elementwise/abs",
        "elementwise/clip",
        "elementwise/pow_tensor",
        "elementwise/atan2",
        "reductions/logsumexp",
        "reductions/max_dim",
        "reductions/norm2",
        "nn/softmax",
        "nn/leaky_relu",
        "nn/hardtanh",
    ):
        assert needed in names


@pytest.mark.parametrize("case", KINK_CASES, ids=lambda c: c.name)
def test_every_disagreement_at_a_kink_is_registered(case):
    @SETTINGS
    @given(kink_args(case))
    def search(args):
        bad = _unexplained(case, args)
        assert not bad, "unregistered JAX/torch disagreement:\n" + "\n".join(bad)

    search()


@pytest.mark.parametrize(
    ("name", "args", "entry"),
    [
        ("elementwise/abs", ([0.0, 1.0],), "abs-at-zero"),
        ("elementwise/pow_tensor", ([0.0, 2.0], [0.0, 1.0]), "pow-zero-exponent-at-zero"),
        ("elementwise/atan2", ([0.0, 1.0], [0.0, 1.0]), "atan2-origin"),
        ("elementwise/clip", ([-1.0, 1.0, 0.5],), "clip-at-bounds"),
        ("reductions/max_dim", ([[1.0, 1.0, 0.0]],), "max-dim-ties"),
        ("reductions/norm2", ([0.0, 0.0],), "norm-at-zero"),
        ("nn/leaky_relu", ([0.0, 1.0],), "leaky-relu-at-zero"),
        ("elementwise/xlogy", ([0.0, 1.0], [0.0, 2.0]), "xlogy-zero"),
        ("elementwise/fmax", ([1.0, 2.0], [1.0, 0.0]), "fmax-ties"),
    ],
)
def test_named_kinks_disagree_and_are_explained_by_their_entry(name, args, entry):
    case = get_case(name)
    args = tuple(np.asarray(a, np.float64) for a in args)
    assert probe(case, args), f"{name} at {args} no longer disagrees"
    assert entry in [d.name for d in explain(case, args)]


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("reductions/logsumexp", ([[-np.inf, -np.inf], [0.0, 1.0]],)),  # all -inf row: NaN both
        ("nn/softmax", ([[-np.inf, -np.inf, -np.inf], [0.0, 0.0, 1.0]],)),
        ("nn/log_softmax", ([[-np.inf, 0.0, -np.inf]],)),
        ("elementwise/maximum", ([1.0, 0.0], [1.0, 0.0])),  # ties: 0.5/0.5 in both
        ("elementwise/sqrt", ([0.0, 1.0],)),  # inf gradient in both
        ("nn/relu", ([0.0, -0.0, 1.0],)),
        ("nn/relu6", ([6.0, 0.0],)),
        ("reductions/max", ([[1.0, 1.0], [0.0, 1.0]],)),  # no dim: even split in both
        ("elementwise/floor_mul", ([1.0, 2.0, -1.0],)),
    ],
)
def test_agreements_at_kinks_stay_agreements(name, args):
    """The research notes' "same in both" rows, measured: no disagreement at all."""
    args = tuple(np.asarray(a, np.float64) for a in args)
    assert probe(get_case(name), args) == ()


def test_search_reports_an_unregistered_divergence():
    """The check can fail: with abs-at-zero removed from the registry, abs at 0 is flagged."""
    case = get_case("elementwise/abs")
    args = (np.array([0.0, 1.0]),)
    reg = tuple(d for d in divergences() if d.name != "abs-at-zero")
    assert probe(case, args)
    assert explain(case, args, reg) == ()


def test_probe_catches_a_planted_wrong_twin():
    case = dataclasses.replace(get_case("elementwise/exp"), jax_fn=lambda x: jnp.exp(x) * 1.001)
    found = probe(case, (np.array([0.5, 1.0]),))
    assert {d.quantity for d in found} == {"value", "vjp"}


@SETTINGS
@given(st.sampled_from([0.0, -0.0, 1.0]), st.sampled_from([0.0, -0.0, 1.0]))
@example(0.0, 0.0)
def test_zero_to_the_zero_and_atan2_origin(x, y):
    for name in ("elementwise/pow_tensor", "elementwise/atan2"):
        case = get_case(name)
        args = (np.array([x]), np.array([y]))
        assert not _unexplained(case, args)
