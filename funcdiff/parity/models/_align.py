"""Aligning a torch module tree with a JAX model tree: which torch layer feeds which JAX layer.

Two sources, tried in this order:

1. ``rules``: ``(torch_name_regex, jax_path_template)`` pairs, tried in order, first match wins.
   The regex is matched in full (``re.fullmatch``) against each torch *layer* name
   (``"encoder.layers.0.linear1"``), and, where no rule matches the layer, against its tensor
   names (``"encoder.layers.0.linear1.weight"``). The template is expanded with the match's
   groups (``r"blocks.\\1.mlp.fc1"``) and names a JAX layer (or a leaf, whose layer is then
   used). A template of ``None`` leaves that torch layer (or tensor) out on purpose.
2. Same names: a JAX layer whose path equals a torch layer's name (``layer1.0.conv1`` on both
   sides; an ``nnx.RNN``'s ``lstm.cell`` counts as ``lstm``, a ``Sequential``'s
   ``downsample.layers.0`` as ``downsample.0``) takes it when the kind is compatible and the
   shapes fit.
3. Order: the remaining JAX layers, in definition order, each take the first remaining torch
   layer (in definition order) of a compatible kind whose tensors, after the layout rule, have
   exactly the JAX leaves' shapes. Layers of a compatible kind left over on both sides are then
   paired in order and reported as shape mismatches.

Order alignment cannot tell apart two layers of the same kind and shape defined in a different
order on the two sides; the alignment is in the record (``WeightMapping.layers``) for that reason,
and ``rules`` fix it. Note that an NNX module rebuilt by ``nnx.merge`` or ``nnx.eval_shape``
lists its attributes alphabetically, not in definition order (flax sorts its graph state), so
for such a module "definition order" is alphabetical order.

Examples:
  >>> from funcdiff.parity.models._align import torch_layers
  >>> import numpy as np
  >>> [t.name for t in torch_layers({"fc.weight": np.zeros((2, 3)), "fc.bias": np.zeros(2)})]
  ['fc']
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from funcdiff.parity.models._frameworks import JaxLayer
from funcdiff.parity.models._layout_base import (
    Incompatible,
    LayerPlan,
    RuleSpec,
    TorchLayer,
    generic_leaf_rule,
)
from funcdiff.parity.models._layouts import spec_for

__all__ = ["Alignment", "Pair", "align", "check_rules", "torch_layers"]

_ATOMIC_TORCH = ("MultiheadAttention",)
_RNN = ("LSTM", "GRU", "RNN")
_RNN_SUFFIX = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$")


def _to_numpy(t: Any) -> np.ndarray:
    if isinstance(t, np.ndarray):
        return t
    if hasattr(t, "detach"):  # a torch tensor
        t = t.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if str(t.dtype) == "torch.bfloat16":  # NumPy has no bfloat16
            t = t.float()
        return t.numpy()
    return np.asarray(t)


def _split_rnn(
    name: str, kind: str, tensors: dict[str, Any], known: bool, module: Any
) -> list[TorchLayer]:
    """One TorchLayer per (layer, direction) of an nn.LSTM / nn.GRU."""
    groups: dict[str, TorchLayer] = {}
    for rel, t in tensors.items():
        m = _RNN_SUFFIX.match(rel)
        sub = f"l{m.group(2)}{m.group(3) or ''}" if m else ""
        base = m.group(1) if m else rel
        full = f"{name}.{rel}" if name else rel
        if sub not in groups:
            groups[sub] = TorchLayer(sub, kind, {}, {}, module, known)
        groups[sub].tensors[base] = _to_numpy(t)
        groups[sub].names[base] = full
    single = len(groups) == 1
    return [
        g._replace(name=name if single else (f"{name}.{sub}" if name else sub))
        for sub, g in groups.items()
    ]


def _infer_kind(tensors: Mapping[str, Any]) -> str:
    names = set(tensors)
    if "in_proj_weight" in names or "q_proj_weight" in names:
        return "MultiheadAttention"
    if any(_RNN_SUFFIX.match(n) for n in names) or {"weight_ih", "weight_hh"} <= names:
        hh = next(v for k, v in tensors.items() if k.startswith("weight_hh"))
        gates = np.shape(hh)[0] // max(np.shape(hh)[1], 1)
        base = {4: "LSTM", 3: "GRU"}.get(gates, "RNN")
        return base if any(_RNN_SUFFIX.match(n) for n in names) else base + "Cell"
    if "running_mean" in names:
        return "BatchNorm"
    w = tensors.get("weight")
    if w is not None:
        nd = len(np.shape(w))
        return {1: "Norm", 2: "Linear"}.get(nd, f"Conv{nd - 2}d")
    return "?"


def torch_layers(torch_source: Any) -> tuple[TorchLayer, ...]:
    """The layers of a torch module or state_dict, in definition (state_dict) order.

    A layer is the module that owns a tensor directly, except that a ``MultiheadAttention``
    owns its ``out_proj`` too, and an ``nn.LSTM``/``nn.GRU`` with several layers or directions
    is split into one layer per (layer, direction): ``lstm.l0``, ``lstm.l1``,
    ``lstm.l0_reverse``. For a state_dict the owner is the name up to the last dot and the kind
    is inferred from the tensor names.

    Args:
      torch_source: an ``nn.Module`` or a mapping of names to tensors (a state_dict).

    Returns:
      The :class:`TorchLayer` tuple.

    Raises:
      TypeError: ``torch_source`` is neither.
    """
    module_map: dict[str, Any] = {}
    if isinstance(torch_source, Mapping):
        state = dict(torch_source)
        bad = [k for k, v in state.items() if not hasattr(v, "shape")]
        if bad or any(not isinstance(k, str) for k in state):
            raise TypeError(
                "Expected `torch_source` to be an nn.Module or a state_dict of tensors, got a "
                f"mapping with non-tensor entries {bad[:3]}."
            )
    elif hasattr(torch_source, "state_dict") and hasattr(torch_source, "named_modules"):
        state = torch_source.state_dict()
        module_map = dict(torch_source.named_modules(remove_duplicate=False))
    else:
        raise TypeError(
            "Expected `torch_source` to be a torch.nn.Module or a state_dict, got "
            f"{type(torch_source).__name__}."
        )
    owners: dict[str, dict[str, Any]] = {}
    for full, t in state.items():
        owner, _, rel = full.rpartition(".")
        if module_map:
            parts = owner.split(".") if owner else []
            for i in range(len(parts)):  # an atomic ancestor owns the subtree
                anc = ".".join(parts[:i])
                if type(module_map.get(anc)).__name__ in _ATOMIC_TORCH:
                    owner, rel = anc, full[len(anc) + 1 :] if anc else full
                    break
        elif owner.endswith("out_proj") and any(
            k.startswith(owner[: -len("out_proj")] + p)
            for k in state
            for p in ("in_proj_weight", "q_proj_weight")
        ):
            owner, rel = owner[: -len(".out_proj")], full[len(owner) - len("out_proj") :]
        owners.setdefault(owner, {})[rel] = t
    layers: list[TorchLayer] = []
    for owner, tensors in owners.items():
        if module_map:
            mod = module_map.get(owner)
            # a TorchScript module keeps its Python class name in `original_name`
            kind, known = getattr(mod, "original_name", type(mod).__name__), True
        else:
            mod, kind, known = None, _infer_kind(tensors), False
        if kind in _RNN or any(_RNN_SUFFIX.match(r) for r in tensors):
            layers.extend(_split_rnn(owner, kind, tensors, known, mod))
            continue
        layers.append(
            TorchLayer(
                owner,
                kind,
                {r: _to_numpy(t) for r, t in tensors.items()},
                {r: f"{owner}.{r}" if owner else r for r in tensors},
                mod,
                known,
            )
        )
    return tuple(layers)


class Pair(NamedTuple):
    """One aligned layer pair.

    Attributes:
      torch: the torch layer.
      jax: the JAX layer.
      spec: the layout rule.
      plan: the rule applied (None when a rule-named pair cannot be loaded at all).
      how: ``"rule"`` (named by ``rules``), ``"name"`` (same name) or ``"order"``.
      problems: shape mismatches and other reasons the pair does not load.
    """

    torch: TorchLayer
    jax: JaxLayer
    spec: RuleSpec
    plan: LayerPlan | None
    how: str
    problems: tuple[str, ...]


class Alignment(NamedTuple):
    """The pairs, the torch tensors left out by ``rules``, notes, and ``rules`` errors."""

    pairs: list[Pair]
    ignored: list[tuple[str, str]]  # (torch tensor name, why)
    notes: list[str]
    errors: list[str]  # a rule naming a JAX path that does not exist


def _rename_for_leaves(
    tl: TorchLayer, jl: JaxLayer, rules: list[tuple[re.Pattern[str], str | None]]
) -> TorchLayer:
    r"""Renames torch tensors that a rule maps onto a JAX leaf to the name that leaf expects.

    For JAX layers without a built-in rule (custom modules, pytrees), so that
    ``(r"proj\.weight", "head.w")`` loads ``proj.weight`` into the leaf ``head.w`` as is.
    """
    by_path = {leaf.path: rel for rel, leaf in jl.leaves.items()}
    ren: dict[str, str] = {}
    for r, n in tl.names.items():
        for rx, tmpl in rules:
            m = rx.fullmatch(n)
            if m is not None:
                rel = by_path.get(m.expand(tmpl)) if tmpl is not None else None
                if rel is not None:
                    leaf = jl.leaves[rel]
                    ren[r] = generic_leaf_rule(rel.rsplit(".", 1)[-1], len(leaf.shape))[0]
                break
    if not ren:
        return tl
    return tl._replace(
        tensors={ren.get(r, r): t for r, t in tl.tensors.items()},
        names={ren.get(r, r): n for r, n in tl.names.items()},
    )


def _name_variants(path: str) -> list[str]:
    """The torch names a JAX layer path may correspond to: itself, without an ``nnx.RNN``'s
    ``.cell``, without a ``Sequential``'s ``.layers`` (``downsample.layers.0`` ~ ``downsample.0``).
    """
    out = [path]
    if path.endswith(".cell"):
        out.append(path[: -len(".cell")])
    for p in list(out):
        parts = p.split(".")
        if "layers" in parts[:-1]:
            out.append(
                ".".join(
                    x
                    for i, x in enumerate(parts)
                    if not (x == "layers" and i + 1 < len(parts) and parts[i + 1].isdigit())
                )
            )
    return out


def check_rules(rules: Any) -> list[tuple[re.Pattern[str], str | None]]:
    """Validates ``rules`` and compiles the regexes."""
    if rules is None:
        return []
    if isinstance(rules, Mapping):
        rules = list(rules.items())
    if isinstance(rules, str | bytes) or not isinstance(rules, Sequence):
        raise TypeError(
            "Expected `rules` to be a list of (torch_name_regex, jax_path_template) pairs, "
            f"got {type(rules).__name__}."
        )
    out = []
    for i, r in enumerate(rules):
        if (
            not isinstance(r, tuple | list)
            or len(r) != 2
            or not isinstance(r[0], str)
            or not (r[1] is None or isinstance(r[1], str))
        ):
            raise TypeError(
                f"Expected `rules[{i}]` to be a (torch_name_regex, jax_path_template) pair of "
                f"strings, got {r!r}."
            )
        try:
            out.append((re.compile(r[0]), r[1]))
        except re.error as e:
            raise ValueError(f"`rules[{i}]`: {r[0]!r} is not a valid regex ({e}).") from None
    return out


def _shape_problems(jl: JaxLayer, tl: TorchLayer, plan: LayerPlan) -> list[str]:
    out = []
    for p in plan.pieces:
        leaf = jl.leaves[p.jax]
        try:
            got = tuple(p.load([tl.tensors[t] for t in p.torch]).shape)
        except (ValueError, IndexError) as e:
            got = None
            reason = str(e)
        if got != leaf.shape:
            src = ", ".join(tl.names[t] for t in p.torch)
            shapes = ", ".join(str(tuple(tl.tensors[t].shape)) for t in p.torch)
            detail = f"gives {got}" if got is not None else f"does not apply ({reason})"
            out.append(
                f"shape mismatch: `{src}` {shapes} by rule `{p.rule}` {detail}, but the JAX "
                f"leaf `{leaf.path}` is {leaf.shape}"
            )
    return out


def _try(jl: JaxLayer, tl: TorchLayer, spec: RuleSpec) -> tuple[LayerPlan | None, list[str]]:
    """(plan, problems): plan None with problems = [] means incompatible."""
    if spec.torch_kinds and not tl.is_kind(spec.torch_kinds):
        return None, []
    try:
        plan = spec.plan(jl, tl)
    except Incompatible:
        return None, []
    used = {t for p in plan.pieces for t in p.torch} | set(plan.dropped)
    if not plan.pieces or (not spec.torch_kinds and not used >= set(tl.tensors)):
        return None, []  # the leaf-name rule must use every tensor of the layer
    # tensors left over by a typed rule (a bias on the torch side only) are reported unmatched
    return plan, _shape_problems(jl, tl, plan)


def _fits(jl: JaxLayer, tl: TorchLayer, spec: RuleSpec) -> bool:
    plan, problems = _try(jl, tl, spec)
    return plan is not None and not problems


def align(
    jax_layers: Sequence[JaxLayer],
    tlayers: Sequence[TorchLayer],
    rules: list[tuple[re.Pattern[str], str | None]],
) -> Alignment:
    """Pairs torch layers with JAX layers: by ``rules``, then by order (see the module doc)."""
    by_path = {jl.path: jl for jl in jax_layers}
    leaf_owner = {leaf.path: jl for jl in jax_layers for leaf in jl.leaves.values()}
    pairs: list[Pair] = []
    ignored: list[tuple[str, str]] = []
    notes: list[str] = []
    errors: list[str] = []
    used_rules: set[int] = set()
    taken_jax: set[str] = set()
    free_torch: list[TorchLayer] = []

    def target(path: str, rule_i: int, src: str) -> JaxLayer | None:
        jl = by_path.get(path) or leaf_owner.get(path)
        if jl is None:
            import difflib

            close = difflib.get_close_matches(path, [*by_path, *leaf_owner], n=1)
            hint = f" (closest: `{close[0]}`)" if close else ""
            errors.append(
                f"rules[{rule_i}] maps `{src}` to `{path}`, which is not a layer or leaf of the "
                f"JAX model{hint}"
            )
        return jl

    for tl in tlayers:
        named = None
        for i, (rx, tmpl) in enumerate(rules):
            m = rx.fullmatch(tl.name)
            if m is None:
                m = next(
                    (mm for n in tl.names.values() if (mm := rx.fullmatch(n)) is not None), None
                )
            if m is None:
                continue
            used_rules.add(i)
            if tmpl is None:
                named = "ignore"
                whole = rx.fullmatch(tl.name) is not None
                drop = {r for r, n in tl.names.items() if whole or rx.fullmatch(n)}
                ignored.extend((tl.names[r], f"left out by rules[{i}]") for r in drop)
                keep = {r: t for r, t in tl.tensors.items() if r not in drop}
                if keep:
                    free_torch.append(
                        tl._replace(tensors=keep, names={r: tl.names[r] for r in keep})
                    )
                break
            jl = target(m.expand(tmpl), i, m.group(0))
            if jl is None:
                named = "missing"
                free_torch.append(tl)
                break
            named = "paired"
            spec = spec_for(jl)
            if not spec.torch_kinds:  # leaf-name rule: tensor-level rules name the leaves
                tl = _rename_for_leaves(tl, jl, rules)
            plan, problems = _try(jl, tl, spec)
            if plan is None:
                problems = [
                    f"rules[{i}] pairs torch `{tl.name}` ({tl.kind}) with JAX `{jl.path}` "
                    f"({jl.type_name}), which rule `{spec.name}` cannot load"
                ]
            if jl.path in taken_jax:
                problems = [*problems, f"JAX layer `{jl.path}` is named by more than one rule"]
            taken_jax.add(jl.path)
            pairs.append(Pair(tl, jl, spec, plan, "rule", tuple(problems)))
            break
        if named is None:
            free_torch.append(tl)
    for i, (rx, _) in enumerate(rules):
        if i not in used_rules:
            notes.append(f"rules[{i}] ({rx.pattern!r}) matched no torch layer or tensor")

    free_jax = [jl for jl in jax_layers if jl.path not in taken_jax]
    # same names on both sides (the usual port keeps torch's attribute names): pair those first
    by_name = {tl.name: tl for tl in free_torch}
    for jl in list(free_jax):
        same = next((by_name[n] for n in _name_variants(jl.path) if n in by_name), None)
        if same is None or same not in free_torch:
            continue
        spec = spec_for(jl)
        plan, problems = _try(jl, same, spec)
        if plan is not None and not problems:
            pairs.append(Pair(same, jl, spec, plan, "name", ()))
            free_torch.remove(same)
            free_jax.remove(jl)
    deferred: list[JaxLayer] = []
    ambiguous: list[str] = []
    for jl in free_jax:
        spec = spec_for(jl)
        for k, tl in enumerate(free_torch):
            plan, problems = _try(jl, tl, spec)
            if plan is not None and not problems:
                pairs.append(Pair(tl, jl, spec, plan, "order", ()))
                if any(_fits(jl, other, spec) for other in free_torch[k + 1 :]):
                    ambiguous.append(f"{tl.name or '<root>'} -> {jl.path or '<root>'}")
                free_torch.remove(tl)
                break
        else:
            deferred.append(jl)
    if ambiguous:
        notes.append(
            f"{len(ambiguous)} layers were paired by definition order among several of the same "
            f"kind and shapes ({', '.join(ambiguous[:4])}{', ...' if len(ambiguous) > 4 else ''}"
            "); if the two models define them in different orders, name the pairs with `rules`"
        )
    for jl in deferred:  # same kind, wrong shapes: report as mismatches, in order
        spec = spec_for(jl)
        if not spec.torch_kinds:
            continue
        for tl in free_torch:
            if not tl.is_kind(spec.torch_kinds):
                continue
            plan, problems = _try(jl, tl, spec)
            if plan is not None:
                pairs.append(Pair(tl, jl, spec, plan, "order", tuple(problems)))
                free_torch.remove(tl)
                break
    order = {tl.name: i for i, tl in enumerate(tlayers)}
    pairs.sort(key=lambda p: order.get(p.torch.name, len(order)))
    return Alignment(pairs, ignored, notes, errors)
