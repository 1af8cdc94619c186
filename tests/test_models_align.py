"""Alignment of torch and JAX trees in load_torch_weights: names, rules, order, errors."""

from __future__ import annotations

import functools
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
    _perturb_running_stats,
    _rng,
    _t,
    _x64_and_seed,  # noqa: F401  (the autouse fixture)
)

from funcdiff.parity import (  # noqa: E402
    WeightRow,
    export_torch_weights,
    load_torch_weights,
)
from funcdiff.parity.models._frameworks import (  # noqa: E402
    framework_of,
    jax_leaves,
)


class _TorchMLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 8)
        self.norm = torch.nn.LayerNorm(8)
        self.fc2 = torch.nn.Linear(8, 8)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.head(torch.relu(self.fc2(self.norm(self.fc1(x)))))


class _NnxMLP(nnx.Module):
    def __init__(self, rngs: Any, *, swap: bool = False) -> None:
        # definition order differs from torch's when swap: `second` is defined first
        if swap:
            self.second = nnx.Linear(8, 8, rngs=rngs)
            self.first = nnx.Linear(4, 8, rngs=rngs)
        else:
            self.first = nnx.Linear(4, 8, rngs=rngs)
            self.second = nnx.Linear(8, 8, rngs=rngs)
        self.ln = nnx.LayerNorm(8, epsilon=1e-5, rngs=rngs)
        self.out = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.second(self.ln(self.first(x)))))


def test_order_alignment_pairs_same_kind_layers_in_definition_order():
    t = _TorchMLP().double()
    m = nnx.eval_shape(lambda: _NnxMLP(nnx.Rngs(0)))
    res = load_torch_weights(m, t)
    assert res.layers == (
        ("fc1", "first", "Linear"),
        ("norm", "ln", "LayerNorm"),
        ("fc2", "second", "Linear"),
        ("head", "out", "Linear"),
    )
    x = _rng().normal(size=(3, 4))
    np.testing.assert_allclose(
        np.asarray(m(jnp.asarray(x))), t(_t(x)).detach().numpy(), rtol=0, atol=TOL
    )
    row = next(r for r in res.rows if r.jax_path == "second.kernel")
    assert row == WeightRow(
        "fc2.weight", "second.kernel", "weight.T", (8, 8), (8, 8), "fc2", "second", "Linear"
    )


def test_shapes_steer_order_alignment_and_rules_rename():
    t = _TorchMLP().double()
    x = _rng().normal(size=(3, 4))
    # `second` (8->8) defined before `first` (4->8): shapes still pair them right
    m = nnx.eval_shape(lambda: _NnxMLP(nnx.Rngs(0), swap=True))
    assert load_torch_weights(m, t).ok
    np.testing.assert_allclose(
        np.asarray(m(jnp.asarray(x))), t(_t(x)).detach().numpy(), rtol=0, atol=TOL
    )
    # rules name the pairs; backrefs expand
    rules = [(r"fc(\d)", r"layer\1"), (r"norm\.(weight|bias)", "ln")]

    class Renamed(nnx.Module):
        def __init__(self, rngs: Any) -> None:
            self.out = nnx.Linear(8, 2, rngs=rngs)
            self.layer2 = nnx.Linear(8, 8, rngs=rngs)
            self.ln = nnx.LayerNorm(8, epsilon=1e-5, rngs=rngs)
            self.layer1 = nnx.Linear(4, 8, rngs=rngs)

    r = nnx.eval_shape(lambda: Renamed(nnx.Rngs(1)))
    res = load_torch_weights(r, t, rules=rules)
    assert res.layers == (
        ("fc1", "layer1", "Linear"),
        ("norm", "ln", "LayerNorm"),
        ("fc2", "layer2", "Linear"),
        ("head", "out", "Linear"),
    )
    np.testing.assert_array_equal(np.asarray(r.layer2.kernel[...]), t.fc2.weight.detach().numpy().T)


def test_same_shape_layers_out_of_order_are_misaligned_without_rules_and_fixed_by_them():
    """A planted wrong layer order: two 8->8 Linears defined in the other order."""
    t = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8))
    t = t.double()

    class Swapped(nnx.Module):
        def __init__(self, rngs: Any) -> None:
            self.b = nnx.Linear(8, 8, rngs=rngs)  # torch's `2`
            self.a = nnx.Linear(8, 8, rngs=rngs)  # torch's `0`

        def __call__(self, x):
            return self.b(jnp.tanh(self.a(x)))

    x = _rng().normal(size=(2, 8))
    m = Swapped(nnx.Rngs(0))  # concrete: nnx.eval_shape would list `a` before `b`
    res = load_torch_weights(m, t)
    assert res.layers == (("0", "b", "Linear"), ("2", "a", "Linear"))  # the record shows it
    assert any("paired by definition order among several" in n for n in res.notes)
    assert np.abs(np.asarray(m(jnp.asarray(x))) - t(_t(x)).detach().numpy()).max() > 1e-2
    res = load_torch_weights(m, t, rules=[("0", "a"), ("2", "b")])
    assert res.layers == (("0", "a", "Linear"), ("2", "b", "Linear"))
    np.testing.assert_allclose(
        np.asarray(m(jnp.asarray(x))), t(_t(x)).detach().numpy(), rtol=0, atol=TOL
    )


def test_strict_error_lists_every_problem_with_the_closest_name_and_loads_nothing():
    class Port(nnx.Module):  # misses `head`, has an extra `proj`, and fc2 has the wrong size
        def __init__(self, rngs: Any) -> None:
            self.fc1 = nnx.Linear(4, 8, rngs=rngs)
            self.norm = nnx.LayerNorm(8, rngs=rngs)
            self.fc2 = nnx.Linear(8, 7, rngs=rngs)
            self.proj = nnx.Embed(3, 3, rngs=rngs)

    t = _TorchMLP()
    m = nnx.eval_shape(lambda: Port(nnx.Rngs(0)))
    with pytest.raises(ValueError) as info:
        load_torch_weights(m, t)
    msg = str(info.value)
    assert "`Port` (nnx)" in msg and "nothing was loaded" in msg
    assert "shape mismatch" in msg and "fc2.weight" in msg and "(8, 7)" in msg
    assert "torch `head.weight` has no JAX leaf (closest: `proj.embedding`)" in msg
    assert "JAX `proj.embedding` has no torch tensor (closest: `head.weight`)" in msg
    assert isinstance(m.fc1.kernel.get_value(), jax.ShapeDtypeStruct)  # still not loaded

    res = load_torch_weights(m, t, strict=False)
    assert not res.ok
    assert res.unmatched_torch == ("head.weight", "head.bias")
    assert res.unmatched_jax == ("proj.embedding",)
    assert len(res.mismatches) == 2  # fc2 kernel and bias
    np.testing.assert_array_equal(
        np.asarray(m.fc1.kernel[...]), t.fc1.weight.detach().numpy().T.astype(np.float32)
    )
    with pytest.raises(AssertionError, match=r"head\.weight"):
        res.assert_ok()
    d = res.to_dict()
    assert d["ok"] is False and d["unmatched_jax"] == ["proj.embedding"]
    assert "FAILED" in str(res) and "problem: torch `head.weight`" in str(res)


def test_bias_on_one_side_only_is_unmatched():
    t = torch.nn.RMSNorm(4)
    with pytest.raises(ValueError, match=r"JAX `bias` has no torch tensor"):
        load_torch_weights(eqx.nn.RMSNorm(4), t)  # eqx's RMSNorm has a bias by default
    res = load_torch_weights(eqx.nn.RMSNorm(4), t, strict=False)
    assert res.unmatched_jax == ("bias",) and "bias=False?" in res.hints["bias"]
    t = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"torch `bias` has no JAX leaf.*use_bias=False\?"):
        load_torch_weights(_abstract(nnx.Linear, 3, 2, use_bias=False), t)


def test_pytree_template_by_leaf_names_and_linen_collections():
    t = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4, 4)
    ).double()
    _perturb_running_stats(t[1])
    sds = jax.ShapeDtypeStruct
    template = {
        "params": {
            "Conv_0": {"kernel": sds((3, 3, 3, 4), jnp.float32), "bias": np.zeros(4, np.float32)},
            "BatchNorm_0": {"scale": np.zeros(4, np.float32), "bias": np.zeros(4, np.float32)},
            "Dense_0": {"kernel": np.zeros((4, 4), np.float32), "bias": np.zeros(4, np.float32)},
        },
        "batch_stats": {
            "BatchNorm_0": {"mean": np.zeros(4, np.float32), "var": np.zeros(4, np.float32)}
        },
    }
    assert framework_of(template) == "pytree"
    res = load_torch_weights(template, t)
    assert res.ok, str(res)
    assert res.layers == (
        ("0", "Conv_0", "Conv2d"),
        ("1", "BatchNorm_0", "BatchNorm2d"),
        ("3", "Dense_0", "Linear"),
    )
    out = res.model
    assert isinstance(out, dict) and out is not template
    sd = t.state_dict()
    np.testing.assert_array_equal(
        out["params"]["Conv_0"]["kernel"], sd["0.weight"].permute(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(out["params"]["Dense_0"]["kernel"], sd["3.weight"].T)
    np.testing.assert_array_equal(out["batch_stats"]["BatchNorm_0"]["var"], sd["1.running_var"])
    assert out["params"]["Dense_0"]["kernel"].dtype == jnp.float64  # float64 torch under x64
    # round trip through export
    back = export_torch_weights(out, t)
    for n, v in sd.items():
        assert torch.equal(back[n], v), n


def test_none_rule_leaves_tensors_out_on_purpose():
    class WithExtra(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(2, 2)
            self.register_buffer("step", torch.zeros((), dtype=torch.long))

    res = load_torch_weights(_abstract(nnx.Linear, 2, 2), WithExtra(), rules=[("step", None)])
    assert res.ok and ("step", "left out by rules[0]") in res.dropped
    with pytest.raises(ValueError, match=r"(?s)1 problem .*`step`.*rules=\[\(r'step', None\)\]"):
        load_torch_weights(_abstract(nnx.Linear, 2, 2), WithExtra())
    res = load_torch_weights(
        _abstract(nnx.Linear, 2, 2),
        WithExtra(),
        rules=[("step", None), ("nothing", "fc")],
        strict=False,
    )
    assert any("rules[1]" in n and "matched no torch" in n for n in res.notes)
    with pytest.raises(ValueError, match=r"(?s)1 problem .*rules\[0\] maps `0` to `fcc`, which"):
        load_torch_weights(
            _abstract(nnx.Linear, 2, 2), torch.nn.Sequential(WithExtra().fc), rules=[("0", "fcc")]
        )


def test_bad_inputs_give_clear_errors():
    lin = _abstract(nnx.Linear, 2, 2)
    with pytest.raises(ValueError, match=r"torch model `ReLU` has no parameters"):
        load_torch_weights(lin, torch.nn.ReLU())

    class Empty(nnx.Module):
        pass

    with pytest.raises(ValueError, match=r"`Empty` \(nnx\) has no parameters"):
        load_torch_weights(Empty(), torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"`jax_model`.*torch module Linear"):
        load_torch_weights(torch.nn.Linear(2, 2), lin)
    import flax.linen

    with pytest.raises(TypeError, match=r"Flax Linen module Dense.*model.init"):
        load_torch_weights(flax.linen.Dense(2), torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"no values \(an abstract model"):
        export_torch_weights(lin, torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"function has no weights"):
        load_torch_weights(jnp.tanh, torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"`torch_source`"):
        load_torch_weights(lin, np.zeros(3))
    with pytest.raises(TypeError, match=r"`rules`"):
        load_torch_weights(lin, torch.nn.Linear(2, 2), rules="fc")
    with pytest.raises(ValueError, match=r"`rules\[0\]`.*not a valid regex"):
        load_torch_weights(lin, torch.nn.Linear(2, 2), rules=[("(", "x")])
    with pytest.raises(TypeError, match=r"`strict`"):
        load_torch_weights(lin, torch.nn.Linear(2, 2), strict="yes")
    with pytest.raises(ValueError, match=r"Cannot export"):
        export_torch_weights(lin, torch.nn.Linear(3, 2))
    with pytest.raises(TypeError, match=r"leaf of type str at `a`"):
        load_torch_weights({"a": "x"}, torch.nn.Linear(2, 2))


def test_same_names_win_over_order_even_when_nnx_lists_attributes_alphabetically():
    """nnx.eval_shape rebuilds modules with sorted attributes: names still pair them."""

    class TBlock(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv_b = torch.nn.Conv2d(4, 4, 3, padding=1, bias=False)
            self.conv_a = torch.nn.Conv2d(4, 4, 3, padding=1, bias=False)
            self.down = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 1), torch.nn.BatchNorm2d(4))

    class JBlock(nnx.Module):
        def __init__(self, rngs: Any) -> None:
            pad = ((1, 1), (1, 1))
            self.conv_b = nnx.Conv(4, 4, (3, 3), padding=pad, use_bias=False, rngs=rngs)
            self.conv_a = nnx.Conv(4, 4, (3, 3), padding=pad, use_bias=False, rngs=rngs)
            self.down = nnx.Sequential(
                nnx.Conv(4, 4, (1, 1), rngs=rngs), nnx.BatchNorm(4, rngs=rngs)
            )

    t = TBlock()
    m = nnx.eval_shape(lambda: JBlock(nnx.Rngs(0)))
    assert next(iter(jax_leaves(m))).startswith("conv_a")  # alphabetical after eval_shape
    res = load_torch_weights(m, t)
    assert res.layers == (
        ("conv_b", "conv_b", "Conv2d"),
        ("conv_a", "conv_a", "Conv2d"),
        ("down.0", "down.layers.0", "Conv2d"),
        ("down.1", "down.layers.1", "BatchNorm2d"),
    )
    assert res.aligned_by == ("name",) * 4
    assert "aligned: 4 by name" in str(res)
    np.testing.assert_array_equal(
        np.asarray(m.conv_b.kernel[...]), t.conv_b.weight.detach().permute(2, 3, 1, 0).numpy()
    )


def test_bidirectional_two_layer_lstm_splits_per_layer_and_direction():
    t = torch.nn.LSTM(4, 3, num_layers=2, bidirectional=True, batch_first=True).double()

    def bi(n_in: int) -> Any:
        cell = functools.partial(_abstract, nnx.LSTMCell, n_in, 3, param_dtype=jnp.float64)
        return nnx.Bidirectional(nnx.RNN(cell()), nnx.RNN(cell()))

    class Port(nnx.Module):
        def __init__(self) -> None:
            self.layers = nnx.List([bi(4), bi(6)])

        def __call__(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    m = Port()
    res = load_torch_weights(m, t)
    assert [(a, b) for a, b, _ in res.layers] == [
        ("l0", "layers.0.forward_rnn.cell"),
        ("l0_reverse", "layers.0.backward_rnn.cell"),
        ("l1", "layers.1.forward_rnn.cell"),
        ("l1_reverse", "layers.1.backward_rnn.cell"),
    ]
    x = _rng().normal(size=(2, 5, 4))
    np.testing.assert_allclose(
        np.asarray(m(jnp.asarray(x))), t(_t(x))[0].detach().numpy(), rtol=0, atol=TOL
    )


def test_custom_modules_load_by_leaf_name_and_tensor_level_rules():
    class TViT(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cls_token = torch.nn.Parameter(torch.randn(1, 1, 4))
            self.proj = torch.nn.Linear(4, 4)
            self.gamma = torch.nn.Parameter(torch.randn(4))

    class Affine(nnx.Module):  # a custom layer with its own parameter names
        def __init__(self) -> None:
            self.w = nnx.Param(jnp.zeros((4, 4)))
            self.b = nnx.Param(jnp.zeros(4))

    class JViT(nnx.Module):
        def __init__(self) -> None:
            self.cls_token = nnx.Param(jnp.zeros((1, 1, 4)))
            self.gamma = nnx.Param(jnp.zeros(4))
            self.head = Affine()

    t = TViT().double()
    with pytest.raises(ValueError, match=r"torch `proj.weight` has no JAX leaf"):
        load_torch_weights(JViT(), t)
    m = JViT()
    rules = [(r"proj\.weight", "head.w"), (r"proj\.bias", "head.b")]
    res = load_torch_weights(m, t, rules=rules)
    assert res.ok, str(res)
    sd = export_torch_weights(m, t, rules=rules)
    assert all(torch.equal(sd[n], v) for n, v in t.state_dict().items())
    np.testing.assert_array_equal(np.asarray(m.head.w[...]), t.proj.weight.detach().numpy())
    np.testing.assert_array_equal(np.asarray(m.cls_token[...]), t.cls_token.detach().numpy())
    assert {(r.torch_name, r.jax_path, r.rule) for r in res.rows} >= {
        ("proj.weight", "head.w", "as is"),
        ("cls_token", "cls_token", "as is"),
    }


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_module_kinds_come_from_the_original_class():
    t = torch.jit.script(
        torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.LayerNorm(4))
    )
    m = nnx.Sequential(_abstract(nnx.Linear, 3, 4), nnx.relu, _abstract(nnx.LayerNorm, 4))
    res = load_torch_weights(m, t)
    assert res.layers == (("0", "layers.0", "Linear"), ("2", "layers.2", "LayerNorm"))
    assert res.aligned_by == ("name", "name")


def test_torch_subclasses_of_standard_layers_take_their_rule():
    class MyLinear(torch.nn.Linear):
        pass

    t = torch.nn.Sequential(MyLinear(3, 4))
    res = load_torch_weights(_abstract(nnx.Linear, 3, 4), t)
    assert res.layers == (("0", "", "Linear"),)
    assert res.rows[0].rule == "weight.T"
