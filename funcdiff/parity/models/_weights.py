"""PyTorch weights into Flax NNX / Equinox / pytree models, and back: ``load_torch_weights``.

The data path: boundary checks -> the two trees enumerated (:mod:`._frameworks`,
:func:`._align.torch_layers`) -> layers aligned (:mod:`._align`) -> each pair's layout rule
applied (:mod:`._layouts`) -> one record, :class:`WeightMapping`.

Decisions where the issue is silent:

- **dtype.** A loaded leaf takes the JAX template's dtype, with one exception: when the torch
  tensor is float64, the template leaf is float32 and x64 is on (``funcdiff.scoped(x64=True)``),
  the leaf becomes float64, so ``load_torch_weights(model, torch_model.double())`` under x64
  gives a model that computes in float64 like its twin. A float64 tensor cast to float32 (x64
  off) is said in ``notes``. Integer/bool leaves keep their dtype, and so does Equinox state
  (``eqx.nn.State.set`` refuses a new dtype; build the model under x64 for float64 statistics).
  Modules that make arrays from their ``param_dtype`` (an RNN's initial carry) need
  ``param_dtype=float64`` as well for a float64 run.
- **Copies.** Loaded arrays are copies: later in-place changes to the torch model (an optimizer
  step) do not leak into the JAX model.
- **strict.** With ``strict=True`` nothing is changed (not even an NNX model) unless every
  leaf on both sides is accounted for; the one ``ValueError`` lists every problem.
- **Two biases, one slot.** Loading sums them; export writes the sum into ``bias_ih`` and zeros
  into ``bias_hh``, so JAX -> torch -> JAX is bit-exact (torch -> JAX -> torch is exact up to
  the float rounding of the sum).
- **num_batches_tracked** is dropped on load (listed in ``dropped``) and kept at torch's current
  value on export.
- **Tied weights.** A torch tensor that shares storage with one already loaded (a head tied to
  an embedding, a module registered twice) is listed in ``dropped`` as tied, not as unmatched;
  export copies it from its source. An NNX module or variable shared under two paths is one
  leaf, under its first path (as ``nnx.state`` lists it).
- **Abstract templates** (``nnx.eval_shape``, ``eqx.filter_eval_shape``, ``ShapeDtypeStruct``
  pytrees) are filled without running any initialiser.
- **Torch names for JAX values.** ``WeightMapping.to_torch`` puts JAX values or gradients into
  torch's names and layouts through the same alignment (gradients by each rule's adjoint), for
  comparing a ported model tensor by tensor after a backward pass or an optimizer step.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from funcdiff._report import table
from funcdiff.parity._torch import require_torch
from funcdiff.parity.models._align import Alignment, Pair, align, check_rules, torch_layers
from funcdiff.parity.models._frameworks import (
    JaxLayer,
    framework_of,
    jax_layers,
    jax_leaves,
    set_leaves,
)
from funcdiff.parity.models._layouts import is_atomic, layer_kind

__all__ = ["WeightMapping", "WeightRow", "export_torch_weights", "load_torch_weights"]


class WeightRow(NamedTuple):
    """One JAX leaf and the torch tensor(s) it was loaded from.

    Attributes:
      torch_name: the state_dict name (two names joined by ``" + "`` where two torch biases
        were summed into one JAX bias).
      jax_path: the JAX leaf's dotted path (``"layers.0.kernel"``).
      rule: the layout applied, in words (``"weight.T"``).
      torch_shape: the torch tensor's shape.
      jax_shape: the JAX leaf's shape.
      torch_layer: the dotted torch module name (``"layer1.0.conv1"``).
      jax_layer: the dotted JAX module path (``"blocks.0.attn"``).
      kind: the layer kind (``"Linear"``, ``"Conv2d"``, ``"MultiheadAttention"``, ``"LSTM"``).

    Examples:
      >>> import torch
      >>> from flax import nnx
      >>> from funcdiff.parity import load_torch_weights
      >>> _ = torch.manual_seed(0)
      >>> tm = torch.nn.Sequential(torch.nn.Linear(3, 2))
      >>> jm = nnx.Sequential(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
      >>> row = load_torch_weights(jm, tm).rows[0]
      >>> row.torch_name, row.jax_path, row.rule, row.torch_shape, row.jax_shape
      ('0.weight', 'layers.0.kernel', 'weight.T', (2, 3), (3, 2))
      >>> row.torch_layer, row.jax_layer, row.kind
      ('0', 'layers.0', 'Linear')
    """

    torch_name: str
    jax_path: str
    rule: str
    torch_shape: tuple[int, ...]
    jax_shape: tuple[int, ...]
    torch_layer: str
    jax_layer: str
    kind: str


_NAME_HINTS = (
    ("kernel", "weight"),
    ("scale", "weight"),
    ("embedding", "weight"),
    (".mean", ".running_mean"),
    (".var", ".running_var"),
)


def _closest(name: str, candidates: Sequence[str], *, to_torch: bool) -> str | None:
    """The candidate closest to ``name`` (difflib), comparing JAX names in torch spelling."""
    if not candidates:
        return None

    def norm(s: str) -> str:
        for a, b in _NAME_HINTS:
            s = s.replace(a, b)
        return s

    keyed = {norm(c) if to_torch else c: c for c in candidates}
    probe = name if to_torch else norm(name)
    best = difflib.get_close_matches(probe, list(keyed), n=1, cutoff=0.0)
    return keyed[best[0]] if best else None


@dataclasses.dataclass(frozen=True)
class WeightMapping:
    """The outcome of :func:`load_torch_weights`.

    Attributes:
      model: the loaded model: the same NNX module (updated in place), a new Equinox module
        (or ``(module, state)`` pair), or a new pytree.
      rows: one :class:`WeightRow` per loaded JAX leaf, in torch definition order.
      unmatched_torch: torch tensor names that were not loaded (and not deliberately dropped).
      unmatched_jax: JAX leaf paths that were not loaded.
      layers: ``(torch_layer, jax_layer, kind)`` per aligned layer pair, in torch order.
      mismatches: aligned leaves whose shapes disagree after the layout rule, in words.
      dropped: ``(torch_name, why)`` for tensors left out on purpose (``num_batches_tracked``,
        ``rules`` entries mapped to None).
      notes: other facts worth knowing (dtype casts, unused rules, flags set without a tensor).
      framework: ``"nnx"``, ``"equinox"`` or ``"pytree"``.
      closest: unmatched name -> the closest name on the other side.
      aligned_by: per entry of ``layers``, how the pair was found: ``"rule"`` (``rules``),
        ``"name"`` (the same name on both sides) or ``"order"`` (definition order, kind and
        shapes).
      hints: unmatched name -> why, where its layer is aligned but the other side has no place
        for it (a bias on one side only).

    Examples:
      >>> import torch
      >>> from flax import nnx
      >>> from funcdiff.parity import load_torch_weights
      >>> _ = torch.manual_seed(0)
      >>> tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
      >>> ln = nnx.LayerNorm(4, epsilon=1e-5, rngs=nnx.Rngs(0))
      >>> jm = nnx.Sequential(nnx.Linear(3, 4, rngs=nnx.Rngs(0)), ln)
      >>> mapping = load_torch_weights(jm, tm)
      >>> mapping.ok, mapping.framework, mapping.unmatched_torch, mapping.unmatched_jax
      (True, 'nnx', (), ())
      >>> mapping.layers
      (('0', 'layers.0', 'Linear'), ('1', 'layers.1', 'LayerNorm'))
      >>> print(mapping)
      weights OK: 4 torch tensors -> 4 JAX leaves (nnx), 2 layers aligned
      torch     torch shape  rule      JAX              JAX shape  kind
      --------  -----------  --------  ---------------  ---------  ---------
      0.weight  (4, 3)       weight.T  layers.0.kernel  (3, 4)     Linear
      0.bias    (4,)         as is     layers.0.bias    (4,)       Linear
      1.weight  (4,)         weight    layers.1.scale   (4,)       LayerNorm
      1.bias    (4,)         as is     layers.1.bias    (4,)       LayerNorm
      aligned: 2 by name
    """

    model: Any
    rows: tuple[WeightRow, ...]
    unmatched_torch: tuple[str, ...]
    unmatched_jax: tuple[str, ...]
    layers: tuple[tuple[str, str, str], ...]
    mismatches: tuple[str, ...] = ()
    dropped: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()
    framework: str = ""
    closest: Mapping[str, str] = dataclasses.field(default_factory=dict)
    aligned_by: tuple[str, ...] = ()
    hints: Mapping[str, str] = dataclasses.field(default_factory=dict)
    _pairs: tuple[Pair, ...] = dataclasses.field(default=(), repr=False, compare=False)

    def to_torch(self, values: Any, *, gradients: bool = False) -> dict[str, np.ndarray]:
        """JAX leaves (values or gradients) in torch's names and layouts, by this alignment.

        For comparing a JAX model (or its gradients, or its updated parameters) with its torch
        twin tensor by tensor after the load: ``mapping.to_torch(nnx.grad(loss)(model),
        gradients=True)["fc.weight"]`` is comparable with ``torch_model.fc.weight.grad``.

        Args:
          values: a model or pytree with the same leaf paths as ``model`` (the model itself,
            an ``nnx.State`` of gradients, an Equinox gradient module...), or a flat
            ``{jax_path: array}``.
          gradients: map gradients (the adjoint of each rule): where two torch biases were
            summed into one JAX bias both get its gradient; a GRU's ``bias_hh`` is left out
            for ``nnx.GRUCell`` (its b_hn is no JAX parameter).

        Returns:
          ``{torch_name: np.ndarray}`` for every torch tensor the rows load (dropped tensors,
          such as ``num_batches_tracked``, are left out, and so are state leaves that
          ``values`` lacks: gradients have no running statistics).

        Raises:
          KeyError: ``values`` lacks a parameter leaf the rows need (the message names it).
        """
        flat = (
            dict(values)
            if isinstance(values, Mapping)
            and all(isinstance(k, str) for k in values)
            and any(r.jax_path in values for r in self.rows)
            else jax_leaves(values)
        )
        out: dict[str, np.ndarray] = {}
        for pair in self._pairs:
            if pair.plan is None:
                continue
            tl, jl = pair.torch, pair.jax
            rel = {}
            for piece in pair.plan.pieces:
                leaf = jl.leaves[piece.jax]
                if leaf.path in flat:
                    rel[piece.jax] = np.asarray(flat[leaf.path])
                elif leaf.collection != "state":  # gradients have no running statistics
                    raise KeyError(f"`values` has no leaf `{leaf.path}` (JAX layer `{jl.path}`).")
            for name, arr in pair.plan.export(rel, tl.tensors, gradients).items():
                if name not in pair.plan.dropped:
                    out[tl.names[name]] = arr
        order = [r.torch_name for r in self.rows]
        return dict(sorted(out.items(), key=lambda kv: _first_index(order, kv[0])))

    @property
    def ok(self) -> bool:
        """True when every leaf on both sides is loaded with matching shapes."""
        return bool(self.rows) and not (
            self.unmatched_torch or self.unmatched_jax or self.mismatches
        )

    def problems(self) -> list[str]:
        """Every unmatched leaf and shape mismatch, each with the closest name opposite."""
        out = list(self.mismatches)
        for n in self.unmatched_torch:
            c = self.closest.get(n)
            out.append(
                f"torch `{n}` has no JAX leaf"
                + (f" (closest: `{c}`)" if c else "")
                + (f"; {self.hints[n]}" if n in self.hints else "")
            )
        for p in self.unmatched_jax:
            c = self.closest.get(p)
            out.append(
                f"JAX `{p}` has no torch tensor"
                + (f" (closest: `{c}`)" if c else "")
                + (f"; {self.hints[p]}" if p in self.hints else "")
            )
        return out

    def __str__(self) -> str:
        n_t = len({r.torch_name for r in self.rows})
        problems = self.problems()
        status = "OK" if self.ok else f"FAILED ({_count(len(problems), 'problem')})"
        body = table(
            ["torch", "torch shape", "rule", "JAX", "JAX shape", "kind"],
            [
                (r.torch_name, str(r.torch_shape), r.rule, r.jax_path, str(r.jax_shape), r.kind)
                for r in self.rows
            ],
            title=(
                f"weights {status}: {n_t} torch tensors -> {len(self.rows)} JAX leaves "
                f"({self.framework}), {len(self.layers)} layers aligned"
            ),
        )
        how = {h: self.aligned_by.count(h) for h in ("rule", "name", "order")}
        extra = []
        if self.layers:
            extra.append("aligned: " + ", ".join(f"{n} by {h}" for h, n in how.items() if n))
        by_order = [
            f"{t or '<root>'} -> {j or '<root>'}"
            for (t, j, _), h in zip(self.layers, self.aligned_by, strict=False)
            if h == "order"
        ]
        if by_order:
            extra.append("aligned by order (check these): " + ", ".join(by_order))
        extra += [f"problem: {p}" for p in problems]
        by_reason: dict[str, list[str]] = {}
        for n, why in self.dropped:
            by_reason.setdefault(why, []).append(n)
        extra += [f"dropped ({why}): {', '.join(ns)}" for why, ns in by_reason.items()]
        extra += [f"note: {n}" for n in self.notes]
        return body + "".join("\n" + e for e in extra)

    def assert_ok(self) -> None:
        """Raises ``AssertionError`` listing every problem."""
        if not self.ok:
            raise AssertionError("torch and JAX weights do not match:\n" + str(self))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the model itself is left out)."""
        return {
            "ok": self.ok,
            "framework": self.framework,
            "rows": [
                {
                    **r._asdict(),
                    "torch_shape": list(r.torch_shape),
                    "jax_shape": list(r.jax_shape),
                }
                for r in self.rows
            ],
            "layers": [list(x) for x in self.layers],
            "unmatched_torch": list(self.unmatched_torch),
            "unmatched_jax": list(self.unmatched_jax),
            "mismatches": list(self.mismatches),
            "dropped": [list(x) for x in self.dropped],
            "notes": list(self.notes),
            "closest": dict(self.closest),
            "aligned_by": list(self.aligned_by),
            "hints": dict(self.hints),
        }


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _hints(alignment: Alignment, torch_left: set[str], jax_left: set[str]) -> dict[str, str]:
    """Why a leaf of an aligned layer found no partner (a bias on one side only, ...)."""
    out: dict[str, str] = {}
    for pair in alignment.pairs:
        tl, jl = pair.torch, pair.jax
        for n in tl.names.values():
            if n in torch_left:
                out[n] = f"its layer is aligned with JAX `{jl.path or '<root>'}` ({jl.type_name})"
                if n.endswith("bias"):
                    out[n] += ", which has no bias (built with use_bias=False?)"
        for leaf in jl.leaves.values():
            if leaf.path in jax_left:
                out[leaf.path] = (
                    f"its layer is aligned with torch `{tl.name or '<root>'}` ({tl.kind})"
                )
                if leaf.path.endswith("bias"):
                    out[leaf.path] += ", which has no bias (built with bias=False?)"
    return out


def _tied(tls: Sequence[Any], used: set[str]) -> dict[str, str]:
    """Torch tensors not used that share storage with a used one (tied weights) -> that one."""
    key_of: dict[tuple[Any, ...], str] = {}
    arrays = {n: tl.tensors[r] for tl in tls for r, n in tl.names.items()}

    def key(a: np.ndarray) -> tuple[Any, ...]:
        return (a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str)

    for n in used:
        if n in arrays and arrays[n].size:
            key_of.setdefault(key(arrays[n]), n)
    return {
        n: key_of[key(a)]
        for n, a in arrays.items()
        if n not in used and a.size and key(a) in key_of
    }


def _first_index(order: list[str], name: str) -> int:
    for i, n in enumerate(order):
        if name == n or name in n.split(" + "):
            return i
    return len(order)


class _Plan(NamedTuple):
    values: dict[str, np.ndarray]  # jax path -> array (NumPy, before the dtype policy)
    rows: list[WeightRow]
    mismatches: list[str]
    used_torch: set[str]
    done_jax: set[str]
    dropped: list[tuple[str, str]]
    notes: list[str]
    layers: list[tuple[str, str, str]]


def _model_name(jax_model: Any, fw: str) -> str:
    if fw == "equinox" and isinstance(jax_model, tuple):
        return type(jax_model[0]).__name__
    return type(jax_model).__name__


def _prepare(
    jax_model: Any, torch_source: Any, rules: Any, what: str
) -> tuple[str, tuple[JaxLayer, ...], Alignment, Any]:
    fw = framework_of(jax_model)
    if fw == "function":
        raise TypeError(
            f"Expected `jax_model` to be a flax.nnx.Module, an equinox.Module or a pytree of "
            f"arrays, got the function {getattr(jax_model, '__name__', jax_model)!r}: a "
            f"function has no weights to {what}; pass the parameter pytree it takes instead."
        )
    compiled = check_rules(rules)
    jls = jax_layers(jax_model, atomic=is_atomic)
    if not jls:
        raise ValueError(
            f"The JAX model `{_model_name(jax_model, fw)}` ({fw}) has no parameters or state "
            f"leaves to {what}."
        )
    tls = torch_layers(torch_source)
    if not tls:
        src = "state_dict" if isinstance(torch_source, Mapping) else type(torch_source).__name__
        raise ValueError(f"The torch model `{src}` has no parameters or buffers to {what}.")
    return fw, jls, align(jls, tls, compiled), tls


def _plan(alignment: Alignment) -> _Plan:
    p = _Plan(
        {},
        [],
        list(alignment.errors),
        set(),
        set(),
        list(alignment.ignored),
        list(alignment.notes),
        [],
    )
    for pair in alignment.pairs:
        tl, jl, spec = pair.torch, pair.jax, pair.spec
        kind = layer_kind(spec, tl)
        p.layers.append((tl.name, jl.path, kind))
        if pair.plan is None:
            p.mismatches.extend(pair.problems)
            continue
        # shape problems are measured again per leaf below; keep the others (two rules, ...)
        p.mismatches.extend(q for q in pair.problems if not q.startswith("shape mismatch"))
        for piece in pair.plan.pieces:
            leaf = jl.leaves[piece.jax]
            srcs = [tl.tensors[t] for t in piece.torch]
            names = [tl.names[t] for t in piece.torch]
            try:
                value = piece.load(srcs)
                got: tuple[int, ...] | None = tuple(value.shape)
            except (ValueError, IndexError):
                got = None
            p.used_torch.update(names)
            p.done_jax.add(leaf.path)
            tshape = tuple(srcs[0].shape)
            if got != leaf.shape:
                p.mismatches.append(
                    f"shape mismatch in {kind} `{tl.name}` -> `{jl.path}`: torch "
                    f"`{' + '.join(names)}` {tshape} by rule `{piece.rule}` gives "
                    f"{got if got is not None else 'an error'}, but JAX `{leaf.path}` is "
                    f"{leaf.shape}"
                )
                continue
            p.values[leaf.path] = value
            p.rows.append(
                WeightRow(
                    " + ".join(names),
                    leaf.path,
                    piece.rule,
                    tshape,
                    leaf.shape,
                    tl.name,
                    jl.path,
                    kind,
                )
            )
        for rel, (value, why) in pair.plan.extras.items():
            path = jl.leaves[rel].path
            p.values[path] = value
            p.done_jax.add(path)
            p.notes.append(f"`{path}` {why}")
        for rel, why in pair.plan.dropped.items():
            p.dropped.append((tl.names[rel], why))
            p.used_torch.add(tl.names[rel])
    return p


def _finish_dtype(value: np.ndarray, target: np.dtype, path: str, notes: list[str]) -> Any:
    import jax
    import jax.numpy as jnp

    src = np.dtype(value.dtype)
    dtype = target
    if (
        src == np.float64 and target == np.float32 and jax.config.jax_enable_x64  # type: ignore[attr-defined]
    ):
        dtype = np.dtype(np.float64)
    elif src == np.float64 and target != np.float64 and np.issubdtype(target, np.floating):
        notes.append(f"`{path}`: torch float64 cast to {target} (x64 is off)")
    return jnp.array(np.array(value, copy=True), dtype=dtype)


def load_torch_weights(
    jax_model: Any,
    torch_source: Any,
    *,
    rules: Sequence[tuple[str, str | None]] | None = None,
    strict: bool = True,
) -> WeightMapping:
    r"""Loads a torch model's weights into its Flax NNX / Equinox / pytree port.

    Every JAX parameter and state leaf gets exactly one torch tensor, laid out by the rule of
    the JAX layer's type (see :mod:`funcdiff.parity.models._layouts` for the table), or by the
    leaf's name for pytrees. Layers are aligned by ``rules`` first, then by definition order
    among layers of a compatible kind whose shapes fit (see :mod:`._align`).

    Args:
      jax_model: a ``flax.nnx.Module`` (loaded in place), an ``equinox.Module`` or a
        ``(module, state)`` pair from ``eqx.nn.make_with_state`` (needed for BatchNorm), or a
        pytree of arrays / ``jax.ShapeDtypeStruct`` (nested dicts; a Linen-style
        ``{"params": ..., "batch_stats": ...}`` too) used as the template. Abstract models
        (``nnx.eval_shape(lambda: Model(...))``, ``eqx.filter_eval_shape``) work and skip the
        initialisers; every leaf is filled when the load is strict.
      torch_source: an ``nn.Module`` or a state_dict.
      rules: ``(torch_name_regex, jax_path_template)`` pairs naming which torch layer (or
        tensor) goes to which JAX layer (or leaf); the template may use the regex's groups
        (``\1``); ``None`` leaves the matched torch tensors out on purpose. A tensor-level rule
        into a layer without a built-in rule (a custom module's ``nnx.Param``) also says which
        leaf the tensor fills (as is, or by the leaf's name: ``kernel`` is ``weight.T``).
      strict: if True, any unmatched leaf (either side) or shape mismatch raises one
        ``ValueError`` listing all of them and nothing is loaded; if False, what matches is
        loaded and the rest is reported in the record.

    Returns:
      A :class:`WeightMapping`; its ``model`` is the loaded model. Loaded leaves keep the JAX
      template's dtype, except that a float64 torch tensor under x64 makes a float32 leaf
      float64 (so a float64 comparison gets float64 parameters).

    Raises:
      TypeError: ``jax_model`` or ``torch_source`` is not a supported kind, or an Equinox model
        with state is given without it.
      ValueError: a model without parameters; with ``strict``, unmatched leaves or shape
        mismatches (all listed, each with the closest name on the other side); a torch layer
        whose values the JAX layer cannot represent (a GRU's ``b_hn`` for ``nnx.GRUCell``).

    Examples:
      >>> import torch
      >>> from flax import nnx
      >>> from funcdiff.parity import load_torch_weights
      >>> t = torch.nn.Linear(3, 3)
      >>> m = nnx.Linear(3, 3, rngs=nnx.Rngs(0))
      >>> res = load_torch_weights(m, t)
      >>> res.ok, res.rows[0].rule
      (True, 'weight.T')
      >>> bool((m.kernel[...] == t.weight.detach().numpy().T).all())
      True
    """
    if not isinstance(strict, bool):
        raise TypeError(f"Expected `strict` to be a bool, got {type(strict).__name__}.")
    fw, jls, alignment, tls = _prepare(jax_model, torch_source, rules, "load")
    for pair in alignment.pairs:
        for check in pair.plan.checks if pair.plan is not None else ():
            check()
    plan = _plan(alignment)
    all_torch = [n for tl in tls for n in tl.names.values()]
    ignored = {n for n, _ in alignment.ignored}
    for name, src in _tied(tls, plan.used_torch - ignored).items():
        plan.dropped.append((name, f"tied to `{src}` (the same storage), loaded from there"))
        ignored.add(name)
    unmatched_t = tuple(n for n in all_torch if n not in plan.used_torch and n not in ignored)
    all_jax = [leaf.path for jl in jls for leaf in jl.leaves.values()]
    unmatched_j = tuple(p for p in all_jax if p not in plan.done_jax)
    closest: dict[str, str] = {}
    for n in unmatched_t:
        c = _closest(n, list(unmatched_j) or all_jax, to_torch=True)
        if c:
            closest[n] = c
    for p_ in unmatched_j:
        c = _closest(p_, list(unmatched_t) or all_torch, to_torch=False)
        if c:
            closest[p_] = c
    hints = _hints(alignment, set(unmatched_t), set(unmatched_j))
    arrays = {n: tl.tensors[r] for tl in tls for r, n in tl.names.items()}
    for n in unmatched_t:
        if arrays[n].dtype.kind in "iub" and n not in hints:
            hints[n] = (
                f"an {arrays[n].dtype} buffer, not a weight? leave it out with "
                f"rules=[(r{re.escape(n)!r}, None)]"
            )
    record = WeightMapping(
        jax_model,
        tuple(plan.rows),
        unmatched_t,
        unmatched_j,
        tuple(plan.layers),
        tuple(plan.mismatches),
        tuple(plan.dropped),
        tuple(plan.notes),
        fw,
        closest,
        tuple(p.how for p in alignment.pairs),
        hints,
        tuple(alignment.pairs),
    )
    if strict and (unmatched_t or unmatched_j or plan.mismatches):
        name = _model_name(jax_model, fw)
        lines = "\n".join(f"  - {p}" for p in record.problems())
        raise ValueError(
            f"Cannot load the torch weights into `{name}` ({fw}): "
            f"{_count(len(record.problems()), 'problem')} (nothing was loaded):\n{lines}\n"
            "Fix the port, name the pairs with `rules=[(torch_regex, jax_path), ...]`, or pass "
            "`strict=False` to load what matches."
        )
    leaves = {leaf.path: leaf for jl in jls for leaf in jl.leaves.values()}
    notes = list(plan.notes)
    values = {
        path: _finish_dtype(np.asarray(v), leaves[path].dtype, path, notes)
        for path, v in plan.values.items()
    }
    up = [p for p, v in values.items() if v.dtype == np.float64 != leaves[p].dtype]
    if up:
        notes.append(
            f"{len(up)} float32 leaves loaded as float64 (torch float64 under x64), e.g. "
            f"`{up[0]}`; modules that make arrays from their param_dtype (an RNN's initial "
            "carry) need param_dtype=float64 too"
        )
    model = set_leaves(jax_model, values)
    return dataclasses.replace(record, model=model, notes=tuple(notes))


def _torch_dtype_like(value: np.ndarray, like: Any) -> Any:
    torch = require_torch()
    t = torch.from_numpy(np.array(value, copy=True, order="C"))
    return t.to(dtype=like.dtype) if t.dtype != like.dtype else t


def export_torch_weights(
    jax_model: Any,
    torch_module: Any,
    *,
    rules: Sequence[tuple[str, str | None]] | None = None,
) -> dict[str, Any]:
    """The inverse of :func:`load_torch_weights`: a state_dict for ``torch_module``.

    Layers are aligned exactly as on load; every torch tensor must come from a JAX leaf
    (or be one kept as is: ``num_batches_tracked`` and tensors left out by a ``None`` rule keep
    torch's current value). Two torch biases summed on load are exported as the sum in
    ``bias_ih`` and zeros in ``bias_hh``. Tensors take the torch module's dtype.

    Args:
      jax_model: as for :func:`load_torch_weights`.
      torch_module: the ``nn.Module`` (or a state_dict) whose names, shapes and dtypes the
        result follows; it is not modified.
      rules: as for :func:`load_torch_weights`.

    Returns:
      ``{name: torch.Tensor}`` in the module's state_dict order, ready for
      ``torch_module.load_state_dict``. JAX -> torch -> JAX is bit-exact when the dtypes agree.

    Raises:
      TypeError, ValueError: as :func:`load_torch_weights` with ``strict=True``.

    Examples:
      >>> import torch
      >>> from flax import nnx
      >>> from funcdiff.parity import export_torch_weights
      >>> t = torch.nn.Linear(2, 3)
      >>> sd = export_torch_weights(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), t)
      >>> t.load_state_dict(sd)
      <All keys matched successfully>
    """
    torch = require_torch()
    fw, jls, alignment, tls = _prepare(jax_model, torch_module, rules, "export")
    plan = _plan(alignment)
    state = dict(torch_module) if isinstance(torch_module, Mapping) else torch_module.state_dict()
    jvals: dict[str, Any] = {}
    for path, v in jax_leaves(jax_model).items():
        if not hasattr(v, "__array__"):  # an abstract leaf (nnx.eval_shape, ShapeDtypeStruct)
            v = None
        jvals[path] = v if v is None else np.asarray(v)
    out: dict[str, Any] = {}
    problems = list(plan.mismatches)
    for pair in alignment.pairs:
        if pair.plan is None:
            continue
        tl, jl = pair.torch, pair.jax
        jax_rel = {rel: jvals[leaf.path] for rel, leaf in jl.leaves.items()}
        used = {p.jax for p in pair.plan.pieces}
        abstract = [jl.leaves[r].path for r in used if jax_rel[r] is None]
        if abstract:
            raise ValueError(
                f"Cannot export `{_model_name(jax_model, fw)}`: the JAX leaves {abstract} have "
                "no values (an abstract model from nnx.eval_shape / eqx.filter_eval_shape); "
                "load or initialise them first."
            )
        for rel, arr in pair.plan.export(jax_rel, tl.tensors).items():
            name = tl.names[rel]
            like = state[name]
            if tuple(arr.shape) != tuple(like.shape):
                problems.append(
                    f"shape mismatch: JAX `{jl.path}` gives {tuple(arr.shape)} for torch "
                    f"`{name}` {tuple(like.shape)}"
                )
                continue
            out[name] = _torch_dtype_like(arr, like)
    for n, _ in plan.dropped:
        out[n] = state[n].detach().clone()
    for n, src in _tied(tls, plan.used_torch).items():
        if src in out:
            out[n] = out[src].clone()
    missing = [n for n in state if n not in out]
    all_jax = [leaf.path for jl in jls for leaf in jl.leaves.values()]
    unused = [p for p in all_jax if p not in plan.done_jax]
    for n in missing:
        c = _closest(n, unused or all_jax, to_torch=True)
        problems.append(f"torch `{n}` has no JAX leaf" + (f" (closest: `{c}`)" if c else ""))
    for p_ in unused:
        c = _closest(p_, missing or list(state), to_torch=False)
        problems.append(f"JAX `{p_}` has no torch tensor" + (f" (closest: `{c}`)" if c else ""))
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ValueError(
            f"Cannot export `{_model_name(jax_model, fw)}` ({fw}) to torch: "
            f"{_count(len(problems), 'problem')}:\n{lines}"
        )
    del torch
    return {n: out[n] for n in state}
