"""Layout rules: how each torch layer's tensors become the leaves of its JAX twin, and back.

The rule is chosen by the JAX layer's type (walking its class's MRO, so subclasses inherit
their parent's rule), or, for plain pytrees and JAX modules of unknown type, by each leaf's name.
It is never guessed from shapes: a square ``nnx.Linear`` kernel is ``weight.T`` because the
layer is an ``nnx.Linear``. Shapes are only checked, after the rule is applied.

Measured with torch 2.13.0, flax 0.12.8, equinox 0.13.8 (the tests load each layer from its
torch twin and compare forward outputs in float64 to 1e-10):

torch -> Flax NNX | Equinox, per layer kind:

Linear: weight (O, I), bias (O,)
  NNX  ``nnx.Linear``: ``kernel`` (I, O) = ``weight.T``; ``bias`` as is; ``nnx.LinearGeneral``
       (over the last axis): ``kernel`` = ``weight.T.reshape(in..., out...)``, ``bias``
       = ``bias.reshape(out...)``
  eqx  ``eqx.nn.Linear``: ``weight`` (O, I), ``bias`` as is (layers take unbatched input)
Conv1d/2d/3d: weight (O, I/g, k...), bias (O,)
  NNX  ``nnx.Conv``: ``kernel`` (k..., I/g, O) = ``weight.permute(2, ..., 1, 0)``
  eqx  ``eqx.nn.Conv``: ``weight`` as is; ``bias`` (O, 1, ..., 1) = ``bias.reshape``
ConvTranspose1d/2d/3d: weight (I, O/g, k...)
  NNX  ``nnx.ConvTranspose``: ``kernel`` (k..., I, O) = ``flip(weight, k).permute(k..., 0, 1)``;
       with ``transpose_kernel=True``: (k..., O, I) = ``weight.permute(k..., 1, 0)``
  eqx  ``eqx.nn.ConvTranspose``: ``weight`` (O, I, k...) = ``flip(weight, k).swapaxes(0, 1)``
       (groups=1 only); ``bias`` reshaped as for Conv
Embedding: weight (N, D)
  NNX  ``nnx.Embed.embedding`` as is;  eqx  ``eqx.nn.Embedding.weight`` as is
LayerNorm / GroupNorm / RMSNorm: weight, bias
  NNX  ``scale`` = weight, ``bias`` = bias;  eqx  ``weight``, ``bias`` as is
BatchNorm1d/2d/3d: weight, bias, running_mean, running_var, num_batches_tracked
  NNX  ``scale``, ``bias``, ``mean`` = running_mean, ``var`` = running_var (``nnx.BatchStat``);
       num_batches_tracked dropped (export keeps torch's value)
  eqx  ``weight``, ``bias``; running stats into the state (``ema_state_index.0``/``.1`` for
       mode="ema", ``batch_state_index.0``/``.1`` for mode="batch"); the EMA first-time flag is
       set to False / the batch counter to 0, so the loaded statistics are used as they are
MultiheadAttention: in_proj_weight (3E, E) = [q; k; v] (or q/k/v_proj_weight), in_proj_bias,
out_proj.weight (E, E), out_proj.bias
  NNX  ``nnx.MultiHeadAttention``: ``query/key/value.kernel`` (E, H, D) = chunk
       ``.T.reshape(E, H, D)``, ``.bias`` (H, D) = chunk ``.reshape(H, D)``; ``out.kernel``
       (H, D, E) = ``out_proj.weight.T.reshape(H, D, E)``, ``out.bias`` as is
  eqx  ``eqx.nn.MultiheadAttention``: ``query_proj/key_proj/value_proj.weight`` = chunk as is,
       biases as is (eqx has none by default); ``output_proj`` = ``out_proj`` as is
LSTM / LSTMCell: weight_ih (4H, I), weight_hh (4H, H), bias_ih, bias_hh; gates i, f, g, o
  NNX  ``nnx.LSTMCell``: ``ii/if_/ig/io.kernel`` = gate chunk of weight_ih ``.T``,
       ``hi/hf/hg/ho.kernel`` = chunk of weight_hh ``.T``, ``hi/hf/hg/ho.bias`` = b_ih + b_hh
       chunk (flax has no input bias); ``nnx.OptimizedLSTMCell``: ``dense_i.kernel`` =
       weight_ih.T, ``dense_h.kernel`` = weight_hh.T, ``dense_h.bias`` = b_ih + b_hh
  eqx  ``eqx.nn.LSTMCell``: ``weight_ih``, ``weight_hh`` as is, ``bias`` = b_ih + b_hh
GRU / GRUCell: weight_ih (3H, I), weight_hh (3H, H), bias_ih, bias_hh; gates r, z, n with
n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
  NNX  ``nnx.GRUCell``: ``dense_i.kernel`` = weight_ih.T, ``dense_h.kernel`` = weight_hh.T,
       ``dense_i.bias`` = (b_ir + b_hr, b_iz + b_hz, b_in). flax has no bias inside
       r * (...), so a non-zero b_hn is refused (``NotRepresentable``)
  eqx  ``eqx.nn.GRUCell``: ``weight_ih``, ``weight_hh`` as is, ``bias`` = (b_ir + b_hr,
       b_iz + b_hz, b_in), ``bias_n`` = b_hn

A multi-layer or bidirectional ``nn.LSTM``/``nn.GRU`` is one torch layer per (layer,
direction), ``lstm.l0``, ``lstm.l1``, ``lstm.l0_reverse``, each feeding one JAX cell (an
``nnx.RNN(cell)`` is aligned through its ``cell``).

Leaf names (pytrees and unknown JAX module types): ``kernel`` of 2 dims = ``weight.T``, of more
dims = ``weight.permute(2, ..., 1, 0)`` (HF's converter did the same); ``scale`` and
``embedding`` = ``weight``; ``mean``/``var`` = ``running_mean``/``running_var``; ``bias`` =
``bias`` (reshaped when only unit axes differ); any other name = the torch tensor of the same name.

Export (JAX -> torch) inverts each rule exactly (transposes, reshapes, flips and slices are
bit-exact). Where torch has two biases and JAX one, export puts the sum into ``bias_ih`` and
zeros into ``bias_hh`` (and ``b_hn``), so JAX -> torch -> JAX is bit-exact.

The rules themselves live in :mod:`._layouts_nnx` and :mod:`._layouts_eqx`, built from the
pieces in :mod:`._layout_base`; this module maps layer types to them.

Examples:
  >>> from flax import nnx
  >>> from funcdiff.parity.models._layouts import rule_for
  >>> rule_for(nnx.Linear(2, 2, rngs=nnx.Rngs(0))).name
  'nnx.Linear'

"""

from __future__ import annotations

from typing import Any

from funcdiff.parity.models._frameworks import JaxLayer, eqx_if_imported, nnx_if_imported
from funcdiff.parity.models._layout_base import (
    GENERIC,
    RuleSpec,
    TorchLayer,
)
from funcdiff.parity.models._layouts_eqx import (
    eqx_as_is,
    eqx_batchnorm,
    eqx_conv,
    eqx_conv_transpose,
    eqx_gru,
    eqx_lstm,
    eqx_mha,
)
from funcdiff.parity.models._layouts_nnx import (
    nnx_batchnorm,
    nnx_conv,
    nnx_conv_transpose,
    nnx_embed,
    nnx_gru,
    nnx_linear,
    nnx_linear_general,
    nnx_lstm,
    nnx_mha,
    nnx_norm,
    nnx_optimized_lstm,
)

__all__ = ["is_atomic", "layer_kind", "rule_for", "spec_for"]

_LINEAR = ("Linear", "NonDynamicallyQuantizableLinear", "LazyLinear")
_CONV = ("Conv1d", "Conv2d", "Conv3d", "LazyConv1d", "LazyConv2d", "LazyConv3d")
_CONVT = ("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")
_BN = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "BatchNorm")
_LSTM = ("LSTM", "LSTMCell")
_GRU = ("GRU", "GRUCell")

# one table per (flax imported, equinox imported): a framework imported later gets its own
_TABLES: dict[tuple[bool, bool], dict[type, RuleSpec]] = {}


def _table() -> dict[type, RuleSpec]:
    nnx = nnx_if_imported()
    eqx = eqx_if_imported()
    seen = (nnx is not None, eqx is not None)
    if seen in _TABLES:
        return _TABLES[seen]
    table: dict[type, RuleSpec] = {}
    if nnx is not None:
        table.update(
            {
                nnx.Linear: RuleSpec("nnx.Linear", "Linear", _LINEAR, nnx_linear, True),
                nnx.LinearGeneral: RuleSpec(
                    "nnx.LinearGeneral", "Linear", _LINEAR, nnx_linear_general, True
                ),
                nnx.Conv: RuleSpec("nnx.Conv", "Conv", _CONV, nnx_conv, True),
                nnx.ConvTranspose: RuleSpec(
                    "nnx.ConvTranspose", "ConvTranspose", _CONVT, nnx_conv_transpose, True
                ),
                nnx.Embed: RuleSpec("nnx.Embed", "Embedding", ("Embedding",), nnx_embed, True),
                nnx.LayerNorm: RuleSpec(
                    "nnx.LayerNorm", "LayerNorm", ("LayerNorm",), nnx_norm, True
                ),
                nnx.GroupNorm: RuleSpec(
                    "nnx.GroupNorm", "GroupNorm", ("GroupNorm",), nnx_norm, True
                ),
                nnx.RMSNorm: RuleSpec("nnx.RMSNorm", "RMSNorm", ("RMSNorm",), nnx_norm, True),
                nnx.BatchNorm: RuleSpec("nnx.BatchNorm", "BatchNorm", _BN, nnx_batchnorm, True),
                nnx.MultiHeadAttention: RuleSpec(
                    "nnx.MultiHeadAttention",
                    "MultiheadAttention",
                    ("MultiheadAttention",),
                    nnx_mha,
                    True,
                ),
                nnx.LSTMCell: RuleSpec("nnx.LSTMCell", "LSTM", _LSTM, nnx_lstm, True),
                nnx.OptimizedLSTMCell: RuleSpec(
                    "nnx.OptimizedLSTMCell", "LSTM", _LSTM, nnx_optimized_lstm, True
                ),
                nnx.GRUCell: RuleSpec("nnx.GRUCell", "GRU", _GRU, nnx_gru, True),
            }
        )
    if eqx is not None:
        n = eqx.nn
        table.update(
            {
                n.Linear: RuleSpec(
                    "eqx.nn.Linear",
                    "Linear",
                    _LINEAR,
                    eqx_as_is(("weight", "weight"), ("bias", "bias")),
                    True,
                ),
                n.Conv: RuleSpec("eqx.nn.Conv", "Conv", _CONV, eqx_conv, True),
                n.ConvTranspose: RuleSpec(
                    "eqx.nn.ConvTranspose", "ConvTranspose", _CONVT, eqx_conv_transpose, True
                ),
                n.Embedding: RuleSpec(
                    "eqx.nn.Embedding",
                    "Embedding",
                    ("Embedding",),
                    eqx_as_is(("weight", "weight")),
                    True,
                ),
                n.BatchNorm: RuleSpec("eqx.nn.BatchNorm", "BatchNorm", _BN, eqx_batchnorm, True),
                n.MultiheadAttention: RuleSpec(
                    "eqx.nn.MultiheadAttention",
                    "MultiheadAttention",
                    ("MultiheadAttention",),
                    eqx_mha,
                    True,
                ),
                n.LSTMCell: RuleSpec("eqx.nn.LSTMCell", "LSTM", _LSTM, eqx_lstm, True),
                n.GRUCell: RuleSpec("eqx.nn.GRUCell", "GRU", _GRU, eqx_gru, True),
            }
        )
        for cls, kind in ((n.LayerNorm, "LayerNorm"), (n.GroupNorm, "GroupNorm")):
            table[cls] = RuleSpec(
                f"eqx.nn.{kind}",
                kind,
                (kind,),
                eqx_as_is(("weight", "weight"), ("bias", "bias")),
                True,
            )
        if hasattr(n, "RMSNorm"):
            table[n.RMSNorm] = RuleSpec(
                "eqx.nn.RMSNorm",
                "RMSNorm",
                ("RMSNorm",),
                eqx_as_is(("weight", "weight"), ("bias", "bias")),
                True,
            )
    _TABLES[seen] = table
    return table


def rule_for(module: Any) -> RuleSpec | None:
    """The built-in rule for a JAX module's type (searching its MRO), or None."""
    if module is None:
        return None
    table = _table()
    for cls in type(module).__mro__:
        if cls in table:
            return table[cls]
    return None


def is_atomic(module: Any) -> bool:
    """Whether ``module`` has a built-in rule and so owns its submodules' leaves."""
    spec = rule_for(module)
    return bool(spec and spec.atomic)


def spec_for(jl: JaxLayer) -> RuleSpec:
    """The rule for a JAX layer: its type's rule, else the leaf-name rule."""
    return rule_for(jl.module) or GENERIC


def layer_kind(spec: RuleSpec, tl: TorchLayer) -> str:
    """The reported kind: torch's class (or its standard base: a subclass of ``nn.Linear`` is
    reported as ``Linear``) when known, else one inferred from the tensors."""
    if tl.known_kind or not spec.kind:
        if tl.known_kind and spec.torch_kinds and tl.kind not in spec.torch_kinds:
            return next((k for k in tl.kinds() if k in spec.torch_kinds), tl.kind)
        return tl.kind
    if spec.kind in ("Conv", "ConvTranspose", "BatchNorm") and "weight" in tl.tensors:
        nd = tl.tensors["weight"].ndim
        return f"{spec.kind}{nd - 2}d" if spec.kind != "BatchNorm" else "BatchNorm"
    return spec.kind
