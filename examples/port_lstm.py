"""Porting a 2-layer ``torch.nn.LSTM`` to Flax NNX and to Equinox, checked with ``compare_model``.

The PyTorch side: ``nn.LSTM(8, 16, num_layers=2, batch_first=True)`` followed by a linear head
applied at every time step. Two ports:

- Flax NNX: an ``LSTM`` module holding two ``nnx.RNN(nnx.LSTMCell(...))`` layers (one JAX
  module for torch's one ``nn.LSTM``, so the trees align by name). ``nnx.LSTMCell`` has one
  Linear per gate for the input (``ii, if_, ig, io``, *no bias*) and one per gate for the
  hidden state (``hi, hf, hg, ho``, with bias): torch's ``weight_ih_l{k}`` (4H, in) splits into
  the four gates in torch's order i, f, g, o, transposed, and the hidden Linears' bias is
  torch's ``bias_ih + bias_hh`` (flax has no input bias: google/flax#3746).
- Equinox: an ``EqxLSTM`` of two ``eqx.nn.LSTMCell`` run by ``lax.scan``, vmapped over the
  batch. The cell keeps torch's fused layout (``weight_ih`` (4H, in), ``weight_hh`` (4H, H),
  gates i, f, g, o) with one ``bias`` = ``bias_ih + bias_hh``.

``load_torch_weights`` does both layouts; ``compare_model`` compares the outputs, every
parameter gradient (by torch name) and the activation gradients in float64 and float32.

Run:  PYTHONPATH=. python examples/port_lstm.py
or, for the NNX port alone from the command line (exit 0: agree, 1: disagree):
      PYTHONPATH=.:examples funcdiff port port_lstm:torch_factory port_lstm:nnx_factory \\
          --input 3,10,8

Sample output:
nn.LSTM(8, 16, num_layers=2) + Linear head
weights OK: 8 torch tensors -> 26 JAX leaves (nnx), 3 layers aligned
nnx     float64: agrees True, 4 layers, 10 parameters
  max abs error: outputs 8e-17, activation grads 1e-16, param grads 2e-15
nnx     float32: agrees True, 4 layers, 10 parameters
  max abs error: outputs 4e-08, activation grads 6e-08, param grads 5e-07
weights OK: 8 torch tensors -> 8 JAX leaves (equinox), 3 layers aligned
equinox float64: agrees True, 4 layers, 10 parameters
  max abs error: outputs 8e-17, activation grads 1e-16, param grads 2e-15
equinox float32: agrees True, 4 layers, 10 parameters
  max abs error: outputs 4e-08, activation grads 6e-08, param grads 5e-07
planted bug, bias_ih dropped: agrees False
  first divergence: lstm
  lstm: rnn-input-bias
    torch: bias_ih and bias_hh (two biases)
    JAX:   input Linears without bias; one bias per gate on the hidden side
    fix:   set the hidden bias to bias_ih + bias_hh
"""

from __future__ import annotations

import argparse
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

import funcdiff
from funcdiff.parity import compare_model, load_torch_weights

IN, HIDDEN, OUT, LAYERS = 8, 16, 4, 2


# ---- the PyTorch original -------------------------------------------------------------------


class TorchSequenceModel(torch.nn.Module):
    """A 2-layer LSTM and a per-step linear head; ``(batch, time, IN) -> (batch, time, OUT)``."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(IN, HIDDEN, num_layers=LAYERS, batch_first=True)
        self.head = torch.nn.Linear(HIDDEN, OUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out)


# ---- the Flax NNX port ----------------------------------------------------------------------


class LSTM(nnx.Module):
    """``nn.LSTM(num_layers=L, batch_first=True)``: one ``nnx.RNN(nnx.LSTMCell)`` per layer.

    One module for torch's one module, so the two trees align by name (``lstm`` <-> ``lstm``).
    """

    def __init__(self, in_features: int, hidden: int, num_layers: int, *, dtype, rngs) -> None:
        sizes = [in_features] + [hidden] * num_layers
        kw = {"dtype": dtype, "param_dtype": dtype, "rngs": rngs}
        self.layers = nnx.List(
            [nnx.RNN(nnx.LSTMCell(sizes[k], hidden, **kw)) for k in range(num_layers)]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = layer(x)  # zero initial carry, like torch without (h0, c0)
        return x


class SequenceModel(nnx.Module):
    """The NNX port of ``TorchSequenceModel``."""

    def __init__(self, *, dtype=jnp.float32, rngs: nnx.Rngs) -> None:
        self.lstm = LSTM(IN, HIDDEN, LAYERS, dtype=dtype, rngs=rngs)
        self.head = nnx.Linear(HIDDEN, OUT, dtype=dtype, param_dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.lstm(x))


# ---- the Equinox port ---------------------------------------------------------------------


class EqxLSTM(eqx.Module):
    """``nn.LSTM(num_layers=L)`` on one unbatched sequence ``(time, in)``: ``eqx.nn.LSTMCell``
    per layer, scanned over time."""

    cells: tuple[eqx.nn.LSTMCell, ...]

    def __init__(self, in_features: int, hidden: int, num_layers: int, *, dtype, key) -> None:
        sizes = [in_features] + [hidden] * num_layers
        keys = jax.random.split(key, num_layers)
        self.cells = tuple(
            eqx.nn.LSTMCell(sizes[k], hidden, dtype=dtype, key=keys[k]) for k in range(num_layers)
        )

    def __call__(self, seq: jax.Array) -> jax.Array:
        for cell in self.cells:
            zeros = jnp.zeros((cell.hidden_size,), seq.dtype)

            def step(carry, xt, cell=cell):
                h, c = cell(xt, carry)
                return (h, c), h

            _, seq = jax.lax.scan(step, (zeros, zeros), seq)
        return seq


class EqxSequenceModel(eqx.Module):
    """The Equinox port of ``TorchSequenceModel``; vmaps the unbatched layers over the batch."""

    lstm: EqxLSTM
    head: eqx.nn.Linear

    def __init__(self, *, dtype=jnp.float32, key: jax.Array) -> None:
        k1, k2 = jax.random.split(key)
        self.lstm = EqxLSTM(IN, HIDDEN, LAYERS, dtype=dtype, key=k1)
        self.head = eqx.nn.Linear(HIDDEN, OUT, dtype=dtype, key=k2)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.vmap(self.lstm)(x)
        return jax.vmap(jax.vmap(self.head))(h)


# ---- building them, and the comparison ------------------------------------------------------


def make_models(dtype: str = "float32", seed: int = 0):
    """``(torch model, NNX port, Equinox port)``, each with its own random weights.

    float64 models must be built inside ``funcdiff.scoped(x64=True)``.
    """
    torch.manual_seed(seed)
    torch_model = TorchSequenceModel().to(getattr(torch, dtype))
    nnx_model = SequenceModel(dtype=jnp.dtype(dtype), rngs=nnx.Rngs(seed))
    eqx_model = EqxSequenceModel(dtype=jnp.dtype(dtype), key=jax.random.key(seed))
    return torch_model, nnx_model, eqx_model


def torch_factory() -> TorchSequenceModel:
    """For ``funcdiff port``: the torch model (float32)."""
    torch.manual_seed(0)
    return TorchSequenceModel()


def nnx_factory() -> SequenceModel:
    """For ``funcdiff port``: the NNX port, unloaded (the command loads torch's weights)."""
    return SequenceModel(rngs=nnx.Rngs(0))


def make_input(batch: int = 3, length: int = 10, dtype: str = "float32", seed: int = 0):
    """A batch of sequences ``(batch, length, IN)``, the same array for both frameworks."""
    return np.random.default_rng(seed).standard_normal((batch, length, IN)).astype(dtype)


def compare(framework: str, dtype: str, *, fold_input_bias: bool = True):
    """``(WeightMapping, ModelParityResult)`` of a fresh torch model and its NNX or Equinox port.

    ``fold_input_bias=False`` plants flax's classic LSTM bug (google/flax#3746): the hidden
    Linears get torch's ``bias_hh`` only, ``bias_ih`` is lost.
    """
    with funcdiff.scoped(x64=dtype == "float64"):
        torch_model, nnx_model, eqx_model = make_models(dtype)
        mapping = load_torch_weights(nnx_model if framework == "nnx" else eqx_model, torch_model)
        if not fold_input_bias:
            for k, layer in enumerate(nnx_model.lstm.layers):
                b_hh = getattr(torch_model.lstm, f"bias_hh_l{k}").detach().numpy()
                for gate, name in enumerate(("hi", "hf", "hg", "ho")):
                    getattr(layer.cell, name).bias[...] = b_hh[gate * HIDDEN : (gate + 1) * HIDDEN]
    jax_model = nnx_model if framework == "nnx" else mapping.model  # equinox: a new module
    return mapping, compare_model(jax_model, torch_model, make_input(dtype=dtype))


def print_bug(label: str, bad) -> None:
    """The verdict on a planted bug, and the convention check's first finding."""
    print(f"planted bug, {label}: agrees {bad.ok}")
    print(f"  first divergence: {bad.first_divergence}")
    for f in bad.diagnosis[:1]:
        print(textwrap.indent(str(f), "  "))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="store_true", help="print the float64 NNX tree")
    parser.add_argument(
        "--dtype", choices=("float64", "float32"), action="append", help="only this dtype"
    )
    args = parser.parse_args(argv)
    dtypes = args.dtype or ("float64", "float32")
    print(f"nn.LSTM({IN}, {HIDDEN}, num_layers={LAYERS}) + Linear head")
    for framework in ("nnx", "equinox"):
        for dtype in dtypes:
            mapping, result = compare(framework, dtype)
            if dtype == dtypes[0]:
                print(str(mapping).splitlines()[0])
                if args.tree and framework == "nnx":
                    print(result)
            print(f"{framework:<7} {dtype}: {result.summary()}")
    print_bug("bias_ih dropped", compare("nnx", "float64", fold_input_bias=False)[1])


if __name__ == "__main__":
    main()
