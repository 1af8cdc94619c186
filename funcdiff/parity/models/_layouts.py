"""Layout rules: how each torch layer's tensors become the leaves of its JAX twin, and back.

The rule is chosen by the JAX layer's type (walking its class's MRO, so subclasses inherit
their parent's rule), or, for plain pytrees and JAX modules of unknown type, by each leaf's name.
It is never guessed from shapes: a square ``nnx.Linear`` kernel is ``weight.T`` because the
layer is an ``nnx.Linear``. Shapes are only checked, after the rule is applied.

Measured with torch 2.13.0, flax 0.12.8, equinox 0.13.8 (the tests load each layer from its
torch twin and compare forward outputs in float64 to 1e-10):

torch -> Flax NNX | Equinox, per layer kind:

Linear: weight (O, I), bias (O,)
  NNX  ``nnx.Linear``: ``kernel`` (I, O) = ``weight.T``; ``bias`` as is
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

Examples:
  >>> from funcdiff.parity.models._layouts import generic_leaf_rule
  >>> generic_leaf_rule("kernel", 2)[:2]
  ('weight', 'weight.T')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from funcdiff.parity.models._frameworks import JaxLayer, _eqx_loaded, _nnx_loaded

__all__ = [
    "Incompatible",
    "LayerPlan",
    "NotRepresentable",
    "Piece",
    "TorchLayer",
    "generic_leaf_rule",
    "rule_for",
]

Arrays = Sequence[np.ndarray]


class TorchLayer(NamedTuple):
    """A torch module (or one layer/direction of a multi-layer RNN) and its state_dict tensors.

    Attributes:
      name: dotted module name (``"layer1.0.conv1"``; ``"lstm.l1"`` for layer 1 of a 2-layer
        ``nn.LSTM``, ``"lstm.l0_reverse"`` for a reverse direction).
      kind: the module's class name (``"Conv2d"``), or inferred from the tensor names for a
        state_dict (``"BatchNorm"``, ``"Linear"`` for any 2-D ``weight``...).
      tensors: NumPy views of the tensors, keyed by name relative to the layer (``"weight"``,
        ``"out_proj.weight"``; RNN suffixes ``_l0`` stripped: ``"weight_ih"``).
      names: relative name -> full state_dict name.
      module: the torch module, or None for a state_dict.
      known_kind: whether ``kind`` is the module's class (True) or inferred (False).
    """

    name: str
    kind: str
    tensors: dict[str, np.ndarray]
    names: dict[str, str]
    module: Any
    known_kind: bool


class Piece(NamedTuple):
    """One JAX leaf made from torch tensors.

    Attributes:
      jax: the leaf's path relative to the JAX layer.
      torch: the torch tensors it is made from, relative to the torch layer.
      rule: the layout, in words (``"weight.T"``).
      load: torch arrays (in the order of ``torch``) -> the JAX array.
    """

    jax: str
    torch: tuple[str, ...]
    rule: str
    load: Callable[[Arrays], np.ndarray]


class LayerPlan(NamedTuple):
    """How one torch layer feeds one JAX layer.

    Attributes:
      pieces: one :class:`Piece` per JAX leaf the rule fills.
      export: JAX leaves (relative paths) -> torch tensors (relative names), the inverse.
      extras: JAX leaves set without a torch tensor: relative path -> (value, why).
      dropped: torch tensors deliberately not loaded: relative name -> why.
    """

    pieces: list[Piece]
    export: Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray]], dict[str, np.ndarray]]
    extras: dict[str, tuple[np.ndarray, str]]
    dropped: dict[str, str]


class Incompatible(Exception):
    """The torch layer cannot feed this JAX layer (wrong kind or missing tensors)."""


class NotRepresentable(ValueError):
    """The aligned torch layer holds values the JAX layer cannot represent."""


class RuleSpec(NamedTuple):
    name: str  # "nnx.Linear"
    kind: str  # the reported layer kind when torch's is unknown
    torch_kinds: tuple[str, ...]
    plan: Callable[[JaxLayer, TorchLayer], LayerPlan]
    atomic: bool  # owns the leaves of its submodules


# ------------------------------------------------------------------------------------ helpers


def _need(tl: TorchLayer, *names: str) -> None:
    missing = [n for n in names if n not in tl.tensors]
    if missing:
        raise Incompatible(f"torch layer `{tl.name}` has no {', '.join(missing)}")


def _copy(a: Arrays) -> np.ndarray:
    return a[0]


def _t(a: Arrays) -> np.ndarray:
    return a[0].T


def _simple(
    jl: JaxLayer,
    tl: TorchLayer,
    mapping: Sequence[tuple[str, str, str, Callable[[Arrays], np.ndarray], Callable[..., Any]]],
    *,
    dropped: Mapping[str, str] | None = None,
) -> LayerPlan:
    """One JAX leaf per torch tensor: (jax, torch, rule, load, export(jax_array, torch_like))."""
    pieces, inverse = [], {}
    for jname, tname, rule, load, back in mapping:
        if jname not in jl.leaves:
            continue  # e.g. use_bias=False: a torch bias left over is reported unmatched
        _need(tl, tname)
        pieces.append(Piece(jname, (tname,), rule, load))
        inverse[jname] = (tname, back)

    def export(jax: Mapping[str, np.ndarray], torch: Mapping[str, np.ndarray]) -> dict:
        return {t: back(jax[j], torch[t]) for j, (t, back) in inverse.items() if j in jax}

    return LayerPlan(pieces, export, {}, dict(dropped or {}))


def _same(a: np.ndarray, like: np.ndarray) -> np.ndarray:
    return a.reshape(like.shape)


def _back_t(a: np.ndarray, like: np.ndarray) -> np.ndarray:
    return a.T


def _conv_perm(ndim: int) -> tuple[int, ...]:
    return (*range(2, ndim), 1, 0)


def _bn_dropped(tl: TorchLayer) -> dict[str, str]:
    if "num_batches_tracked" in tl.tensors:
        return {"num_batches_tracked": "no JAX counterpart (dropped; export keeps torch's value)"}
    return {}


# ------------------------------------------------------------------------------------ NNX rules


def _nnx_linear(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    return _simple(
        jl,
        tl,
        [
            ("kernel", "weight", "weight.T", _t, _back_t),
            ("bias", "bias", "as is", _copy, _same),
        ],
    )


def _nnx_conv(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    _need(tl, "weight")
    nd = tl.tensors["weight"].ndim
    perm = _conv_perm(nd)
    inv = tuple(int(i) for i in np.argsort(perm))
    return _simple(
        jl,
        tl,
        [
            (
                "kernel",
                "weight",
                f"weight.permute{perm}",
                lambda a: a[0].transpose(perm),
                lambda k, like: k.transpose(inv),
            ),
            ("bias", "bias", "as is", _copy, _same),
        ],
    )


def _nnx_conv_transpose(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    _need(tl, "weight")
    nd = tl.tensors["weight"].ndim
    sp = tuple(range(2, nd))
    if getattr(jl.module, "transpose_kernel", False):
        perm = (*sp, 1, 0)
        inv = tuple(int(i) for i in np.argsort(perm))
        rule = f"weight.permute{perm} (transpose_kernel=True)"
        load: Callable[[Arrays], np.ndarray] = lambda a: a[0].transpose(perm)
        back: Callable[..., np.ndarray] = lambda k, like: k.transpose(inv)
    else:
        perm = (*sp, 0, 1)
        inv = tuple(int(i) for i in np.argsort(perm))
        rule = f"flip(weight, {sp}).permute{perm}"
        load = lambda a: np.flip(a[0], sp).transpose(perm)
        back = lambda k, like: np.flip(k.transpose(inv), sp)
    return _simple(
        jl,
        tl,
        [("kernel", "weight", rule, load, back), ("bias", "bias", "as is", _copy, _same)],
    )


def _nnx_embed(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    return _simple(jl, tl, [("embedding", "weight", "as is", _copy, _same)])


def _nnx_norm(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    return _simple(
        jl,
        tl,
        [
            ("scale", "weight", "weight", _copy, _same),
            ("bias", "bias", "as is", _copy, _same),
        ],
    )


def _nnx_batchnorm(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    return _simple(
        jl,
        tl,
        [
            ("scale", "weight", "weight", _copy, _same),
            ("bias", "bias", "as is", _copy, _same),
            ("mean", "running_mean", "running_mean", _copy, _same),
            ("var", "running_var", "running_var", _copy, _same),
        ],
        dropped=_bn_dropped(tl),
    )


def _mha_parts(tl: TorchLayer) -> dict[str, tuple[str, Callable[[Arrays], np.ndarray]]]:
    """Torch MHA tensors -> per-projection (source name, slice) for q, k, v."""
    if "bias_k" in tl.tensors or "bias_v" in tl.tensors:
        raise NotRepresentable(
            f"torch MultiheadAttention `{tl.name}` has add_bias_kv=True (bias_k, bias_v), which "
            "neither nnx.MultiHeadAttention nor eqx.nn.MultiheadAttention represents; port it "
            "with a custom attention module."
        )
    out: dict[str, tuple[str, Callable[[Arrays], np.ndarray]]] = {}
    for i, p in enumerate("qkv"):
        if f"{p}_proj_weight" in tl.tensors:
            out[f"{p}.w"] = (f"{p}_proj_weight", _copy)
        else:
            _need(tl, "in_proj_weight")
            out[f"{p}.w"] = ("in_proj_weight", partial(_chunk, n=3, i=i))
        if "in_proj_bias" in tl.tensors:
            out[f"{p}.b"] = ("in_proj_bias", partial(_chunk, n=3, i=i))
    return out


def _mha_export(
    jax_w: dict[str, np.ndarray], jax_b: dict[str, np.ndarray], torch: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if "in_proj_weight" in torch and all(p in jax_w for p in "qkv"):
        out["in_proj_weight"] = np.concatenate([jax_w[p] for p in "qkv"], axis=0)
    for p in "qkv":
        if f"{p}_proj_weight" in torch and p in jax_w:
            out[f"{p}_proj_weight"] = jax_w[p]
    if "in_proj_bias" in torch and all(p in jax_b for p in "qkv"):
        out["in_proj_bias"] = np.concatenate([jax_b[p] for p in "qkv"], axis=0)
    return out


def _nnx_mha(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    parts = _mha_parts(tl)
    names = {"q": "query", "k": "key", "v": "value"}
    pieces = []
    for p, jname in names.items():
        src, sl = parts[f"{p}.w"]
        shape = jl.leaves[f"{jname}.kernel"].shape if f"{jname}.kernel" in jl.leaves else None
        if shape is not None:
            pieces.append(
                Piece(
                    f"{jname}.kernel",
                    (src,),
                    f"{src}[{p}].T.reshape(E, H, D)",
                    partial(_then_t_reshape, sl, shape),
                )
            )
        if f"{jname}.bias" in jl.leaves and f"{p}.b" in parts:
            bsrc, bsl = parts[f"{p}.b"]
            bshape = jl.leaves[f"{jname}.bias"].shape
            pieces.append(
                Piece(
                    f"{jname}.bias",
                    (bsrc,),
                    f"{bsrc}[{p}].reshape(H, D)",
                    partial(_then_reshape, bsl, bshape),
                )
            )
    if "out.kernel" in jl.leaves:
        _need(tl, "out_proj.weight")
        s = jl.leaves["out.kernel"].shape
        pieces.append(
            Piece(
                "out.kernel",
                ("out_proj.weight",),
                "out_proj.weight.T.reshape(H, D, E)",
                partial(_then_t_reshape, _copy, s),
            )
        )
    if "out.bias" in jl.leaves and "out_proj.bias" in tl.tensors:
        pieces.append(Piece("out.bias", ("out_proj.bias",), "as is", _copy))

    def export(jax: Mapping[str, np.ndarray], torch: Mapping[str, np.ndarray]) -> dict:
        w = {
            p: jax[f"{n}.kernel"].reshape(jax[f"{n}.kernel"].shape[0], -1).T
            for p, n in names.items()
            if f"{n}.kernel" in jax
        }
        b = {p: jax[f"{n}.bias"].reshape(-1) for p, n in names.items() if f"{n}.bias" in jax}
        out = _mha_export(w, b, torch)
        if "out.kernel" in jax:
            k = jax["out.kernel"]
            out["out_proj.weight"] = k.reshape(-1, k.shape[-1]).T
        if "out.bias" in jax and "out_proj.bias" in torch:
            out["out_proj.bias"] = jax["out.bias"]
        return out

    return LayerPlan(pieces, export, {}, {})


def _gates(a: np.ndarray, n: int) -> list[np.ndarray]:
    return np.split(a, n, axis=0)


def _chunk(a: Arrays, *, n: int, i: int) -> np.ndarray:
    return _gates(a[0], n)[i]


def _chunk_t(a: Arrays, *, n: int, i: int) -> np.ndarray:
    return _gates(a[0], n)[i].T


def _chunk_sum(a: Arrays, *, n: int, i: int) -> np.ndarray:
    return _gates(a[0], n)[i] + _gates(a[1], n)[i]


def _then_reshape(
    sl: Callable[[Arrays], np.ndarray], shape: tuple[int, ...], a: Arrays
) -> np.ndarray:
    return sl(a).reshape(shape)


def _then_t_reshape(
    sl: Callable[[Arrays], np.ndarray], shape: tuple[int, ...], a: Arrays
) -> np.ndarray:
    return sl(a).T.reshape(shape)


def _nnx_lstm(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    _need(tl, "weight_ih", "weight_hh")
    has_bias = "bias_ih" in tl.tensors and "bias_hh" in tl.tensors
    pieces = []
    for g, (i_name, h_name) in enumerate([("ii", "hi"), ("if_", "hf"), ("ig", "hg"), ("io", "ho")]):
        gate = "ifgo"[g]
        pieces.append(
            Piece(
                f"{i_name}.kernel",
                ("weight_ih",),
                f"weight_ih[{gate}].T",
                partial(_chunk_t, n=4, i=g),
            )
        )
        pieces.append(
            Piece(
                f"{h_name}.kernel",
                ("weight_hh",),
                f"weight_hh[{gate}].T",
                partial(_chunk_t, n=4, i=g),
            )
        )
        if has_bias and f"{h_name}.bias" in jl.leaves:
            pieces.append(
                Piece(
                    f"{h_name}.bias",
                    ("bias_ih", "bias_hh"),
                    f"bias_ih[{gate}] + bias_hh[{gate}]",
                    partial(_chunk_sum, n=4, i=g),
                )
            )

    def export(jax: Mapping[str, np.ndarray], torch: Mapping[str, np.ndarray]) -> dict:
        ins, hs = ["ii", "if_", "ig", "io"], ["hi", "hf", "hg", "ho"]
        out = {
            "weight_ih": np.concatenate([jax[f"{n}.kernel"].T for n in ins], axis=0),
            "weight_hh": np.concatenate([jax[f"{n}.kernel"].T for n in hs], axis=0),
        }
        if has_bias and all(f"{n}.bias" in jax for n in hs):
            out["bias_ih"] = np.concatenate([jax[f"{n}.bias"] for n in hs], axis=0)
            out["bias_hh"] = np.zeros_like(torch["bias_hh"])
        return out

    return LayerPlan(pieces, export, {}, {})


def _fused_rnn(
    jl: JaxLayer, tl: TorchLayer, ngates: int, bias_on: str, kernel_i: str, kernel_h: str
) -> LayerPlan:
    _need(tl, "weight_ih", "weight_hh")
    has_bias = "bias_ih" in tl.tensors and "bias_hh" in tl.tensors
    pieces = [
        Piece(kernel_i, ("weight_ih",), "weight_ih.T", _t),
        Piece(kernel_h, ("weight_hh",), "weight_hh.T", _t),
    ]
    gru = ngates == 3
    if has_bias and bias_on in jl.leaves:
        if gru:
            b_hn = _gates(tl.tensors["bias_hh"], 3)[2]
            if np.any(b_hn != 0):
                raise NotRepresentable(
                    f"torch GRU `{tl.name}` has a non-zero b_hn (bias_hh[n]), which sits inside "
                    "r * (W_hn h + b_hn); nnx.GRUCell has no bias there, so the port cannot "
                    "match. Use eqx.nn.GRUCell (its bias_n), a custom flax cell with a hidden "
                    "bias, or set b_hn to zero in torch before porting."
                )
            pieces.append(
                Piece(
                    bias_on,
                    ("bias_ih", "bias_hh"),
                    "(b_ir + b_hr, b_iz + b_hz, b_in); b_hn = 0",
                    _gru_bias,
                )
            )
        else:
            pieces.append(Piece(bias_on, ("bias_ih", "bias_hh"), "bias_ih + bias_hh", _sum2))

    def export(jax: Mapping[str, np.ndarray], torch: Mapping[str, np.ndarray]) -> dict:
        out = {"weight_ih": jax[kernel_i].T, "weight_hh": jax[kernel_h].T}
        if has_bias and bias_on in jax:
            out["bias_ih"] = jax[bias_on]
            out["bias_hh"] = np.zeros_like(torch["bias_hh"])
        return out

    return LayerPlan(pieces, export, {}, {})


def _sum2(a: Arrays) -> np.ndarray:
    return a[0] + a[1]


def _gru_bias(a: Arrays) -> np.ndarray:
    """(b_ir + b_hr, b_iz + b_hz, b_in) from (bias_ih, bias_hh)."""
    (ir, iz, in_), (hr, hz, _) = _gates(a[0], 3), _gates(a[1], 3)
    return np.concatenate([ir + hr, iz + hz, in_])


def _nnx_optimized_lstm(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    return _fused_rnn(jl, tl, 4, "dense_h.bias", "dense_i.kernel", "dense_h.kernel")


def _nnx_gru(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    return _fused_rnn(jl, tl, 3, "dense_i.bias", "dense_i.kernel", "dense_h.kernel")


# -------------------------------------------------------------------------------- Equinox rules


def _eqx_as_is(*pairs: tuple[str, str]) -> Callable[[JaxLayer, TorchLayer], LayerPlan]:
    def plan(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
        return _simple(jl, tl, [(j, t, "as is", _copy, _same) for j, t in pairs])

    return plan


def _eqx_conv(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    bshape = jl.leaves["bias"].shape if "bias" in jl.leaves else None
    return _simple(
        jl,
        tl,
        [
            ("weight", "weight", "as is", _copy, _same),
            (
                "bias",
                "bias",
                f"bias.reshape{bshape}",
                lambda a: a[0].reshape(bshape),
                lambda b, like: b.reshape(like.shape),
            ),
        ],
    )


def _eqx_conv_transpose(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    _need(tl, "weight")
    if getattr(tl.module, "groups", 1) != 1 or getattr(jl.module, "groups", 1) != 1:
        raise NotRepresentable(
            f"ConvTranspose `{tl.name}` with groups > 1: the layout for eqx.nn.ConvTranspose "
            "with groups is not built in; port it with groups=1 or load it by hand."
        )
    sp = tuple(range(2, tl.tensors["weight"].ndim))
    bshape = jl.leaves["bias"].shape if "bias" in jl.leaves else None
    return _simple(
        jl,
        tl,
        [
            (
                "weight",
                "weight",
                f"flip(weight, {sp}).swapaxes(0, 1)",
                lambda a: np.flip(a[0], sp).swapaxes(0, 1),
                lambda w, like: np.flip(w.swapaxes(0, 1), sp),
            ),
            (
                "bias",
                "bias",
                f"bias.reshape{bshape}",
                lambda a: a[0].reshape(bshape),
                lambda b, like: b.reshape(like.shape),
            ),
        ],
    )


def _eqx_batchnorm(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    mode = getattr(jl.module, "mode", "ema")
    stats = "ema_state_index" if mode == "ema" else "batch_state_index"
    plan = _simple(
        jl,
        tl,
        [
            ("weight", "weight", "as is", _copy, _same),
            ("bias", "bias", "as is", _copy, _same),
            (f"{stats}.0", "running_mean", "running_mean -> state", _copy, _same),
            (f"{stats}.1", "running_var", "running_var -> state", _copy, _same),
        ],
        dropped=_bn_dropped(tl),
    )
    if mode == "ema" and "ema_first_time_index" in jl.leaves:
        plan.extras["ema_first_time_index"] = (
            np.array(False),
            "set to False so the loaded running statistics are used",
        )
    if mode != "ema" and "batch_counter" in jl.leaves:
        leaf = jl.leaves["batch_counter"]
        plan.extras["batch_counter"] = (
            np.zeros(leaf.shape, leaf.dtype),
            "set to 0 so inference uses the loaded running statistics without debiasing",
        )
    return plan


def _eqx_mha(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    parts = _mha_parts(tl)
    names = {"q": "query_proj", "k": "key_proj", "v": "value_proj"}
    pieces = []
    for p, jname in names.items():
        src, sl = parts[f"{p}.w"]
        if f"{jname}.weight" in jl.leaves:
            pieces.append(Piece(f"{jname}.weight", (src,), f"{src}[{p}]", sl))
        if f"{jname}.bias" in jl.leaves and f"{p}.b" in parts:
            bsrc, bsl = parts[f"{p}.b"]
            pieces.append(Piece(f"{jname}.bias", (bsrc,), f"{bsrc}[{p}]", bsl))
    _need(tl, "out_proj.weight")
    pieces.append(Piece("output_proj.weight", ("out_proj.weight",), "as is", _copy))
    if "output_proj.bias" in jl.leaves and "out_proj.bias" in tl.tensors:
        pieces.append(Piece("output_proj.bias", ("out_proj.bias",), "as is", _copy))

    def export(jax: Mapping[str, np.ndarray], torch: Mapping[str, np.ndarray]) -> dict:
        w = {p: jax[f"{n}.weight"] for p, n in names.items() if f"{n}.weight" in jax}
        b = {p: jax[f"{n}.bias"] for p, n in names.items() if f"{n}.bias" in jax}
        out = _mha_export(w, b, torch)
        out["out_proj.weight"] = jax["output_proj.weight"]
        if "output_proj.bias" in jax and "out_proj.bias" in torch:
            out["out_proj.bias"] = jax["output_proj.bias"]
        return out

    return LayerPlan(pieces, export, {}, {})


def _eqx_lstm(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    _need(tl, "weight_ih", "weight_hh")
    pieces = [
        Piece("weight_ih", ("weight_ih",), "as is", _copy),
        Piece("weight_hh", ("weight_hh",), "as is", _copy),
    ]
    has_bias = "bias_ih" in tl.tensors and "bias_hh" in tl.tensors
    if has_bias and "bias" in jl.leaves:
        pieces.append(Piece("bias", ("bias_ih", "bias_hh"), "bias_ih + bias_hh", _sum2))

    def export(jax: Mapping[str, np.ndarray], torch: Mapping[str, np.ndarray]) -> dict:
        out = {"weight_ih": jax["weight_ih"], "weight_hh": jax["weight_hh"]}
        if has_bias and "bias" in jax:
            out["bias_ih"] = jax["bias"]
            out["bias_hh"] = np.zeros_like(torch["bias_hh"])
        return out

    return LayerPlan(pieces, export, {}, {})


def _eqx_gru(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    _need(tl, "weight_ih", "weight_hh")
    pieces = [
        Piece("weight_ih", ("weight_ih",), "as is", _copy),
        Piece("weight_hh", ("weight_hh",), "as is", _copy),
    ]
    has_bias = "bias_ih" in tl.tensors and "bias_hh" in tl.tensors
    if has_bias and "bias" in jl.leaves:
        pieces.append(
            Piece(
                "bias",
                ("bias_ih", "bias_hh"),
                "(b_ir + b_hr, b_iz + b_hz, b_in)",
                _gru_bias,
            )
        )
    if has_bias and "bias_n" in jl.leaves:
        pieces.append(Piece("bias_n", ("bias_hh",), "b_hn", lambda a: _gates(a[0], 3)[2]))

    def export(jax: Mapping[str, np.ndarray], torch: Mapping[str, np.ndarray]) -> dict:
        out = {"weight_ih": jax["weight_ih"], "weight_hh": jax["weight_hh"]}
        if has_bias and "bias" in jax:
            out["bias_ih"] = jax["bias"]
            hh = np.zeros_like(torch["bias_hh"])
            if "bias_n" in jax:
                h = len(hh) // 3
                hh[2 * h :] = jax["bias_n"]
            out["bias_hh"] = hh
        return out

    return LayerPlan(pieces, export, {}, {})


# -------------------------------------------------------------------------------- leaf names


def generic_leaf_rule(
    name: str, ndim: int
) -> tuple[str, str, Callable[[Arrays], np.ndarray], Callable[..., np.ndarray]]:
    """The torch tensor, rule text, load and export functions for a leaf known only by name.

    Args:
      name: the leaf's last path component (``"kernel"``, ``"scale"``, ...).
      ndim: the JAX leaf's number of dimensions (tells a Linear kernel from a conv kernel).

    Returns:
      ``(torch_name, rule, load, export)``.
    """
    if name == "kernel":
        if ndim == 2:
            return "weight", "weight.T", _t, _back_t
        perm = _conv_perm(ndim)
        inv = tuple(int(i) for i in np.argsort(perm))
        return (
            "weight",
            f"weight.permute{perm}",
            lambda a: a[0].transpose(perm),
            lambda k, like: k.transpose(inv),
        )
    if name in ("scale", "embedding"):
        return "weight", "weight", _copy, _same
    if name in ("mean", "var"):
        return f"running_{name}", f"running_{name}", _copy, _same
    return name, "as is", _copy, _same


def _generic(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    mapping = []
    for rel, leaf in jl.leaves.items():
        if "." in rel:
            raise Incompatible(f"`{jl.path}` nests leaves under `{rel}`")
        tname, rule, load, back = generic_leaf_rule(rel, len(leaf.shape))
        if rel == "bias" and "bias" in tl.tensors and len(leaf.shape) != 1:
            shape = leaf.shape
            rule, load = f"bias.reshape{shape}", partial(_then_reshape, _copy, shape)
        mapping.append((rel, tname, rule, load, back))
    return _simple(jl, tl, mapping, dropped=_bn_dropped(tl))


GENERIC = RuleSpec("by leaf name", "", (), _generic, False)

_LINEAR = ("Linear", "NonDynamicallyQuantizableLinear", "LazyLinear")
_CONV = ("Conv1d", "Conv2d", "Conv3d", "LazyConv1d", "LazyConv2d", "LazyConv3d")
_CONVT = ("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")
_BN = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "BatchNorm")
_LSTM = ("LSTM", "LSTMCell")
_GRU = ("GRU", "GRUCell")

_TABLE: dict[type, RuleSpec] | None = None


def _table() -> dict[type, RuleSpec]:
    global _TABLE
    if _TABLE is not None:
        return _TABLE
    table: dict[type, RuleSpec] = {}
    nnx = _nnx_loaded()
    if nnx is not None:
        table.update(
            {
                nnx.Linear: RuleSpec("nnx.Linear", "Linear", _LINEAR, _nnx_linear, True),
                nnx.Conv: RuleSpec("nnx.Conv", "Conv", _CONV, _nnx_conv, True),
                nnx.ConvTranspose: RuleSpec(
                    "nnx.ConvTranspose", "ConvTranspose", _CONVT, _nnx_conv_transpose, True
                ),
                nnx.Embed: RuleSpec("nnx.Embed", "Embedding", ("Embedding",), _nnx_embed, True),
                nnx.LayerNorm: RuleSpec(
                    "nnx.LayerNorm", "LayerNorm", ("LayerNorm",), _nnx_norm, True
                ),
                nnx.GroupNorm: RuleSpec(
                    "nnx.GroupNorm", "GroupNorm", ("GroupNorm",), _nnx_norm, True
                ),
                nnx.RMSNorm: RuleSpec("nnx.RMSNorm", "RMSNorm", ("RMSNorm",), _nnx_norm, True),
                nnx.BatchNorm: RuleSpec("nnx.BatchNorm", "BatchNorm", _BN, _nnx_batchnorm, True),
                nnx.MultiHeadAttention: RuleSpec(
                    "nnx.MultiHeadAttention",
                    "MultiheadAttention",
                    ("MultiheadAttention",),
                    _nnx_mha,
                    True,
                ),
                nnx.LSTMCell: RuleSpec("nnx.LSTMCell", "LSTM", _LSTM, _nnx_lstm, True),
                nnx.OptimizedLSTMCell: RuleSpec(
                    "nnx.OptimizedLSTMCell", "LSTM", _LSTM, _nnx_optimized_lstm, True
                ),
                nnx.GRUCell: RuleSpec("nnx.GRUCell", "GRU", _GRU, _nnx_gru, True),
            }
        )
    eqx = _eqx_loaded()
    if eqx is not None:
        n = eqx.nn
        table.update(
            {
                n.Linear: RuleSpec(
                    "eqx.nn.Linear",
                    "Linear",
                    _LINEAR,
                    _eqx_as_is(("weight", "weight"), ("bias", "bias")),
                    True,
                ),
                n.Conv: RuleSpec("eqx.nn.Conv", "Conv", _CONV, _eqx_conv, True),
                n.ConvTranspose: RuleSpec(
                    "eqx.nn.ConvTranspose", "ConvTranspose", _CONVT, _eqx_conv_transpose, True
                ),
                n.Embedding: RuleSpec(
                    "eqx.nn.Embedding",
                    "Embedding",
                    ("Embedding",),
                    _eqx_as_is(("weight", "weight")),
                    True,
                ),
                n.BatchNorm: RuleSpec("eqx.nn.BatchNorm", "BatchNorm", _BN, _eqx_batchnorm, True),
                n.MultiheadAttention: RuleSpec(
                    "eqx.nn.MultiheadAttention",
                    "MultiheadAttention",
                    ("MultiheadAttention",),
                    _eqx_mha,
                    True,
                ),
                n.LSTMCell: RuleSpec("eqx.nn.LSTMCell", "LSTM", _LSTM, _eqx_lstm, True),
                n.GRUCell: RuleSpec("eqx.nn.GRUCell", "GRU", _GRU, _eqx_gru, True),
            }
        )
        for cls, kind in ((n.LayerNorm, "LayerNorm"), (n.GroupNorm, "GroupNorm")):
            table[cls] = RuleSpec(
                f"eqx.nn.{kind}",
                kind,
                (kind,),
                _eqx_as_is(("weight", "weight"), ("bias", "bias")),
                True,
            )
        if hasattr(n, "RMSNorm"):
            table[n.RMSNorm] = RuleSpec(
                "eqx.nn.RMSNorm",
                "RMSNorm",
                ("RMSNorm",),
                _eqx_as_is(("weight", "weight"), ("bias", "bias")),
                True,
            )
    if nnx is not None and eqx is not None:
        _TABLE = table  # both frameworks seen: the table is final
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


def is_any_rule(obj: Any) -> bool:  # pragma: no cover - kept for symmetry with is_atomic
    return rule_for(obj) is not None


def layer_kind(spec: RuleSpec, tl: TorchLayer) -> str:
    """The reported kind: torch's class when known, else one inferred from the tensors."""
    if tl.known_kind or not spec.kind:
        return tl.kind
    if spec.kind in ("Conv", "ConvTranspose", "BatchNorm") and "weight" in tl.tensors:
        nd = tl.tensors["weight"].ndim
        return f"{spec.kind}{nd - 2}d" if spec.kind != "BatchNorm" else "BatchNorm"
    return spec.kind


_ = (_nnx_loaded, _eqx_loaded)  # re-exported helpers used by the table
