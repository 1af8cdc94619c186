"""load_torch_weights / export_torch_weights: every layout checked against torch's own forward.

Each layer kind is loaded from its torch twin into Flax NNX and Equinox and the forward
outputs are compared in float64 (x64 scoped to the test) to 1e-10; planted bugs (a Linear rule
that forgets the transpose, a layer out of order, a missing layer) show that the checks fail.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nnx = pytest.importorskip("flax.nnx")
eqx = pytest.importorskip("equinox")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from _models_helpers import (  # noqa: E402
    TOL,
    _abstract,
    _attn64,
    _cf,
    _cl,
    _eqx_abstract,
    _perturb_running_stats,
    _rng,
    _t,
    _x64_and_seed,  # noqa: F401  (the autouse fixture)
)

from funcdiff._config import scoped  # noqa: E402
from funcdiff.parity import (  # noqa: E402
    WeightMapping,
    export_torch_weights,
    load_torch_weights,
)
from funcdiff.parity.models import _layouts  # noqa: E402
from funcdiff.parity.models._frameworks import (  # noqa: E402
    framework_of,
    jax_leaves,
    set_leaves,
)


@functools.cache  # built once (under x64); each case is used by one test
def _nnx_cases() -> dict[str, Any]:
    f64 = jnp.float64
    x3 = _rng().normal(size=(2, 4, 7))
    x4 = _rng().normal(size=(2, 4, 6, 6))
    x5 = _rng().normal(size=(1, 2, 4, 4, 4))
    seq = _rng().normal(size=(2, 5, 4))

    def conv(t: Any, j: Any, x: np.ndarray) -> tuple:
        return t, j, x, lambda t, x: t(_t(x)), lambda j, x: _cf(j(_cl(x)))

    def bn() -> Any:
        b = torch.nn.BatchNorm2d(4).double().eval()
        _perturb_running_stats(b)
        return b

    def rnn(t: Any, j: Any) -> tuple:
        return t, j, seq, lambda t, x: t(_t(x))[0], lambda j, x: j(jnp.asarray(x))

    def gru() -> Any:
        g = torch.nn.GRU(4, 3, batch_first=True).double()
        with torch.no_grad():
            g.bias_hh_l0[6:].zero_()  # b_hn: flax's GRUCell has no bias inside r * (...)
        return g

    return {
        "Linear": (
            torch.nn.Linear(4, 3).double(),
            _abstract(nnx.Linear, 4, 3),
            x3.transpose(0, 2, 1),
            lambda t, x: t(_t(x)),
            lambda j, x: j(jnp.asarray(x)),
        ),
        "LinearGeneral": (
            torch.nn.Linear(6, 8),
            _abstract(nnx.LinearGeneral, 6, (2, 4)),
            _rng().normal(size=(3, 6)),
            lambda t, x: t(_t(x)),
            lambda j, x: j(jnp.asarray(x)).reshape(3, 8),
        ),
        "Conv1d": conv(
            torch.nn.Conv1d(4, 3, 3), _abstract(nnx.Conv, 4, 3, (3,), padding="VALID"), x3
        ),
        "Conv2d-groups": conv(
            torch.nn.Conv2d(4, 6, 3, stride=2, groups=2),
            _abstract(nnx.Conv, 4, 6, (3, 3), strides=2, padding="VALID", feature_group_count=2),
            x4,
        ),
        "Conv3d": conv(
            torch.nn.Conv3d(2, 3, 2), _abstract(nnx.Conv, 2, 3, (2, 2, 2), padding="VALID"), x5
        ),
        "ConvTranspose1d": conv(
            torch.nn.ConvTranspose1d(4, 3, 3, stride=2),
            _abstract(nnx.ConvTranspose, 4, 3, (3,), strides=2, padding="VALID"),
            x3,
        ),
        "ConvTranspose2d-transpose_kernel": conv(
            torch.nn.ConvTranspose2d(4, 3, 3, stride=2),
            _abstract(
                nnx.ConvTranspose,
                4,
                3,
                (3, 3),
                strides=2,
                padding="VALID",
                transpose_kernel=True,
            ),
            x4,
        ),
        "Embedding": (
            torch.nn.Embedding(10, 3),
            _abstract(nnx.Embed, 10, 3),
            np.array([[1, 5, 9], [0, 2, 2]]),
            lambda t, x: t(_t(x)),
            lambda j, x: j(jnp.asarray(x)),
        ),
        "LayerNorm": (
            torch.nn.LayerNorm(4),
            _abstract(nnx.LayerNorm, 4, epsilon=1e-5),
            seq,
            lambda t, x: t(_t(x)),
            lambda j, x: j(jnp.asarray(x)),
        ),
        "GroupNorm": conv(
            torch.nn.GroupNorm(2, 4), _abstract(nnx.GroupNorm, 4, num_groups=2, epsilon=1e-5), x4
        ),
        "RMSNorm": (
            torch.nn.RMSNorm(4, eps=1e-5),
            _abstract(nnx.RMSNorm, 4, epsilon=1e-5),
            seq,
            lambda t, x: t(_t(x)),
            lambda j, x: j(jnp.asarray(x)),
        ),
        "BatchNorm2d": conv(bn(), _abstract(nnx.BatchNorm, 4, use_running_average=True), x4),
        "MultiheadAttention": (
            torch.nn.MultiheadAttention(4, 2, batch_first=True),
            _abstract(
                nnx.MultiHeadAttention,
                num_heads=2,
                in_features=4,
                decode=False,
                attention_fn=_attn64,
            ),
            seq,
            lambda t, x: t(_t(x), _t(x), _t(x), need_weights=False)[0],
            lambda j, x: j(jnp.asarray(x)),
        ),
        # RNN cells make their initial carry in param_dtype: float64 cells for a float64 run
        "LSTM": rnn(
            torch.nn.LSTM(4, 3, batch_first=True),
            nnx.RNN(_abstract(nnx.LSTMCell, 4, 3, param_dtype=f64)),
        ),
        "LSTM-optimized": rnn(
            torch.nn.LSTM(4, 3, batch_first=True),
            nnx.RNN(_abstract(nnx.OptimizedLSTMCell, 4, 3, param_dtype=f64)),
        ),
        "GRU": rnn(gru(), nnx.RNN(_abstract(nnx.GRUCell, 4, 3, param_dtype=f64))),
    }


NNX_KINDS = [
    "Linear",
    "LinearGeneral",
    "Conv1d",
    "Conv2d-groups",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d-transpose_kernel",
    "Embedding",
    "LayerNorm",
    "GroupNorm",
    "RMSNorm",
    "BatchNorm2d",
    "MultiheadAttention",
    "LSTM",
    "LSTM-optimized",
    "GRU",
]


@pytest.mark.parametrize("name", NNX_KINDS)
def test_nnx_layer_loaded_matches_torch_forward(name):
    t, j, x, fwd_t, fwd_j = _nnx_cases()[name]
    t = t.double()
    res = load_torch_weights(j, t)
    assert res.ok, str(res)
    assert res.model is j  # NNX: loaded in place
    assert all(np.asarray(v).dtype == np.float64 for v in jax_leaves(j).values())
    with torch.no_grad():
        want = fwd_t(t, x).numpy()
    got = np.asarray(fwd_j(j, x))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    assert len(res.layers) == 1 and res.layers[0][1] == (
        "cell" if "LSTM" in name or name == "GRU" else ""
    )


@functools.cache
def _eqx_cases() -> dict[str, Any]:
    k = jax.random.split(jax.random.PRNGKey(0), 16)
    x3 = _rng().normal(size=(2, 4, 7))
    x4 = _rng().normal(size=(2, 4, 6, 6))
    seq = _rng().normal(size=(2, 5, 4))
    vm = jax.vmap

    def per_item(t: Any, j: Any, x: np.ndarray) -> tuple:
        return t, j, x, lambda t, x: t(_t(x)), lambda j, x: vm(j)(jnp.asarray(x))

    def bn(mode: str) -> tuple:
        b = torch.nn.BatchNorm2d(4).double().eval()
        _perturb_running_stats(b)
        pair = eqx.filter_eval_shape(
            lambda: eqx.nn.make_with_state(eqx.nn.BatchNorm)(4, "batch", mode=mode, inference=True)
        )

        def fwd(js: Any, x: np.ndarray) -> Any:
            m, s = js
            return vm(m, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(
                jnp.asarray(x), s
            )[0]

        return b, pair, x4, lambda t, x: t(_t(x)), fwd

    def scan_cell(lstm: bool) -> Any:
        def fwd(cell: Any, x: np.ndarray) -> Any:
            def one(xs: Any) -> Any:
                h0 = jnp.zeros(3)
                carry0 = (h0, h0) if lstm else h0

                def step(c: Any, xt: Any) -> Any:
                    c = cell(xt, c)
                    return c, (c[0] if lstm else c)

                return jax.lax.scan(step, carry0, xs)[1]

            return vm(one)(jnp.asarray(x))

        return fwd

    return {
        "Linear": per_item(
            torch.nn.Linear(4, 4), _eqx_abstract(eqx.nn.Linear, 4, 4, key=k[0]), seq[:, 0]
        ),
        "Conv1d": per_item(
            torch.nn.Conv1d(4, 3, 3), _eqx_abstract(eqx.nn.Conv1d, 4, 3, 3, key=k[1]), x3
        ),
        "Conv2d": per_item(
            torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2),
            _eqx_abstract(eqx.nn.Conv2d, 4, 6, 3, stride=2, padding=1, groups=2, key=k[2]),
            x4,
        ),
        "Conv3d": per_item(
            torch.nn.Conv3d(2, 3, 2),
            _eqx_abstract(eqx.nn.Conv3d, 2, 3, 2, key=k[8]),
            _rng().normal(size=(1, 2, 4, 4, 4)),
        ),
        "ConvTranspose1d": per_item(
            torch.nn.ConvTranspose1d(4, 3, 3, stride=2),
            _eqx_abstract(eqx.nn.ConvTranspose1d, 4, 3, 3, stride=2, key=k[9]),
            x3,
        ),
        "ConvTranspose2d": per_item(
            torch.nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1),
            _eqx_abstract(
                eqx.nn.ConvTranspose2d, 4, 3, 3, stride=2, padding=1, output_padding=1, key=k[3]
            ),
            x4,
        ),
        "Embedding": (
            torch.nn.Embedding(10, 3),
            _eqx_abstract(eqx.nn.Embedding, 10, 3, key=k[4]),
            np.array([1, 5, 9, 0]),
            lambda t, x: t(_t(x)),
            lambda j, x: vm(j)(jnp.asarray(x)),
        ),
        "LayerNorm": per_item(torch.nn.LayerNorm(4), _eqx_abstract(eqx.nn.LayerNorm, 4), seq[:, 0]),
        "GroupNorm": per_item(torch.nn.GroupNorm(2, 4), _eqx_abstract(eqx.nn.GroupNorm, 2, 4), x4),
        "RMSNorm": per_item(
            torch.nn.RMSNorm(4, eps=1e-5),
            _eqx_abstract(eqx.nn.RMSNorm, 4, use_bias=False),
            seq[:, 0],
        ),
        "BatchNorm2d-batch": bn("batch"),
        "BatchNorm2d-ema": bn("ema"),
        "MultiheadAttention": (
            torch.nn.MultiheadAttention(4, 2, batch_first=True),
            _eqx_abstract(
                eqx.nn.MultiheadAttention,
                2,
                4,
                use_query_bias=True,
                use_key_bias=True,
                use_value_bias=True,
                use_output_bias=True,
                key=k[5],
            ),
            seq,
            lambda t, x: t(_t(x), _t(x), _t(x), need_weights=False)[0],
            lambda j, x: vm(j)(jnp.asarray(x), jnp.asarray(x), jnp.asarray(x)),
        ),
        "LSTM": (
            torch.nn.LSTM(4, 3, batch_first=True),
            _eqx_abstract(eqx.nn.LSTMCell, 4, 3, key=k[6]),
            seq,
            lambda t, x: t(_t(x))[0],
            scan_cell(True),
        ),
        "GRU": (
            torch.nn.GRU(4, 3, batch_first=True),  # b_hn is representable in Equinox
            _eqx_abstract(eqx.nn.GRUCell, 4, 3, key=k[7]),
            seq,
            lambda t, x: t(_t(x))[0],
            scan_cell(False),
        ),
    }


EQX_KINDS = [
    "Linear",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "Embedding",
    "LayerNorm",
    "GroupNorm",
    "RMSNorm",
    "BatchNorm2d-batch",
    "BatchNorm2d-ema",
    "MultiheadAttention",
    "LSTM",
    "GRU",
]


@pytest.mark.parametrize("name", EQX_KINDS)
def test_equinox_layer_loaded_matches_torch_forward(name):
    t, j, x, fwd_t, fwd_j = _eqx_cases()[name]
    t = t.double()
    before = jax.tree_util.tree_leaves(j)
    res = load_torch_weights(j, t)
    assert res.ok, str(res)
    assert res.model is not j
    assert all(a is b for a, b in zip(jax.tree_util.tree_leaves(j), before, strict=True))
    if isinstance(j, tuple):  # stateful: a new (model, state) pair comes back
        assert isinstance(res.model, tuple) and len(res.model) == 2
    with torch.no_grad():
        want = fwd_t(t, x).numpy()
    got = np.asarray(fwd_j(res.model, x))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


def test_gru_nonzero_b_hn_is_refused_for_nnx_with_the_reason():
    g = torch.nn.GRU(4, 3).double()
    with pytest.raises(ValueError, match=r"b_hn.*r \* \(W_hn h \+ b_hn\).*eqx.nn.GRUCell"):
        load_torch_weights(_abstract(nnx.GRUCell, 4, 3), g)


def _square_linear_pair() -> tuple[Any, Any, np.ndarray]:
    t = torch.nn.Linear(3, 3).double()
    return t, _abstract(nnx.Linear, 3, 3), _rng(1).normal(size=(2, 3))


def test_square_linear_is_transposed_by_type():
    t, m, x = _square_linear_pair()
    res = load_torch_weights(m, t)
    assert [r.rule for r in res.rows] == ["weight.T", "as is"]
    np.testing.assert_array_equal(np.asarray(m.kernel[...]), t.weight.detach().numpy().T)
    np.testing.assert_allclose(
        np.asarray(m(jnp.asarray(x))), t(_t(x)).detach().numpy(), rtol=0, atol=TOL
    )


def test_the_rule_table_is_built_once_per_set_of_imported_frameworks(monkeypatch):
    # flax without equinox (the usual NNX user): one table, reused, with no equinox rules
    monkeypatch.delitem(sys.modules, "equinox", raising=False)
    table = _layouts._table()
    assert _layouts._table() is table and nnx.Linear in table
    assert not any(s.name.startswith("eqx.") for s in table.values())


def test_planted_untransposed_linear_rule_is_caught_by_the_forward_check(monkeypatch):
    spec = _layouts.rule_for(_abstract(nnx.Linear, 1, 1))
    assert spec is not None

    def wrong(jl, tl):
        plan = spec.plan(jl, tl)
        pieces = [p._replace(load=lambda a: a[0]) if p.jax == "kernel" else p for p in plan.pieces]
        return plan._replace(pieces=pieces)

    monkeypatch.setitem(_layouts._table(), nnx.Linear, spec._replace(plan=wrong))
    t, m, x = _square_linear_pair()
    assert load_torch_weights(m, t).ok  # shapes cannot see it on a square layer...
    err = np.abs(np.asarray(m(jnp.asarray(x))) - t(_t(x)).detach().numpy()).max()
    assert err > 1e-2  # ...the forward comparison does
    t2 = torch.nn.Linear(3, 5).double()  # and on a non-square layer the shapes do
    with pytest.raises(ValueError, match=r"shape mismatch.*\(5, 3\).*\(3, 5\)"):
        load_torch_weights(_abstract(nnx.Linear, 3, 5), t2)


class _TorchNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.attn = torch.nn.MultiheadAttention(4, 2, batch_first=True)
        self.lstm = torch.nn.LSTM(4, 5, num_layers=2, batch_first=True)
        self.gru = torch.nn.GRU(5, 3, batch_first=True)
        self.head = torch.nn.Linear(3, 3)


class _NnxNet(nnx.Module):
    def __init__(self, rngs: Any) -> None:
        self.conv = nnx.Conv(3, 4, (3, 3), padding="VALID", rngs=rngs)
        self.bn = nnx.BatchNorm(4, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(num_heads=2, in_features=4, decode=False, rngs=rngs)
        self.lstm = nnx.List(
            [nnx.RNN(nnx.LSTMCell(4, 5, rngs=rngs)), nnx.RNN(nnx.LSTMCell(5, 5, rngs=rngs))]
        )
        self.gru = nnx.GRUCell(5, 3, rngs=rngs)
        self.head = nnx.Linear(3, 3, rngs=rngs)


def _randomize(model: Any, seed: int) -> Any:
    leaves = jax_leaves(model)
    rng = _rng(seed)
    return set_leaves(
        model,
        {
            p: jnp.asarray(rng.normal(size=np.shape(v)), dtype=v.dtype) + (2.0 if "var" in p else 0)
            for p, v in leaves.items()
            if jnp.issubdtype(v.dtype, jnp.floating)
        },
    )


def test_nnx_round_trip_is_bit_exact_and_paths_name_list_items():
    with scoped(x64=False):
        t = _TorchNet()
        t.bn.num_batches_tracked.fill_(3)
        m = _randomize(nnx.eval_shape(lambda: _NnxNet(nnx.Rngs(0))), 1)
        want = {p: np.asarray(v).copy() for p, v in jax_leaves(m).items()}
        sd = export_torch_weights(m, t)
        assert list(sd) == list(t.state_dict())
        assert all(v.is_contiguous() for v in sd.values())
        assert int(sd["bn.num_batches_tracked"]) == 3
        assert not torch.equal(sd["lstm.bias_hh_l1"], t.lstm.bias_hh_l1)  # exported zeros
        t.load_state_dict(sd)
        fresh = nnx.eval_shape(lambda: _NnxNet(nnx.Rngs(5)))
        res = load_torch_weights(fresh, t)
        assert res.ok, str(res)
        got = jax_leaves(fresh)
        assert list(got) == list(want)
        for p in want:
            np.testing.assert_array_equal(np.asarray(got[p]), want[p], err_msg=p)
            assert np.asarray(got[p]).dtype == want[p].dtype
    assert ("lstm.l1", "lstm.1.cell", "LSTM") in res.layers
    assert ("bn.num_batches_tracked", res.dropped[0][1]) == res.dropped[0]
    assert "num_batches_tracked" in str(res)
    row = next(r for r in res.rows if r.jax_path == "lstm.1.cell.hi.bias")
    assert row.torch_name == "lstm.bias_ih_l1 + lstm.bias_hh_l1"
    assert row.rule == "bias_ih[i] + bias_hh[i]"
    row = next(r for r in res.rows if r.jax_path == "attn.query.kernel")
    assert (row.torch_name, row.torch_shape, row.jax_shape) == (
        "attn.in_proj_weight",
        (12, 4),
        (4, 2, 2),
    )


def test_equinox_round_trip_is_bit_exact_with_state():
    k = jax.random.split(jax.random.PRNGKey(0), 4)

    class Net(eqx.Module):
        conv: Any
        bn: Any
        cell: Any
        head: Any

        def __init__(self):
            self.conv = eqx.nn.Conv2d(3, 4, 3, key=k[0])
            self.bn = eqx.nn.BatchNorm(4, "batch", mode="batch")
            self.cell = eqx.nn.GRUCell(4, 3, key=k[1])
            self.head = eqx.nn.Linear(3, 3, key=k[2])

    class TNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.bn = torch.nn.BatchNorm2d(4)
            self.cell = torch.nn.GRUCell(4, 3)
            self.head = torch.nn.Linear(3, 3)

    with scoped(x64=False):
        pair = eqx.filter_eval_shape(eqx.nn.make_with_state(Net))
        assert framework_of(pair) == "equinox"
        pair = _randomize(pair, 2)
        want = {p: np.asarray(v).copy() for p, v in jax_leaves(pair).items()}
        t = TNet()
        t.load_state_dict(export_torch_weights(pair, t))
        res = load_torch_weights(eqx.filter_eval_shape(eqx.nn.make_with_state(Net)), t)
        assert res.ok, str(res)
        got = jax_leaves(res.model)
    assert "bn.batch_state_index.0" in got and "bn.batch_counter" in got
    for p in want:
        if p != "bn.batch_counter":  # set to 0 on load, so the statistics are used as is
            np.testing.assert_array_equal(np.asarray(got[p]), want[p], err_msg=p)
    assert int(got["bn.batch_counter"]) == 0
    assert any("batch_counter" in n for n in res.notes)


def test_equinox_state_is_required_for_batchnorm():
    bn = eqx.nn.BatchNorm(4, "batch", mode="batch")
    with pytest.raises(TypeError, match=r"make_with_state"):
        load_torch_weights(bn, torch.nn.BatchNorm1d(4))


def test_state_dict_source_and_dtype_policy():
    t = torch.nn.Linear(3, 2).double()
    sd = t.state_dict()
    m = _abstract(nnx.Linear, 3, 2)  # float32 template
    assert load_torch_weights(m, sd).ok
    assert m.kernel[...].dtype == jnp.float64  # torch float64 under x64 stays float64
    with scoped(x64=False):
        m = _abstract(nnx.Linear, 3, 2)
        res = load_torch_weights(m, sd)
        assert m.kernel[...].dtype == jnp.float32
        assert any("cast to float32" in n for n in res.notes)
    t32 = torch.nn.Linear(3, 2)
    m = _abstract(nnx.Linear, 3, 2, param_dtype=jnp.float64)
    load_torch_weights(m, t32)
    assert m.kernel[...].dtype == jnp.float64  # the template's dtype otherwise


def test_loaded_arrays_are_copies_of_torch_memory():
    t = torch.nn.Linear(3, 3)
    m = _abstract(nnx.Linear, 3, 3, param_dtype=jnp.float32)
    with scoped(x64=False):
        load_torch_weights(m, t)
    before = np.asarray(m.bias[...]).copy()
    with torch.no_grad():
        t.bias.add_(1.0)
    np.testing.assert_array_equal(np.asarray(m.bias[...]), before)


def test_record_str_and_to_dict():
    res = load_torch_weights(_abstract(nnx.Linear, 2, 3), torch.nn.Linear(2, 3))
    assert isinstance(res, WeightMapping)
    s = str(res)
    assert s.startswith("weights OK: 2 torch tensors -> 2 JAX leaves (nnx), 1 layers aligned")
    assert "weight.T" in s and "(3, 2)" in s and "(2, 3)" in s
    d = res.to_dict()
    assert d["rows"][0]["torch_name"] == "weight" and d["rows"][0]["jax_shape"] == [2, 3]
    assert d["layers"] == [["", "", "Linear"]]
    import json

    json.dumps(d)
    res.assert_ok()


def test_to_torch_maps_gradients_by_the_adjoint_of_each_rule():
    class TNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = torch.nn.MultiheadAttention(4, 2, batch_first=True)
            self.lstm = torch.nn.LSTM(4, 3, batch_first=True)
            self.head = torch.nn.Linear(3, 2)

        def forward(self, x):
            h = self.attn(x, x, x, need_weights=False)[0]
            return self.head(self.lstm(h)[0])

    class JNet(nnx.Module):
        def __init__(self) -> None:  # abstract layers: nothing to initialise
            self.attn = _abstract(
                nnx.MultiHeadAttention,
                num_heads=2,
                in_features=4,
                decode=False,
                attention_fn=_attn64,
            )
            self.lstm = nnx.RNN(_abstract(nnx.LSTMCell, 4, 3, param_dtype=jnp.float64))
            self.head = _abstract(nnx.Linear, 3, 2)

        def __call__(self, x):
            return self.head(self.lstm(self.attn(x)))

    t = TNet().double()
    m = JNet()
    mapping = load_torch_weights(m, t)
    x = _rng().normal(size=(2, 5, 4))
    ct = _rng(1).normal(size=(2, 5, 2))
    (t(_t(x)) * _t(ct)).sum().backward()
    grads = nnx.grad(lambda m: (m(jnp.asarray(x)) * ct).sum())(m)
    got = mapping.to_torch(grads, gradients=True)
    want = {n: p.grad.numpy() for n, p in t.named_parameters()}
    assert set(got) == set(want)
    for n in want:
        np.testing.assert_allclose(got[n], want[n], rtol=0, atol=TOL, err_msg=n)
    # values (not gradients): the loaded model maps back onto torch's own tensors
    vals = mapping.to_torch(m)
    sd = {n: p.detach().numpy() for n, p in t.named_parameters()}
    for n in sd:
        if "lstm.bias" not in n:
            np.testing.assert_array_equal(vals[n], sd[n], err_msg=n)
    # the two biases were summed: the sum goes to bias_ih, zeros to bias_hh
    np.testing.assert_array_equal(
        vals["lstm.bias_ih_l0"], sd["lstm.bias_ih_l0"] + sd["lstm.bias_hh_l0"]
    )
    assert not vals["lstm.bias_hh_l0"].any()
    with pytest.raises(KeyError, match=r"attn\.query\.bias"):
        mapping.to_torch({"attn.query.kernel": np.zeros((4, 2, 2))})


def test_to_torch_gradients_for_equinox_gru_and_nnx_gru():
    t = torch.nn.GRUCell(4, 3).double()
    x = _rng().normal(size=(4,))
    h = _rng(1).normal(size=(3,))
    t(_t(x)[None], _t(h)[None]).sum().backward()
    want = {n: p.grad.numpy() for n, p in t.named_parameters()}
    cell = load_torch_weights(_eqx_abstract(eqx.nn.GRUCell, 4, 3, key=jax.random.PRNGKey(0)), t)
    g = eqx.filter_grad(lambda c: c(jnp.asarray(x), jnp.asarray(h)).sum())(cell.model)
    got = cell.to_torch(g, gradients=True)
    for n in want:
        np.testing.assert_allclose(got[n], want[n], rtol=0, atol=TOL, err_msg=n)
    with torch.no_grad():
        t.bias_hh[6:].zero_()
    t.zero_grad()
    t(_t(x)[None], _t(h)[None]).sum().backward()
    want = {n: p.grad.numpy() for n, p in t.named_parameters()}
    m = _abstract(nnx.GRUCell, 4, 3, param_dtype=jnp.float64)
    mapping = load_torch_weights(m, t)
    g = nnx.grad(lambda m: m(jnp.asarray(h), jnp.asarray(x))[0].sum())(m)
    got = mapping.to_torch(g, gradients=True)
    assert "bias_hh" not in got  # b_hn is no nnx.GRUCell parameter
    for n in ("weight_ih", "weight_hh", "bias_ih"):
        np.testing.assert_allclose(got[n], want[n], rtol=0, atol=TOL, err_msg=n)


def test_equinox_mlp_and_tied_weights():
    class Tied(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(6, 4)
            self.mlp = torch.nn.Sequential(
                torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 4)
            )
            self.head = torch.nn.Linear(4, 6, bias=False)
            self.head.weight = self.embed.weight  # tied

    class Port(eqx.Module):
        embed: Any
        mlp: Any

        def __init__(self) -> None:
            self.embed = _eqx_abstract(eqx.nn.Embedding, 6, 4, key=jax.random.PRNGKey(0))
            self.mlp = _eqx_abstract(
                eqx.nn.MLP, 4, 4, 5, 1, activation=jnp.tanh, key=jax.random.PRNGKey(1)
            )

        def __call__(self, i):
            h = self.mlp(self.embed(i))
            return self.embed.weight @ h  # the tied head

    t = Tied().double()
    res = load_torch_weights(Port(), t)
    assert res.ok, str(res)
    assert (
        "head.weight",
        "tied to `embed.weight` (the same storage), loaded from there",
    ) in res.dropped
    assert [b for _, b, _ in res.layers] == ["embed", "mlp.layers.0", "mlp.layers.1"]
    ids = np.array([0, 3, 5])
    want = t.head(t.mlp(t.embed(_t(ids)))).detach().numpy()
    np.testing.assert_allclose(np.asarray(jax.vmap(res.model)(jnp.asarray(ids))), want, atol=TOL)
    sd = export_torch_weights(res.model, t)
    assert torch.equal(sd["head.weight"], sd["embed.weight"])


def test_to_torch_gradients_of_a_model_with_batchnorm_skip_the_statistics():
    t = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3)).double().eval()
    _perturb_running_stats(t[1])
    m = nnx.Sequential(
        _abstract(nnx.Conv, 2, 3, (3, 3), padding="VALID"),
        _abstract(nnx.BatchNorm, 3, use_running_average=True),
    )
    mapping = load_torch_weights(m, t)
    x = _rng().normal(size=(2, 2, 5, 5))
    t(_t(x)).sum().backward()
    grads = nnx.grad(lambda m: m(_cl(x)).sum())(m)  # nnx.Param only
    got = mapping.to_torch(grads, gradients=True)
    assert set(got) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    for n, p in t.named_parameters():
        np.testing.assert_allclose(got[n], p.grad.numpy(), rtol=0, atol=TOL, err_msg=n)
