"""The convention check for torch *functionals*: ``F.gelu`` and friends against the JAX code.

The layer check (:mod:`._conventions`) reads aligned module pairs. Most torch code also calls
functionals in a parent's ``forward`` (``F.gelu``, ``F.layer_norm``, ``F.avg_pool2d``,
``F.interpolate``; ``nn.TransformerEncoderLayer(activation="gelu")`` calls ``F.gelu``), and
JAX ports call ``jax.nn.gelu`` in a parent's ``__call__``: there is no layer pair to read.

Torch side: the comparison's torch run records every such call under a ``TorchFunctionMode``
(:class:`~funcdiff.parity.models._capture.FunctionalCall`: name, settings, enclosing modules,
the aligned layers around it). JAX side: the whole model's jaxpr (the ``make_jaxpr`` that gives
the output shapes, no extra compile), each equation owned by the innermost aligned layer whose
name scope it carries (``fd:<path>``) or by the root. A torch call is matched with the region of
its innermost *aligned* enclosing module (the JAX twin's own equations, aligned children
excluded), or the root's; a call made by an aligned module itself (``nn.LayerNorm`` calling
``F.layer_norm``) is left to the layer check.

=========================  =============================================  ===================
rule                       torch call / JAX region                        registry entry
=========================  =============================================  ===================
gelu-approximation         ``F.gelu`` exact, region has ``tanh`` and no   gelu-default
                           ``erf`` (or ``approximate='tanh'``, ``erf``)
norm-epsilon               ``F.layer_norm``/``F.group_norm`` eps, none    flax-norm-epsilon
                           of the region's ``var + eps`` literals (read
                           before ``rsqrt``/``sqrt``; unreadable: skipped)
avg-pool-count-include-    ``F.avg_pool*`` padded, one                    avg-pool-count-
pad                        ``reduce_window_sum`` per pool in JAX          include-pad
                           (padding counted), or two for
                           ``count_include_pad=True``
resize-antialias           ``F.interpolate`` (bilinear/bicubic)           resize-antialias
                           downsampling, ``jax.image.resize`` antialias
                           the other way (its jaxpr starts the kernel
                           scale with ``max`` when antialiased)
=========================  =============================================  ===================

Which layer a finding names: when the call sits between two aligned layers and the next one's
inputs fail while the previous one's output passed (the error comes from the unaligned code in
between), that next layer; else the innermost aligned module around the call; else the next
aligned layer after it; else ``"output"``.

Examples:
  >>> from funcdiff.parity.models._functional import jax_regions
  >>> import jax, jax.numpy as jnp
  >>> def f(x):
  ...     with jax.named_scope("fd:ln"):
  ...         x = x - x.mean()
  ...     return jax.nn.gelu(x)
  >>> r = jax_regions(jax.make_jaxpr(f)(jnp.ones(3)).jaxpr)
  >>> sorted(r), "tanh" in [e.primitive.name for e in r[""]]
  (['', 'ln'], True)
"""

from __future__ import annotations

import contextlib
import math
import re
from typing import Any

from funcdiff.parity.models._capture import SCOPE, FunctionalCall
from funcdiff.parity.models._conventions import _f  # a Finding with the rule's registry entry
from funcdiff.parity.models._report import Finding

__all__ = ["check_functional", "jax_regions", "merge"]

_SMOOTH = ("linear", "bilinear", "bicubic", "trilinear")
_SCOPE_RE = re.compile(re.escape(SCOPE) + r"([^/()]+)")
_RESIZE = ("_resize", "resize", "scale_and_translate", "_scale_and_translate")


def _subjaxprs(eqn: Any) -> list[Any]:
    out = []
    for p in eqn.params.values():
        for sub in p if isinstance(p, tuple | list) else (p,):
            inner = getattr(sub, "jaxpr", None)
            if inner is not None:
                out.append(getattr(inner, "jaxpr", inner))
    return out


def jax_regions(jaxpr: Any) -> dict[str, list[Any]]:
    """The equations of ``jaxpr`` (sub-jaxprs included) by owner: the innermost aligned layer
    whose ``fd:<path>`` name scope they carry, ``""`` for the root."""
    out: dict[str, list[Any]] = {}

    def walk(jp: Any, outer: list[str]) -> None:
        for e in jp.eqns:
            # "fd:a/vmap(fd:b)": a scope entered under a transformation is wrapped in its name
            scopes = outer + _SCOPE_RE.findall(str(e.source_info.name_stack))
            out.setdefault(scopes[-1] if scopes else "", []).append(e)
            for sub in _subjaxprs(e):
                walk(sub, scopes)

    walk(jaxpr, [])
    return out


def _eps_literals(eqns: list[Any]) -> list[float]:
    """``eps`` of every ``rsqrt(v + eps)`` / ``sqrt(v + eps)`` with a literal ``eps``."""
    made = {id(v): e for e in eqns for v in e.outvars}
    out = []
    for e in eqns:
        if e.primitive.name not in ("rsqrt", "sqrt") or not e.invars:
            continue
        src = made.get(id(e.invars[0]))
        if src is None or src.primitive.name != "add":
            continue
        for v in src.invars:
            if type(v).__name__ == "Literal":
                with contextlib.suppress(TypeError, ValueError):
                    out.append(float(v.val))
    return out


def _resize_antialias(eqns: list[Any]) -> list[bool | None]:
    """Per ``jax.image.resize`` call: antialiased (its kernel scale starts with ``max``),
    not (starts with ``iota``), or None (nearest, or a layout this check does not know)."""
    out: list[bool | None] = []
    for e in eqns:
        if e.primitive.name not in ("jit", "pjit") or e.params.get("name") not in _RESIZE:
            continue
        subs = _subjaxprs(e)
        first = subs[0].eqns[0].primitive.name if subs and subs[0].eqns else ""
        out.append(True if first == "max" else False if first == "iota" else None)
    return out


def _layer(call: FunctionalCall, owner: str | None, rows: dict[str, Any], aligned: set[str]) -> str:
    """The layer a finding on ``call`` names (see the module docstring)."""
    nxt = call.before.split("#")[0] if call.before else None
    if call.before and nxt is not None and nxt not in call.stack:
        row, prev = rows.get(call.before), rows.get(call.after) if call.after else None
        prev_ok = call.after is None or (
            prev is not None and prev.forward is not None and prev.forward.passed
        )
        if row is not None and row.inputs is not None and not row.inputs.passed and prev_ok:
            return nxt
    if owner:
        return owner
    return nxt if nxt and nxt in aligned else "output"


def check_functional(
    calls: list[FunctionalCall],
    pairs: list[tuple[str, str, str]],
    rows: list[Any],
    jaxpr: Any,
    *,
    framework: str = "nnx",
    torch_module: Any = None,
) -> list[Finding]:
    """Findings on the torch functional calls (see the module docstring).

    Args:
      calls: the torch run's functional calls, in order.
      pairs: ``(torch name, JAX path, kind)`` of the aligned layers.
      rows: the comparison's layer rows (for the gap rule).
      jaxpr: the whole JAX model's jaxpr, traced with the recording wrappers.
      framework: ``"function"`` matches every call with the whole jaxpr (taps do not scope).
      torch_module: the torch module; calls made by an aligned module without submodules
        (``nn.LayerNorm`` calling ``F.layer_norm``) are left to the layer check.
    """
    if not calls:
        return []
    regions = jax_regions(jaxpr)
    t2j = {t: j for t, j, _ in pairs}
    aligned = set(t2j)
    by_key = {r.torch_name: r for r in rows}
    # aligned modules with submodules: their forward's own calls are checked here
    blocks = {
        t
        for t in aligned
        if torch_module is not None and any(True for _ in torch_module.get_submodule(t).children())
    }
    # each call with the JAX region it is matched with and the layer it names
    placed: list[tuple[FunctionalCall, str, str]] = []
    for c in calls:
        inner = c.stack[-1] if c.stack else ""
        if framework != "function" and inner in aligned and inner not in blocks:
            continue  # an aligned leaf's own op (nn.LayerNorm's F.layer_norm): the layer check
        owner = next((s for s in reversed(c.stack) if s in aligned), None)
        region = t2j.get(owner, "") if owner and framework != "function" else ""
        if region not in regions:
            region = ""
        placed.append((c, region, _layer(c, owner, by_key, aligned)))
    out: list[Finding] = []
    for region in dict.fromkeys(r for _, r, _ in placed):
        eqns = regions.get(region, [])
        mine = [(c, layer) for c, r, layer in placed if r == region]
        out.extend(_gelu(mine, eqns))
        out.extend(_norm_eps(mine, eqns))
        out.extend(_avg_pool(mine, eqns))
        out.extend(_resize(mine, eqns))
    return merge([], out)


def _gelu(mine: list[tuple[FunctionalCall, str]], eqns: list[Any]) -> list[Finding]:
    gelus = [(c, layer) for c, layer in mine if c.name == "gelu"]
    if not gelus:
        return []
    prims = {e.primitive.name for e in eqns}
    modes = {c.settings.get("approximate") for c, _ in gelus}
    out = []
    for c, layer in gelus:
        mode = c.settings.get("approximate")
        if mode == "none" and "tanh" in prims and not prims & {"erf", "erfc"}:
            out.append(
                _f(
                    layer,
                    "gelu-approximation",
                    "F.gelu(approximate='none') (erf)",
                    "tanh approximation in the same code (jax.nn.gelu default)",
                    "jax.nn.gelu(x, approximate=False)",
                )
            )
        elif mode == "tanh" and "none" not in modes and prims & {"erf", "erfc"}:
            out.append(
                _f(
                    layer,
                    "gelu-approximation",
                    "F.gelu(approximate='tanh')",
                    "exact erf GELU in the same code",
                    "jax.nn.gelu(x, approximate=True)",
                )
            )
    return out


def _norm_eps(mine: list[tuple[FunctionalCall, str]], eqns: list[Any]) -> list[Finding]:
    norms = [(c, layer) for c, layer in mine if c.name in ("layer_norm", "group_norm")]
    jeps = _eps_literals(eqns) if norms else []
    if not jeps:
        return []  # no readable epsilon: nothing said
    out = []
    for c, layer in norms:
        teps = c.settings.get("eps")
        if not isinstance(teps, float | int):
            continue
        if all(not math.isclose(float(teps), j, rel_tol=1e-5) for j in jeps):
            shown = ", ".join(f"{j:.3g}" for j in sorted(set(jeps)))
            out.append(
                _f(
                    layer,
                    "norm-epsilon",
                    f"F.{c.name}(eps={teps:g})",
                    f"epsilon={shown} in the same code",
                    f"epsilon={teps:g}",
                )
            )
    return out


def _padded(c: FunctionalCall) -> bool:
    p = c.settings.get("padding", 0)
    return any(p) if isinstance(p, tuple) else bool(p)


def _avg_pool(mine: list[tuple[FunctionalCall, str]], eqns: list[Any]) -> list[Finding]:
    pools = [(c, layer) for c, layer in mine if c.name.startswith("avg_pool")]
    if not pools or not any(_padded(c) for c, _ in pools):
        return []
    sums = sum(1 for e in eqns if e.primitive.name == "reduce_window_sum")
    out = []
    for c, layer in pools:
        include = c.settings.get("count_include_pad", True)
        if not _padded(c):
            continue
        if not include and sums == len(pools):
            out.append(
                _f(
                    layer,
                    "avg-pool-count-include-pad",
                    f"F.{c.name}(count_include_pad=False), padding={c.settings.get('padding')}",
                    "divides by the full window (padding counted)",
                    "flax avg_pool(..., count_include_pad=False)",
                )
            )
        elif include and sums == 2 * len(pools):
            out.append(
                _f(
                    layer,
                    "avg-pool-count-include-pad",
                    f"F.{c.name}(count_include_pad=True), padding={c.settings.get('padding')}",
                    "divides by the number of real entries (count_include_pad=False)",
                    "flax avg_pool(..., count_include_pad=True)",
                )
            )
    return out


def _downsamples(c: FunctionalCall) -> bool:
    a, b = c.in_shape[2:], c.out_shape[2:]
    return len(a) == len(b) and any(o < i for i, o in zip(a, b, strict=True))


def _resize(mine: list[tuple[FunctionalCall, str]], eqns: list[Any]) -> list[Finding]:
    calls = [
        (c, layer)
        for c, layer in mine
        if c.name == "interpolate" and c.settings.get("mode") in _SMOOTH and _downsamples(c)
    ]
    flags = [f for f in _resize_antialias(eqns) if f is not None] if calls else []
    if not flags:
        return []
    out = []
    for c, layer in calls:
        aa = bool(c.settings.get("antialias"))
        size = f"{c.in_shape[2:]} -> {c.out_shape[2:]}"
        if not aa and any(flags):
            out.append(
                _f(
                    layer,
                    "resize-antialias",
                    f"F.interpolate(mode={c.settings.get('mode')!r}, antialias=False), {size}",
                    "jax.image.resize antialias=True (its default) when downsampling",
                    "jax.image.resize(..., antialias=False)",
                )
            )
        elif aa and not all(flags):
            out.append(
                _f(
                    layer,
                    "resize-antialias",
                    f"F.interpolate(mode={c.settings.get('mode')!r}, antialias=True), {size}",
                    "jax.image.resize antialias=False",
                    "jax.image.resize(..., antialias=True)",
                )
            )
    return out


def merge(findings: list[Finding], extra: list[Finding]) -> list[Finding]:
    """``findings`` then those of ``extra`` whose (layer, rule) is not there yet."""
    seen = {(f.layer, f.rule) for f in findings}
    out = list(findings)
    for f in extra:
        if (f.layer, f.rule) not in seen:
            seen.add((f.layer, f.rule))
            out.append(f)
    return out
