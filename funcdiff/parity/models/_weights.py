"""PyTorch weights into Flax NNX / Equinox / pytree models, and back: ``load_torch_weights``.

The data path: boundary checks -> the two trees enumerated (:mod:`._frameworks`,
:func:`._align.torch_layers`) -> layers aligned (:mod:`._align`) -> each pair's layout rule
applied (:mod:`._layouts`) -> one record, :class:`WeightMapping`.

Decisions where the issue is silent:

- **dtype.** A loaded leaf takes the JAX template's dtype, with one exception: when the torch
  tensor is float64, the template leaf is float32 and x64 is on (``funcdiff.scoped(x64=True)``),
  the leaf becomes float64, so ``load_torch_weights(model, torch_model.double())`` under x64
  gives a model that computes in float64 like its twin. A float64 tensor cast to float32 (x64
  off) is said in ``notes``. Integer/bool leaves keep their dtype.
- **Copies.** Loaded arrays are copies: later in-place changes to the torch model (an optimizer
  step) do not leak into the JAX model.
- **strict.** With ``strict=True`` nothing is changed (not even an NNX model) unless every
  leaf on both sides is accounted for; the one ``ValueError`` lists every problem.
- **Two biases, one slot.** Loading sums them; export writes the sum into ``bias_ih`` and zeros
  into ``bias_hh``, so JAX -> torch -> JAX is bit-exact (torch -> JAX -> torch is exact up to
  the float rounding of the sum).
- **num_batches_tracked** is dropped on load (listed in ``dropped``) and kept at torch's current
  value on export.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from funcdiff._report import table
from funcdiff.parity._torch import require_torch
from funcdiff.parity.models._align import Alignment, align, check_rules, torch_layers
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
            out.append(f"torch `{n}` has no JAX leaf" + (f" (closest: `{c}`)" if c else ""))
        for p in self.unmatched_jax:
            c = self.closest.get(p)
            out.append(f"JAX `{p}` has no torch tensor" + (f" (closest: `{c}`)" if c else ""))
        return out

    def __str__(self) -> str:
        n_t = len({r.torch_name for r in self.rows})
        status = "OK" if self.ok else f"FAILED ({len(self.problems())} problems)"
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
        extra = [f"problem: {p}" for p in self.problems()]
        extra += [f"dropped: {n} ({why})" for n, why in self.dropped]
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
        }


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
    p = _Plan({}, [], [], set(), set(), list(alignment.ignored), list(alignment.notes), [])
    for pair in alignment.pairs:
        tl, jl, spec = pair.torch, pair.jax, pair.spec
        kind = layer_kind(spec, tl)
        p.layers.append((tl.name, jl.path, kind))
        if pair.plan is None:
            p.mismatches.extend(pair.problems)
            continue
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
        pytree of arrays / ``jax.ShapeDtypeStruct`` (nested dicts) used as the template.
      torch_source: an ``nn.Module`` or a state_dict.
      rules: ``(torch_name_regex, jax_path_template)`` pairs naming which torch layer (or
        tensor) goes to which JAX layer; the template may use the regex's groups (``\1``);
        ``None`` leaves the matched torch tensors out on purpose.
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
    plan = _plan(alignment)
    all_torch = [n for tl in tls for n in tl.names.values()]
    ignored = {n for n, _ in alignment.ignored}
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
    )
    if strict and (unmatched_t or unmatched_j or plan.mismatches):
        name = _model_name(jax_model, fw)
        lines = "\n".join(f"  - {p}" for p in record.problems())
        raise ValueError(
            f"Cannot load the torch weights into `{name}` ({fw}): "
            f"{len(record.problems())} problems (nothing was loaded):\n{lines}\n"
            "Fix the port, name the pairs with `rules=[(torch_regex, jax_path), ...]`, or pass "
            "`strict=False` to load what matches."
        )
    leaves = {leaf.path: leaf for jl in jls for leaf in jl.leaves.values()}
    notes = list(plan.notes)
    values = {
        path: _finish_dtype(np.asarray(v), leaves[path].dtype, path, notes)
        for path, v in plan.values.items()
    }
    model = set_leaves(jax_model, values)
    return dataclasses.replace(record, model=model, notes=tuple(notes))


def _torch_dtype_like(value: np.ndarray, like: Any) -> Any:
    torch = require_torch()
    t = torch.from_numpy(np.array(value, copy=True))
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
    fw, jls, alignment, _ = _prepare(jax_model, torch_module, rules, "export")
    plan = _plan(alignment)
    state = dict(torch_module) if isinstance(torch_module, Mapping) else torch_module.state_dict()
    jvals = {p: np.asarray(v) for p, v in jax_leaves(jax_model).items()}
    out: dict[str, Any] = {}
    problems = list(plan.mismatches)
    for pair in alignment.pairs:
        if pair.plan is None:
            continue
        tl, jl = pair.torch, pair.jax
        jax_rel = {rel: jvals[leaf.path] for rel, leaf in jl.leaves.items()}
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
    keep = {n for n, _ in plan.dropped}
    for n in keep:
        out[n] = state[n].detach().clone()
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
            f"{len(problems)} problems:\n{lines}"
        )
    del torch
    return {n: out[n] for n in state}
