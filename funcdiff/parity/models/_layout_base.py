"""The pieces every layout rule is built from: torch layers, plans, and shared transforms.

A rule (see :mod:`._layouts` for the table) turns one torch layer into a :class:`LayerPlan`:
one :class:`Piece` per JAX leaf (which torch tensors, the layout in words, the function) and
the inverse for export. The leaf-name rule for pytrees and unknown module types lives here too.

Examples:
  >>> generic_leaf_rule("kernel", 2)[:2]
  ('weight', 'weight.T')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from funcdiff.parity.models._frameworks import JaxLayer

__all__ = [
    "GENERIC",
    "Arrays",
    "Incompatible",
    "LayerPlan",
    "NotRepresentable",
    "Piece",
    "RuleSpec",
    "TorchLayer",
    "as_is",
    "back_transpose",
    "bn_dropped",
    "chunk",
    "chunk_sum",
    "chunk_t",
    "conv_perm",
    "gates",
    "generic_leaf_rule",
    "generic_plan",
    "gru_bias",
    "mha_export",
    "mha_parts",
    "need",
    "one_to_one",
    "same_shape",
    "sum2",
    "then_reshape",
    "then_t_reshape",
    "transpose",
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

    A rule accepts a torch layer when its class or any base class is among the rule's torch
    kinds (:meth:`is_kind`).
    """

    name: str
    kind: str
    tensors: dict[str, np.ndarray]
    names: dict[str, str]
    module: Any
    known_kind: bool

    def kinds(self) -> tuple[str, ...]:
        """The class names of the module and its bases (a subclass of ``nn.Linear`` is a
        ``Linear`` too), or just ``kind`` for a state_dict."""
        if self.module is None:
            return (self.kind,)
        mro = tuple(c.__name__ for c in type(self.module).__mro__)
        return (self.kind, *mro)

    def is_kind(self, kinds: tuple[str, ...]) -> bool:
        """Whether the layer is one of ``kinds`` (always, when its kind is inferred)."""
        return not self.known_kind or bool(set(self.kinds()) & set(kinds))


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
      export: ``(jax, torch, grad)``: JAX leaves (relative paths) -> torch tensors (relative
        names), the inverse of the pieces; ``torch`` gives the current tensors (shapes, dtypes,
        values kept). With ``grad=True`` it maps gradients instead (the adjoint): where two torch
        biases were summed, each gets the JAX bias's gradient; a GRU's b_hn that nnx.GRUCell
        lacks has none, so ``bias_hh`` is left out.
      extras: JAX leaves set without a torch tensor: relative path -> (value, why).
      dropped: torch tensors deliberately not loaded: relative name -> why.
      checks: run before loading (not before exporting, where torch's values are replaced);
        each raises :class:`NotRepresentable` when torch's values cannot be ported.
    """

    pieces: list[Piece]
    export: Callable[..., dict[str, np.ndarray]]
    extras: dict[str, tuple[np.ndarray, str]]
    dropped: dict[str, str]
    checks: tuple[Callable[[], None], ...] = ()


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


def need(tl: TorchLayer, *names: str) -> None:
    missing = [n for n in names if n not in tl.tensors]
    if missing:
        raise Incompatible(f"torch layer `{tl.name}` has no {', '.join(missing)}")


def as_is(a: Arrays) -> np.ndarray:
    return a[0]


def transpose(a: Arrays) -> np.ndarray:
    return a[0].T


def one_to_one(
    jl: JaxLayer,
    tl: TorchLayer,
    mapping: Sequence[tuple[str, str, str, Callable[[Arrays], np.ndarray], Callable[..., Any]]],
    *,
    dropped: Mapping[str, str] | None = None,
) -> LayerPlan:
    """One JAX leaf per torch tensor: (jax, torch, rule, load, export(jax_array, torch_like))."""
    pieces: list[Piece] = []
    inverse: dict[str, tuple[str, Callable[..., Any]]] = {}
    for jname, tname, rule, load, back in mapping:
        if jname not in jl.leaves:
            continue  # e.g. use_bias=False: a torch bias left over is reported unmatched
        if tname not in tl.tensors and tl.known_kind and pieces:
            continue  # torch built without it (bias=False): the JAX leaf is reported unmatched
        need(tl, tname)
        pieces.append(Piece(jname, (tname,), rule, load))
        inverse[jname] = (tname, back)

    def export(
        jax: Mapping[str, np.ndarray], torch: Mapping[str, np.ndarray], grad: bool = False
    ) -> dict:
        return {t: back(jax[j], torch[t]) for j, (t, back) in inverse.items() if j in jax}

    return LayerPlan(pieces, export, {}, dict(dropped or {}))


def same_shape(a: np.ndarray, like: np.ndarray) -> np.ndarray:
    return a.reshape(like.shape)


def back_transpose(a: np.ndarray, like: np.ndarray) -> np.ndarray:
    return a.T


def conv_perm(ndim: int) -> tuple[int, ...]:
    return (*range(2, ndim), 1, 0)


def bn_dropped(tl: TorchLayer) -> dict[str, str]:
    if "num_batches_tracked" in tl.tensors:
        return {"num_batches_tracked": "no JAX counterpart; export keeps torch's value"}
    return {}


def gates(a: np.ndarray, n: int) -> list[np.ndarray]:
    return np.split(a, n, axis=0)


def chunk(a: Arrays, *, n: int, i: int) -> np.ndarray:
    return gates(a[0], n)[i]


def chunk_t(a: Arrays, *, n: int, i: int) -> np.ndarray:
    return gates(a[0], n)[i].T


def chunk_sum(a: Arrays, *, n: int, i: int) -> np.ndarray:
    return gates(a[0], n)[i] + gates(a[1], n)[i]


def then_reshape(
    sl: Callable[[Arrays], np.ndarray], shape: tuple[int, ...], a: Arrays
) -> np.ndarray:
    return sl(a).reshape(shape)


def then_t_reshape(
    sl: Callable[[Arrays], np.ndarray], shape: tuple[int, ...], a: Arrays
) -> np.ndarray:
    return sl(a).T.reshape(shape)


def sum2(a: Arrays) -> np.ndarray:
    return a[0] + a[1]


def gru_bias(a: Arrays) -> np.ndarray:
    """(b_ir + b_hr, b_iz + b_hz, b_in) from (bias_ih, bias_hh)."""
    (ir, iz, in_), (hr, hz, _) = gates(a[0], 3), gates(a[1], 3)
    return np.concatenate([ir + hr, iz + hz, in_])


def mha_parts(
    tl: TorchLayer,
) -> dict[str, tuple[str, Callable[[Arrays], np.ndarray], str]]:
    """Torch MHA tensors -> per projection (source name, slice, label) for q, k, v."""
    if "bias_k" in tl.tensors or "bias_v" in tl.tensors:
        raise NotRepresentable(
            f"torch MultiheadAttention `{tl.name}` has add_bias_kv=True (bias_k, bias_v), which "
            "neither nnx.MultiHeadAttention nor eqx.nn.MultiheadAttention represents; port it "
            "with a custom attention module."
        )
    out: dict[str, tuple[str, Callable[[Arrays], np.ndarray], str]] = {}
    for i, p in enumerate("qkv"):
        if f"{p}_proj_weight" in tl.tensors:
            out[f"{p}.w"] = (f"{p}_proj_weight", as_is, f"{p}_proj_weight")
        else:
            need(tl, "in_proj_weight")
            out[f"{p}.w"] = ("in_proj_weight", partial(chunk, n=3, i=i), f"in_proj_weight[{p}]")
        if "in_proj_bias" in tl.tensors:
            out[f"{p}.b"] = ("in_proj_bias", partial(chunk, n=3, i=i), f"in_proj_bias[{p}]")
    return out


def mha_export(
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
            return "weight", "weight.T", transpose, back_transpose
        perm = conv_perm(ndim)
        inv = tuple(int(i) for i in np.argsort(perm))
        return (
            "weight",
            f"weight.permute{perm}",
            lambda a: a[0].transpose(perm),
            lambda k, like: k.transpose(inv),
        )
    if name in ("scale", "embedding"):
        return "weight", "weight", as_is, same_shape
    if name in ("mean", "var"):
        return f"running_{name}", f"running_{name}", as_is, same_shape
    return name, "as is", as_is, same_shape


def generic_plan(jl: JaxLayer, tl: TorchLayer) -> LayerPlan:
    mapping = []
    for rel, leaf in jl.leaves.items():
        if "." in rel:
            raise Incompatible(f"`{jl.path}` nests leaves under `{rel}`")
        tname, rule, load, back = generic_leaf_rule(rel, len(leaf.shape))
        if rel == "bias" and "bias" in tl.tensors and len(leaf.shape) != 1:
            shape = leaf.shape
            rule, load = f"bias.reshape{shape}", partial(then_reshape, as_is, shape)
        mapping.append((rel, tname, rule, load, back))
    return one_to_one(jl, tl, mapping, dropped=bn_dropped(tl))


GENERIC = RuleSpec("by leaf name", "", (), generic_plan, False)
