"""compare_model: right ports agree (NNX, Equinox, a pure function with taps; float32 and
float64), and each planted porting bug fails with the right first divergence and rule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nnx = pytest.importorskip("flax.nnx")
eqx = pytest.importorskip("equinox")

from funcdiff.parity import (  # noqa: E402
    ModelParityResult,
    compare_model,
    get_divergence,
    load_torch_weights,
    tap,
)

RNG = np.random.default_rng(0)


def _np(t):
    return t.detach().numpy()


def _x(*shape, dtype=np.float32, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype(dtype)


# ---- a small MLP: Linear, LayerNorm, Linear ---------------------------------------------------


class TorchMLP(torch.nn.Module):
    def __init__(self, bias=True):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = torch.nn.Linear(4, 4, bias=bias)
        self.ln = torch.nn.LayerNorm(4)
        self.fc2 = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.ln(self.fc1(x))))


class NnxMLP(nnx.Module):
    def __init__(self, eps=1e-5, swap=False, use_bias=True):
        r = nnx.Rngs(0)
        self.fc1 = nnx.Linear(4, 4, use_bias=use_bias, rngs=r)
        self.ln = nnx.LayerNorm(4, epsilon=eps, rngs=r)
        self.fc2 = nnx.Linear(4, 3, rngs=r)
        self.swap = swap

    def __call__(self, x):
        return self.fc2(jnp.tanh(self.ln(self.fc1(x))))


def load_mlp(j, t, *, transpose=True):
    j.fc1.kernel[...] = _np(t.fc1.weight).T if transpose else _np(t.fc1.weight)
    if t.fc1.bias is not None:
        j.fc1.bias[...] = _np(t.fc1.bias)
    j.fc2.kernel[...] = _np(t.fc2.weight).T
    j.fc2.bias[...] = _np(t.fc2.bias)
    j.ln.scale[...] = _np(t.ln.weight) + 0.1
    j.ln.bias[...] = _np(t.ln.bias)
    with torch.no_grad():
        t.ln.weight += 0.1
    return j


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_right_nnx_port_agrees(dtype):
    t = TorchMLP()
    j = load_mlp(NnxMLP(), t)
    before = _np(t.fc1.weight).copy(), np.asarray(j.fc1.kernel[...]).copy()
    r = compare_model(j, t, _x(6, 4, dtype=dtype), isolate=True)
    assert isinstance(r, ModelParityResult)
    assert r.ok, str(r)
    assert r.first_divergence is None and r.dtype == np.dtype(dtype).name
    names = [x.torch_name for x in r.layers]
    assert names == ["input[0]", "fc1", "ln", "fc2", "output"]
    assert {p.torch_name for p in r.params} == {
        "fc1.weight",
        "fc1.bias",
        "ln.weight",
        "ln.bias",
        "fc2.weight",
        "fc2.bias",
    }
    fc1 = r.layers[1]
    assert fc1.jax_path == "fc1" and fc1.kind == "Linear" and fc1.isolated_error is not None
    assert fc1.forward_error < (1e-12 if dtype == np.float64 else 1e-5)
    r.assert_ok()
    d = r.to_dict()
    assert d["ok"] and d["layers"][1]["torch_name"] == "fc1"
    assert "fc1 (Linear) <-> fc1" in str(r)
    # nothing of the user's models changed
    np.testing.assert_array_equal(_np(t.fc1.weight), before[0])
    np.testing.assert_array_equal(np.asarray(j.fc1.kernel[...]), before[1])
    assert t.fc1.weight.dtype == torch.float32


def test_loss_pair_and_shared_loss():
    t = TorchMLP()
    j = load_mlp(NnxMLP(), t)
    x = _x(5, 4)
    assert compare_model(j, t, x, loss=lambda y: (y**2).sum()).ok
    r = compare_model(j, t, x, loss=(lambda y: jnp.sum(y**2), lambda y: (y**2).sum()))
    assert r.ok
    bad = compare_model(j, t, x, loss=(lambda y: jnp.sum(y**2), lambda y: (y**3).sum()))
    assert not bad.ok and bad.first_divergence == "output"


# ---- planted bugs ------------------------------------------------------------------------------


def test_transposed_square_linear():
    t = TorchMLP()
    r = compare_model(load_mlp(NnxMLP(), t, transpose=False), t, _x(6, 4))
    assert not r.ok and r.first_divergence == "fc1"
    assert "transposed-weight" in {f.rule for f in r.diagnosis}
    assert "first divergence: fc1" in str(r) and ">> fc1" in str(r)
    with pytest.raises(AssertionError, match="fc1"):
        r.assert_ok()


def test_wrong_layer_order():
    class T(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(1)
            self.a = torch.nn.Linear(4, 4)
            self.b = torch.nn.Linear(4, 4)

        def forward(self, x):
            return self.b(torch.tanh(self.a(x)))

    class J(nnx.Module):
        def __init__(self):
            self.a = nnx.Linear(4, 4, rngs=nnx.Rngs(0))
            self.b = nnx.Linear(4, 4, rngs=nnx.Rngs(0))

        def __call__(self, x):
            return self.a(jnp.tanh(self.b(x)))  # planted: b before a

    t, j = T(), J()
    for n in "ab":
        getattr(j, n).kernel[...] = _np(getattr(t, n).weight).T
        getattr(j, n).bias[...] = _np(getattr(t, n).bias)
    r = compare_model(j, t, _x(3, 4))
    assert not r.ok and r.first_divergence == "a"
    assert "layer-order" in {f.rule for f in r.diagnosis}


def test_norm_epsilon():
    t = TorchMLP()
    r = compare_model(load_mlp(NnxMLP(eps=1e-6), t), t, _x(6, 4, scale=1e-2))
    assert not r.ok and r.first_divergence == "ln"
    f = next(f for f in r.diagnosis if f.rule == "norm-epsilon")
    assert f.layer == "ln" and f.entry == "flax-norm-epsilon" and "1e-05" in f.torch_setting
    get_divergence(f.entry)


def test_bias_on_one_side():
    t = TorchMLP(bias=False)
    j = load_mlp(NnxMLP(use_bias=True), t)
    j.fc1.bias[...] = 0.5
    r = compare_model(j, t, _x(6, 4))
    assert not r.ok and r.first_divergence == "fc1"
    assert "bias-one-side" in {f.rule for f in r.diagnosis}


# ---- convolutions --------------------------------------------------------------------------


class TorchConv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv = torch.nn.Conv2d(2, 3, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x).sum(dim=(2, 3))


class NnxConv(nnx.Module):
    def __init__(self, padding):
        self.conv = nnx.Conv(2, 3, (3, 3), strides=(2, 2), padding=padding, rngs=nnx.Rngs(0))

    def __call__(self, x):  # torch's NCHW in, channels-last inside
        return self.conv(jnp.moveaxis(x, 1, -1)).sum(axis=(1, 2))


def _conv_port(padding):
    t = TorchConv()
    j = NnxConv(padding)
    j.conv.kernel[...] = np.transpose(_np(t.conv.weight), (2, 3, 1, 0))
    j.conv.bias[...] = _np(t.conv.bias)
    return t, j


def test_strided_same_padding():
    x = _x(2, 2, 6, 6)
    t, j = _conv_port(((1, 1), (1, 1)))
    good = compare_model(j, t, x, isolate=True)
    assert good.ok, str(good)
    t, j = _conv_port("SAME")
    r = compare_model(j, t, x, isolate=True)
    assert not r.ok and r.first_divergence == "conv"
    f = next(f for f in r.diagnosis if f.rule == "strided-same-padding")
    assert f.entry == "strided-same-padding" and r.layers[1].isolated is not None
    assert not r.layers[1].isolated.passed  # the layer itself is wrong, not its input


# ---- BatchNorm in training mode -------------------------------------------------------------


class TorchBN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.fc = torch.nn.Linear(3, 4)
        self.bn = torch.nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(self.fc(x))


class TorchLikeBN(nnx.Module):
    """A BatchNorm with torch's update (unbiased running variance), stats in the input dtype."""

    def __init__(self, n, momentum=0.1, eps=1e-5, dtype=np.float32):
        self.scale = nnx.Param(np.ones(n, dtype))
        self.bias = nnx.Param(np.zeros(n, dtype))
        self.mean = nnx.BatchStat(np.zeros(n, dtype))
        self.var = nnx.BatchStat(np.ones(n, dtype))
        self.momentum, self.epsilon, self.training = momentum, eps, True

    def __call__(self, x):
        if self.training:
            m, v = x.mean(0), x.var(0)
            n = x.shape[0]
            self.mean[...] = (1 - self.momentum) * self.mean[...] + self.momentum * m
            self.var[...] = (1 - self.momentum) * self.var[...] + self.momentum * v * n / (n - 1)
        else:
            m, v = self.mean[...], self.var[...]
        return (x - m) / jnp.sqrt(v + self.epsilon) * self.scale[...] + self.bias[...]


class NnxBN(nnx.Module):
    def __init__(self, bn):
        self.fc = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
        self.bn = bn

    def __call__(self, x):
        return self.bn(self.fc(x))


def _bn_port(bn):
    t = TorchBN()
    j = NnxBN(bn)
    j.fc.kernel[...] = _np(t.fc.weight).T
    j.fc.bias[...] = _np(t.fc.bias)
    return t, j


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_like_batchnorm_agrees_in_train_mode(dtype):
    t, j = _bn_port(TorchLikeBN(4, dtype=dtype))
    r = compare_model(j, t, _x(8, 3, dtype=dtype), train=True)
    assert r.ok, str(r)
    assert {p.torch_name for p in r.params if p.quantity == "state"} == {
        "bn.running_mean",
        "bn.running_var",
    }


def test_batchnorm_momentum():
    t, j = _bn_port(nnx.BatchNorm(4, momentum=0.1, rngs=nnx.Rngs(0)))  # planted: torch's m
    r = compare_model(j, t, _x(8, 3), train=True)
    assert not r.ok and r.first_divergence == "bn"
    assert "batchnorm-momentum" in {f.rule for f in r.diagnosis}
    assert any(p.torch_name == "bn.running_mean" and not p.passed for p in r.params)


def test_batchnorm_unbiased_running_var():
    t, j = _bn_port(nnx.BatchNorm(4, momentum=0.9, rngs=nnx.Rngs(0)))
    r = compare_model(j, t, _x(8, 3), train=True)
    assert not r.ok and r.first_divergence == "bn"
    bad = {p.torch_name for p in r.params if not p.passed}
    assert bad == {"bn.running_var"}
    assert "batchnorm-running-var" in {f.rule for f in r.diagnosis}


def test_float32_statistics_in_a_float64_run():
    t, j = _bn_port(nnx.BatchNorm(4, momentum=0.9, rngs=nnx.Rngs(0)))
    with torch.no_grad():
        t.bn.running_mean.uniform_(-1, 1)
        t.bn.running_var.uniform_(0.5, 2)
    j.bn.mean[...] = _np(t.bn.running_mean)
    j.bn.var[...] = _np(t.bn.running_var)
    r = compare_model(j, t, _x(8, 3, dtype=np.float64))
    assert r.ok, str(r)  # the compared copy is cast to float64, like torch's
    f = next(f for f in r.diagnosis if f.rule == "lower-precision")
    assert f.entry == "flax-batchnorm-float32-stats" and "mean" in f.jax_setting


def test_dropout_refused_in_train_mode():
    t = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.5))
    with pytest.raises(ValueError, match="dropout"):
        compare_model(lambda x: x, t, _x(2, 3), train=True)


# ---- GELU inside a block (jaxpr) -----------------------------------------------------------


class TorchBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.fc1 = torch.nn.Linear(3, 5)
        self.act = torch.nn.GELU()
        self.fc2 = torch.nn.Linear(5, 2)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TorchGeluNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = TorchBlock()

    def forward(self, x):
        return self.mlp(x)


class NnxBlock(nnx.Module):
    def __init__(self, exact):
        self.fc1 = nnx.Linear(3, 5, rngs=nnx.Rngs(0))
        self.fc2 = nnx.Linear(5, 2, rngs=nnx.Rngs(0))
        self.exact = exact

    def __call__(self, x):
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=not self.exact))


class NnxGeluNet(nnx.Module):
    def __init__(self, exact):
        self.mlp = NnxBlock(exact)

    def __call__(self, x):
        return self.mlp(x)


@pytest.mark.parametrize("exact", [True, False])
def test_gelu_exact_vs_tanh(exact):
    t, j = TorchGeluNet(), NnxGeluNet(exact)
    for n in ("fc1", "fc2"):
        getattr(j.mlp, n).kernel[...] = _np(getattr(t.mlp, n).weight).T
        getattr(j.mlp, n).bias[...] = _np(getattr(t.mlp, n).bias)
    r = compare_model(j, t, _x(4, 3, scale=3.0))
    if exact:
        assert r.ok, str(r)
        return
    assert not r.ok and r.first_divergence == "mlp"  # fc2's input fails, the block's does not
    f = next(f for f in r.diagnosis if f.rule == "gelu-approximation")
    assert f.layer == "mlp" and f.entry == "gelu-default"


# ---- LSTM ----------------------------------------------------------------------------------


class TorchLSTM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.lstm = torch.nn.LSTM(3, 4, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0]


class NnxLSTM(nnx.Module):
    def __init__(self):
        self.lstm = nnx.RNN(nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0)))

    def __call__(self, x):
        return self.lstm(x)


def _lstm_port(*, fold_bias=True, order=(0, 1, 2, 3)):
    t, j = TorchLSTM(), NnxLSTM()
    w_ih, w_hh = _np(t.lstm.weight_ih_l0), _np(t.lstm.weight_hh_l0)
    b = _np(t.lstm.bias_hh_l0) + (_np(t.lstm.bias_ih_l0) if fold_bias else 0)
    cell = j.lstm.cell
    for g, (i_name, h_name) in enumerate((("ii", "hi"), ("if_", "hf"), ("ig", "hg"), ("io", "ho"))):
        c = slice(4 * order[g], 4 * order[g] + 4)
        getattr(cell, i_name).kernel[...] = w_ih[c].T
        getattr(cell, h_name).kernel[...] = w_hh[c].T
        getattr(cell, h_name).bias[...] = b[c]
    return t, j


def test_lstm_right_port_and_missing_input_bias():
    x = _x(2, 5, 3)
    t, j = _lstm_port()
    good = compare_model(j, t, x.astype(np.float64))
    assert good.ok, str(good)
    # fused gates and summed biases paired through export_torch_weights, in float64
    assert {p.torch_name for p in good.params} == {
        "lstm.weight_ih_l0",
        "lstm.weight_hh_l0",
        "lstm.bias_ih_l0",
        "lstm.bias_hh_l0",
    }
    assert max(p.grad_error for p in good.params) < 1e-12
    t, j = _lstm_port(fold_bias=False)
    r = compare_model(j, t, x)
    assert not r.ok and r.first_divergence == "lstm"
    assert "rnn-input-bias" in {f.rule for f in r.diagnosis}


def test_lstm_gate_order():
    t, j = _lstm_port(order=(0, 2, 1, 3))
    r = compare_model(j, t, _x(2, 5, 3))
    assert not r.ok and r.first_divergence == "lstm"
    assert "rnn-gate-order" in {f.rule for f in r.diagnosis}


# ---- pure functions with taps ---------------------------------------------------------------


class TorchAttn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(6)
        self.attn = torch.nn.MultiheadAttention(4, 1, batch_first=True)
        self.out = torch.nn.Linear(4, 2)

    def forward(self, x, pad):
        return self.out(self.attn(x, x, x, key_padding_mask=pad > 0, need_weights=False)[0])


def _attn_fn(t, *, invert):
    w, b = _np(t.attn.in_proj_weight), _np(t.attn.in_proj_bias)
    wo, bo = _np(t.attn.out_proj.weight), _np(t.attn.out_proj.bias)
    w2, b2 = _np(t.out.weight), _np(t.out.bias)

    def f(x, pad):
        c = lambda a: jnp.asarray(a, x.dtype)
        q, k, v = (x @ c(w[i * 4 : i * 4 + 4]).T + c(b[i * 4 : i * 4 + 4]) for i in range(3))
        keep = pad <= 0 if invert else pad > 0  # planted when not inverted: torch's True = masked
        s = jnp.where(keep[:, None, :], q @ jnp.swapaxes(k, 1, 2) / 2.0, -jnp.inf)
        a = tap("attn", jax.nn.softmax(s, axis=-1) @ v @ c(wo).T + c(bo))
        return tap("out", a @ c(w2).T + c(b2))

    return f


def test_attention_mask_polarity():
    t = TorchAttn()
    x = _x(2, 3, 4)
    pad = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0]], np.float32)
    assert compare_model(_attn_fn(t, invert=True), t, x, pad).ok
    r = compare_model(_attn_fn(t, invert=False), t, x, pad)
    assert not r.ok and r.first_divergence == "attn"
    assert "attention-mask-polarity" in {f.rule for f in r.diagnosis}


class TorchPool(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = torch.nn.AvgPool1d(3, 1, 1, count_include_pad=False)

    def forward(self, x):
        return self.pool(x) * 2.0


def test_count_include_pad_in_a_tapped_function():
    def f(x):
        s = jax.lax.reduce_window(
            x, 0.0, jax.lax.add, (1, 1, 3), (1, 1, 1), ((0, 0), (0, 0), (1, 1))
        )
        return tap("pool", s / 3.0) * 2.0  # planted: divides by the full window

    r = compare_model(f, TorchPool(), _x(2, 2, 5, dtype=np.float64))
    assert not r.ok and r.first_divergence == "pool" and r.dtype == "float64"
    f0 = r.diagnosis[0]
    assert f0.rule == "avg-pool-count-include-pad" and f0.entry == "avg-pool-count-include-pad"


class TorchTanhNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.fc1 = torch.nn.Linear(3, 4)
        self.act = torch.nn.Tanh()
        self.fc2 = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


@jax.custom_vjp
def bad_tanh(x):
    return jnp.tanh(x)


bad_tanh.defvjp(lambda x: (jnp.tanh(x), x), lambda x, g: (g * (1 - jnp.tanh(x)),))  # planted


def _tanh_fn(t, act):
    w1, b1, w2, b2 = (_np(p) for p in (t.fc1.weight, t.fc1.bias, t.fc2.weight, t.fc2.bias))

    def f(x):
        c = lambda a: jnp.asarray(a, x.dtype)
        h = tap("fc1", x @ c(w1).T + c(b1))
        return tap("fc2", tap("act", act(h)) @ c(w2).T + c(b2))

    return f


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tapped_function_agrees(dtype):
    t = TorchTanhNet()
    r = compare_model(_tanh_fn(t, jnp.tanh), t, _x(4, 3, dtype=dtype))
    assert r.ok, str(r)
    assert [x.torch_name for x in r.layers] == ["input[0]", "fc1", "act", "fc2", "output"]
    assert all(x.grad is not None for x in r.layers[1:4])


def test_function_without_taps_compares_outputs_and_says_so():
    t = TorchTanhNet()
    w1, b1, w2, b2 = (_np(p) for p in (t.fc1.weight, t.fc1.bias, t.fc2.weight, t.fc2.bias))
    r = compare_model(lambda x: jnp.tanh(x @ w1.T + b1) @ w2.T + b2, t, _x(4, 3))
    assert r.ok and [x.torch_name for x in r.layers] == ["input[0]", "output"]
    assert any("no taps" in n for n in r.notes)


def test_backward_only_bug_localised_by_activation_gradients():
    t = TorchTanhNet()
    r = compare_model(jax.jit(_tanh_fn(t, bad_tanh)), t, _x(4, 3, dtype=np.float64))
    assert not r.ok and r.first_divergence == "act"
    by = {x.torch_name: x for x in r.layers}
    assert by["act"].forward.passed and by["act"].grad.passed
    assert not by["fc1"].grad.passed and not by["input[0]"].grad.passed


# ---- Equinox ---------------------------------------------------------------------------------


class EqxMLP(eqx.Module):
    fc1: eqx.nn.Linear
    fc2: eqx.nn.Linear

    def __init__(self, t, transpose=False):
        k = jax.random.key(0)
        fc1 = eqx.nn.Linear(3, 4, key=k)
        fc2 = eqx.nn.Linear(4, 2, key=k)
        w1 = _np(t.fc1.weight)
        fc1 = eqx.tree_at(
            lambda m: (m.weight, m.bias),
            fc1,
            (jnp.asarray(w1.T if transpose else w1), jnp.asarray(_np(t.fc1.bias))),
        )
        self.fc1 = fc1
        self.fc2 = eqx.tree_at(
            lambda m: (m.weight, m.bias),
            fc2,
            (jnp.asarray(_np(t.fc2.weight)), jnp.asarray(_np(t.fc2.bias))),
        )

    def __call__(self, x):
        return jax.vmap(self.fc2)(jnp.tanh(jax.vmap(self.fc1)(x)))


def test_equinox_port_agrees_and_isolates():
    class T(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(8)
            self.fc1 = torch.nn.Linear(3, 4)
            self.fc2 = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc2(torch.tanh(self.fc1(x)))

    t = T()
    r = compare_model(EqxMLP(t), t, _x(5, 3), isolate=True)
    assert r.ok, str(r)
    assert r.layers[1].isolated is not None and len(r.params) == 4


def test_a_torch_side_without_gradients_is_refused_not_reported_as_agreement():
    t = TorchMLP()
    j = load_mlp(NnxMLP(), t)
    x = _x(6, 4)
    jloss = lambda out: jnp.sum(out**2)
    attached = compare_model(j, t, x, loss=(jloss, lambda out: (out**2).sum()))
    assert attached.ok and attached.params
    with pytest.raises(ValueError, match="torch side computed no gradient"):
        compare_model(j, t, x, loss=(jloss, lambda out: (out**2).sum().detach()))


# ---- bad input -------------------------------------------------------------------------------


def test_bad_input():
    t = TorchTanhNet()
    with pytest.raises(TypeError, match="`torch_module`"):
        compare_model(lambda x: x, object(), _x(2, 3))
    with pytest.raises(TypeError, match="second argument"):
        compare_model(t, t, _x(2, 3))
    with pytest.raises(TypeError, match="at least one input"):
        compare_model(lambda x: x, t)
    with pytest.raises(ValueError, match="torch module TorchTanhNet raised"):
        compare_model(lambda x: x, t, _x(2, 7))
    with pytest.raises(ValueError, match="JAX model"):
        compare_model(lambda x: x @ jnp.ones((9, 9)), t, _x(2, 3))
    with pytest.raises(TypeError, match="`loss`"):
        compare_model(lambda x: x, t, _x(2, 3), loss=3)
    # tolerances by compare's own rule: a bool or an array is refused by name, not read as 0
    with pytest.raises(TypeError, match="`rtol`"):
        compare_model(lambda x: x, t, _x(2, 3), rtol=False)
    with pytest.raises(TypeError, match="`atol`"):
        compare_model(lambda x: x, t, _x(2, 3), atol=np.array([1e-3, 1e-3]))


# ---- nnx.MultiHeadAttention ----------------------------------------------------------------


class TorchMHA(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(9)
        self.attn = torch.nn.MultiheadAttention(4, 2, batch_first=True)

    def forward(self, x, pad):
        return self.attn(x, x, x, key_padding_mask=pad, need_weights=False)[0]


class NnxMHA(nnx.Module):
    def __init__(self, invert):
        self.attn = nnx.MultiHeadAttention(2, 4, qkv_features=4, decode=False, rngs=nnx.Rngs(0))
        self.invert = invert

    def __call__(self, x, pad):
        keep = ~pad if self.invert else pad  # torch: True = masked out; flax: True = attend
        return self.attn(x, x, x, mask=keep[:, None, None, :])


def test_nnx_attention_mask_and_float32_softmax():
    t = TorchMHA()
    x = _x(2, 3, 4, dtype=np.float64)
    pad = np.array([[False, False, True], [False, True, True]])
    right = NnxMHA(invert=True)
    assert load_torch_weights(right, t).ok
    assert compare_model(right, t, x.astype(np.float32), pad).ok
    r64 = compare_model(right, t, x, pad)  # the softmax runs in float32 inside
    assert not r64.ok and r64.first_divergence == "attn"
    f = next(f for f in r64.diagnosis if f.rule == "lower-precision")
    assert f.entry == "dot-product-attention-float32-softmax"
    assert max(r64.layers[1].forward_error, 0) < 1e-6  # float32 round-off, not a bug
    wrong = NnxMHA(invert=False)
    load_torch_weights(wrong, t)
    r = compare_model(wrong, t, x.astype(np.float32), pad)
    assert not r.ok and r.first_divergence == "attn"
    assert "attention-mask-polarity" in {f.rule for f in r.diagnosis}


# ---- Equinox with state: (module, eqx.nn.State) ----------------------------------------------


class EqxBN(eqx.Module):
    fc: eqx.nn.Linear
    bn: eqx.nn.BatchNorm

    def __init__(self, mode):
        self.fc = eqx.nn.Linear(3, 4, key=jax.random.key(0))
        self.bn = eqx.nn.BatchNorm(4, "batch", momentum=0.9, mode=mode)

    def __call__(self, x, state):
        h = jax.vmap(self.fc)(x)
        return jax.vmap(self.bn, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(h, state)


def _eqx_bn_port(mode):
    t = TorchBN()
    module, state = eqx.nn.make_with_state(EqxBN)(mode)
    module = eqx.tree_at(
        lambda m: (m.fc.weight, m.fc.bias),
        module,
        (jnp.asarray(_np(t.fc.weight)), jnp.asarray(_np(t.fc.bias))),
    )
    return t, (module, state)


def test_equinox_batchnorm_with_state():
    x = _x(8, 3)
    t, pair = _eqx_bn_port("batch")
    assert compare_model(pair, t, x).ok  # eval: the running statistics are torch's initial ones
    r = compare_model(pair, t, x, train=True)  # eqx, like flax, keeps the biased variance
    assert not r.ok and r.first_divergence == "bn"
    assert {p.torch_name for p in r.params if not p.passed} == {"bn.running_var"}
    assert "batchnorm-running-var" in {f.rule for f in r.diagnosis}
    t, pair = _eqx_bn_port("ema")
    r = compare_model(pair, t, x)
    assert not r.ok and r.first_divergence == "bn"
    f = next(f for f in r.diagnosis if f.rule == "equinox-batchnorm-ema")
    assert f.entry == "equinox-batchnorm-ema"


# ---- pooling modules (the JAX layer's jaxpr) ------------------------------------------------


class TorchPools(torch.nn.Module):
    def __init__(self, avg):
        super().__init__()
        self.pool = (
            torch.nn.AvgPool1d(3, 1, 1, count_include_pad=False)
            if avg
            else torch.nn.MaxPool1d(2, 2, ceil_mode=True)
        )

    def forward(self, x):
        return self.pool(x)


class NnxPool(nnx.Module):
    def __init__(self, avg, right):
        self.avg, self.right = avg, right

    def __call__(self, x):  # (N, C, L) in and out; flax pools channels-last
        h = jnp.swapaxes(x, 1, 2)
        if self.avg:
            h = nnx.avg_pool(h, (3,), (1,), ((1, 1),), count_include_pad=not self.right)
        else:
            pad = ((0, 1),) if self.right else ((0, 0),)
            h = nnx.max_pool(
                jnp.pad(h, ((0, 0), pad[0], (0, 0)), constant_values=-jnp.inf), (2,), (2,)
            )
        return jnp.swapaxes(h, 1, 2)


class NnxPoolNet(nnx.Module):
    def __init__(self, avg, right):
        self.pool = NnxPool(avg, right)

    def __call__(self, x):
        return self.pool(x)


@pytest.mark.parametrize(
    ("avg", "rule"), [(True, "avg-pool-count-include-pad"), (False, "pool-ceil-mode")]
)
def test_pooling_conventions(avg, rule):
    x = _x(2, 3, 5)
    assert compare_model(NnxPoolNet(avg, right=True), TorchPools(avg), x).ok
    r = compare_model(NnxPoolNet(avg, right=False), TorchPools(avg), x)
    assert not r.ok and r.first_divergence == "pool"
    f = next(f for f in r.diagnosis if f.rule == rule)
    assert f.entry == rule and f.layer == "pool"


def test_layers_with_other_names_align_like_the_weights():
    """torch fc1/fc2 against JAX dense_in/dense_out: paired by load_torch_weights' order."""

    class J(nnx.Module):
        def __init__(self):
            self.dense_in = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
            self.dense_out = nnx.Linear(4, 2, rngs=nnx.Rngs(0))

        def __call__(self, x):
            return self.dense_out(jnp.tanh(self.dense_in(x)))

    class T(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(10)
            self.fc1 = torch.nn.Linear(3, 4)
            self.fc2 = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc2(torch.tanh(self.fc1(x)))

    t, j = T(), J()
    assert load_torch_weights(j, t).ok
    r = compare_model(j, t, _x(4, 3))
    assert r.ok, str(r)
    assert [(x.torch_name, x.jax_path) for x in r.layers[1:3]] == [
        ("fc1", "dense_in"),
        ("fc2", "dense_out"),
    ]
    assert {p.torch_name for p in r.params} == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}


# ---- torch functionals in a parent's forward (F.gelu, F.layer_norm, F.avg_pool, ...) -------


class TorchFunctionalNet(torch.nn.Module):
    """fc1 -> LayerNorm -> a functional (F.gelu by default) -> fc2, the functional in the
    root's forward (no module to pair)."""

    def __init__(self, fn=None, width=8):
        super().__init__()
        torch.manual_seed(11)
        self.fc1 = torch.nn.Linear(4, 8)
        self.ln = torch.nn.LayerNorm(8)
        self.fc2 = torch.nn.Linear(width, 3)
        self.fn = fn or torch.nn.functional.gelu

    def forward(self, x):
        return self.fc2(self.fn(self.ln(self.fc1(x))))


class NnxFunctionalNet(nnx.Module):
    def __init__(self, fn=None, width=8):
        r = nnx.Rngs(0)
        self.fc1 = nnx.Linear(4, 8, rngs=r)
        self.ln = nnx.LayerNorm(8, epsilon=1e-5, rngs=r)
        self.fc2 = nnx.Linear(width, 3, rngs=r)
        self.fn = fn or jax.nn.gelu  # the tanh approximation by default

    def __call__(self, x):
        return self.fc2(self.fn(self.ln(self.fc1(x))))


def _functional_port(tfn=None, jfn=None, width=8):
    t, j = TorchFunctionalNet(tfn, width), NnxFunctionalNet(jfn, width)
    assert load_torch_weights(j, t).ok
    return t, j


@pytest.mark.parametrize("torch_approx", ["none", "tanh"])
def test_functional_gelu_approximation(torch_approx):
    tfn = lambda h: torch.nn.functional.gelu(h, approximate=torch_approx)
    x = _x(6, 4, scale=3.0)
    # planted: the other approximation in JAX (jax.nn.gelu's default is tanh)
    t, j = _functional_port(tfn, lambda h: jax.nn.gelu(h, approximate=torch_approx == "none"))
    r = compare_model(j, t, x)
    assert not r.ok and r.first_divergence == "fc2", str(r)
    f = r.diagnosis[0]
    assert (f.layer, f.rule, f.entry) == ("fc2", "gelu-approximation", "gelu-default"), str(r)
    want = "approximate=True" if torch_approx == "tanh" else "approximate=False"
    assert want in f.fix and torch_approx in f.torch_setting
    # the right port: no finding
    t, j = _functional_port(tfn, lambda h: jax.nn.gelu(h, approximate=torch_approx == "tanh"))
    r = compare_model(j, t, x)
    assert r.ok and r.diagnosis == (), str(r)


def test_functional_gelu_inside_a_transformer_encoder_layer_is_recorded():
    from funcdiff.parity.models._capture import capture_torch

    layer = torch.nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, activation="gelu")
    tc = capture_torch(
        torch,
        layer.eval(),
        [_x(3, 2, 4)],
        [],
        train=False,
        dtype=torch.float32,
        cotangents=lambda outs: [np.ones_like(o) for o in outs],
        loss=None,
    )
    calls = {(c.name, c.stack[-1]) for c in tc.functional}
    assert ("gelu", "") in calls and ("layer_norm", "norm1") in calls
    gelu = next(c for c in tc.functional if c.name == "gelu")
    assert gelu.settings == {"approximate": "none"}


def _pool1d(count_include_pad):
    return lambda h: torch.nn.functional.avg_pool1d(h[:, None], 3, 1, 1, False, count_include_pad)[
        :, 0
    ]


def _jax_pool1d(count_include_pad):
    return lambda h: nnx.avg_pool(
        h[:, :, None], (3,), (1,), ((1, 1),), count_include_pad=count_include_pad
    )[:, :, 0]


def test_functional_avg_pool_count_include_pad():
    x = _x(5, 4)
    # planted: torch excludes the padding from the count (positional argument), flax's default
    # counts it
    t, j = _functional_port(_pool1d(False), _jax_pool1d(True))
    r = compare_model(j, t, x)
    assert not r.ok and r.first_divergence == "fc2"
    f = r.diagnosis[0]
    assert (f.layer, f.rule, f.entry) == (
        "fc2",
        "avg-pool-count-include-pad",
        "avg-pool-count-include-pad",
    )
    assert "count_include_pad=False" in f.torch_setting
    t, j = _functional_port(_pool1d(False), _jax_pool1d(False))
    r = compare_model(j, t, x)
    assert r.ok and r.diagnosis == (), str(r)


def test_functional_resize_antialias():
    tfn = lambda h: torch.nn.functional.interpolate(h[:, None, None], size=(1, 4), mode="bilinear")[
        :, 0, 0
    ]
    x = _x(5, 4)
    # planted: jax.image.resize antialiases when downsampling by default, torch does not
    t, j = _functional_port(tfn, lambda h: jax.image.resize(h, (h.shape[0], 4), "linear"), 4)
    r = compare_model(j, t, x)
    assert not r.ok and r.first_divergence == "fc2"
    f = r.diagnosis[0]
    assert (f.layer, f.rule, f.entry) == ("fc2", "resize-antialias", "resize-antialias")
    assert get_divergence(f.entry).holds()
    right = lambda h: jax.image.resize(h, (h.shape[0], 4), "linear", antialias=False)
    t, j = _functional_port(tfn, right, 4)
    r = compare_model(j, t, x)
    assert r.ok and r.diagnosis == (), str(r)


def test_functional_layer_norm_epsilon():
    tfn = lambda h: torch.nn.functional.layer_norm(h, (8,), eps=1e-3)

    def jfn(eps):
        def norm(h):
            m = h.mean(-1, keepdims=True)
            v = ((h - m) ** 2).mean(-1, keepdims=True)
            return (h - m) * jax.lax.rsqrt(v + eps)

        return norm

    x = _x(5, 4, scale=0.01)
    t, j = _functional_port(tfn, jfn(1e-6))  # planted: flax's default epsilon
    r = compare_model(j, t, x)
    f = next(f for f in r.diagnosis if f.rule == "norm-epsilon")
    assert f.entry == "flax-norm-epsilon" and "eps=0.001" in f.torch_setting
    assert "1e-06" in f.jax_setting
    t, j = _functional_port(tfn, jfn(1e-3))
    r = compare_model(j, t, x)
    assert not [f for f in r.diagnosis if f.rule == "norm-epsilon"], str(r)


class TorchFunctionalBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(3, 5)
        self.fc2 = torch.nn.Linear(5, 2)

    def forward(self, x):
        return self.fc2(torch.nn.functional.gelu(self.fc1(x)))


class TorchBlockNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(12)
        self.blk = TorchFunctionalBlock()
        self.head = torch.nn.Linear(2, 2)

    def forward(self, x):
        return self.head(torch.tanh(self.blk(x)))


class NnxBlockNet(nnx.Module):
    def __init__(self, exact):
        self.blk = NnxBlock(exact)
        self.head = nnx.Linear(2, 2, rngs=nnx.Rngs(1))

    def __call__(self, x):
        return self.head(jnp.tanh(self.blk(x)))  # a tanh outside the block: not a GELU


@pytest.mark.parametrize("exact", [True, False])
def test_functional_gelu_in_an_aligned_block(exact):
    t, j = TorchBlockNet(), NnxBlockNet(exact)
    assert load_torch_weights(j, t).ok
    r = compare_model(j, t, _x(4, 3, scale=3.0))
    if exact:
        assert r.ok and r.diagnosis == (), str(r)
        return
    assert not r.ok and r.first_divergence == "blk"
    assert [(f.layer, f.rule) for f in r.diagnosis] == [("blk.fc2", "gelu-approximation")]


def test_jax_regions_see_scopes_under_transformations():
    from funcdiff.parity.models._functional import jax_regions

    def layer(x):
        with jax.named_scope("fd:blocks.0"):
            return jnp.tanh(x)

    def model(x):
        y = jax.vmap(layer)(x)  # the scope reads "vmap(fd:blocks.0)"
        y = jax.lax.scan(lambda c, v: (c, layer(v)), 0.0, y)[1]
        return jax.nn.gelu(y, approximate=False)

    r = jax_regions(jax.make_jaxpr(model)(jnp.ones((2, 3))).jaxpr)
    prims = {k: [e.primitive.name for e in v] for k, v in r.items()}
    assert prims["blocks.0"].count("tanh") == 2
    assert {"erf", "erfc"} & set(prims[""]) and "tanh" not in prims[""]  # exact GELU: erfc


class TorchTwoLinear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(13)
        self.fc1 = torch.nn.Linear(4, 8)
        self.fc2 = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.nn.functional.gelu(self.fc1(x)))


class EqxGeluNet(eqx.Module):
    fc1: eqx.nn.Linear
    fc2: eqx.nn.Linear
    exact: bool = eqx.field(static=True)

    def __init__(self, exact):
        k1, k2 = jax.random.split(jax.random.key(0))
        self.fc1 = eqx.nn.Linear(4, 8, key=k1)
        self.fc2 = eqx.nn.Linear(8, 3, key=k2)
        self.exact = exact

    def __call__(self, x):  # the layers under vmap: their scopes read "vmap(fd:fc1)"
        h = jax.vmap(self.fc1)(x)
        return jax.vmap(self.fc2)(jax.nn.gelu(h, approximate=not self.exact))


@pytest.mark.parametrize("exact", [True, False])
def test_functional_gelu_equinox(exact):
    t = TorchTwoLinear()
    j = load_torch_weights(EqxGeluNet(exact), t).model
    r = compare_model(j, t, _x(6, 4, scale=3.0))
    if exact:
        assert r.ok and r.diagnosis == (), str(r)
    else:
        assert r.first_divergence == "fc2"
        assert [(f.layer, f.rule) for f in r.diagnosis] == [("fc2", "gelu-approximation")]


def test_functional_avg_pool_count_include_pad_reverse():
    # planted: torch counts the padding (its default), the JAX port excludes it
    t, j = _functional_port(_pool1d(True), _jax_pool1d(False))
    r = compare_model(j, t, _x(5, 4))
    assert not r.ok and r.first_divergence == "fc2"
    f = r.diagnosis[0]
    assert (f.layer, f.rule) == ("fc2", "avg-pool-count-include-pad")
    assert "count_include_pad=True" in f.torch_setting and "count_include_pad=True" in f.fix
