"""The record of a whole-model comparison: rows per layer and parameter, findings, a tree.

Examples:
  >>> from funcdiff.parity.models._report import Finding
  >>> f = Finding("ln", "norm-epsilon", "eps=1e-05", "epsilon=1e-06",
  ...             "nnx.LayerNorm(..., epsilon=1e-5)", "flax-norm-epsilon")
  >>> f.rule, f.entry
  ('norm-epsilon', 'flax-norm-epsilon')
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from funcdiff._report import fmt, table
from funcdiff.parity._compare import ParityRow

__all__ = ["Finding", "LayerRow", "ModelParityResult", "ParamRow"]


def _err(row: ParityRow | None) -> float | None:
    return None if row is None else row.max_abs_error


class LayerRow(NamedTuple):
    """One aligned layer (or a model input/output) compared across the frameworks.

    Attributes:
      torch_name: the torch module's dotted name (``"layer1.0.conv1"``); ``"input[0]"`` and
        ``"output"`` for the model's inputs (their gradients) and outputs.
      jax_path: the aligned JAX layer's dotted path (or tap name).
      kind: the torch module's class (``"Linear"``, ``"BatchNorm2d"``, ...).
      forward: the output comparison (None when the layer did not run on one side).
      isolated: the JAX layer run on torch's own input to it, against torch's output
        (``isolate=True`` only; None where it could not be run).
      grad: the comparison of the gradients at the layer's output.
      inputs: the comparison of the layer's inputs (None when they could not be paired).
      depth: nesting depth in the torch module tree (0 for top-level children).
      note: why something was not compared.

    Examples:
      >>> import numpy as np, torch
      >>> from flax import nnx
      >>> from funcdiff.parity import compare_model, load_torch_weights
      >>> _ = torch.manual_seed(0)
      >>> tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
      >>> ln = nnx.LayerNorm(4, epsilon=1e-5, rngs=nnx.Rngs(0))
      >>> jm = nnx.Sequential(nnx.Linear(3, 4, rngs=nnx.Rngs(0)), ln)
      >>> mapping = load_torch_weights(jm, tm)
      >>> result = compare_model(jm, tm, np.ones((2, 3), np.float32))
      >>> [(row.torch_name, row.jax_path, row.kind) for row in result.layers]
      [('input[0]', 'input[0]', 'input'), ('0', 'layers.0', 'Linear'),
       ('1', 'layers.1', 'LayerNorm'), ('output', 'output', 'output')]
      >>> row = result.layers[1]
      >>> row.forward.passed, row.grad.passed, row.forward_error < 1e-5
      (True, True, True)
    """

    torch_name: str
    jax_path: str
    kind: str
    forward: ParityRow | None
    isolated: ParityRow | None
    grad: ParityRow | None
    inputs: ParityRow | None = None
    depth: int = 0
    note: str = ""

    @property
    def forward_error(self) -> float | None:
        """Largest absolute error of the output."""
        return _err(self.forward)

    @property
    def isolated_error(self) -> float | None:
        """Largest absolute error of the JAX layer fed torch's input (``isolate=True``)."""
        return _err(self.isolated)

    @property
    def grad_error(self) -> float | None:
        """Largest absolute error of the gradient at the layer's output."""
        return _err(self.grad)

    @property
    def activation_grad_error(self) -> float | None:
        """The same as :attr:`grad_error`."""
        return _err(self.grad)

    @property
    def passed(self) -> bool:
        """Forward, isolated and activation-gradient rows all pass (absent ones count as passed)."""
        return all(r is None or r.passed for r in (self.forward, self.isolated, self.grad))

    @property
    def ok(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "torch_name": self.torch_name,
            "jax_path": self.jax_path,
            "kind": self.kind,
            "forward_error": self.forward_error,
            "isolated_error": self.isolated_error,
            "grad_error": self.grad_error,
            "input_error": _err(self.inputs),
            "pass": self.passed,
            "note": self.note,
            "rows": [r.to_dict() for r in (self.forward, self.isolated, self.grad) if r],
        }


class ParamRow(NamedTuple):
    """One parameter's gradient (or, after a training step, one running statistic).

    Attributes:
      torch_name: the torch name (``"layer1.0.bn1.weight"``).
      jax_path: the JAX leaf's dotted path (``"layer1.0.bn1.scale"``).
      quantity: ``"grad"`` for a gradient, ``"state"`` for an updated running statistic.
      row: the comparison, in torch's layout.

    Examples:
      >>> import numpy as np, torch
      >>> from flax import nnx
      >>> from funcdiff.parity import compare_model, load_torch_weights
      >>> _ = torch.manual_seed(0)
      >>> tm = torch.nn.Sequential(torch.nn.Linear(3, 2))
      >>> jm = nnx.Sequential(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
      >>> mapping = load_torch_weights(jm, tm)
      >>> result = compare_model(jm, tm, np.ones((2, 3), np.float32))
      >>> [(p.torch_name, p.jax_path, p.quantity, p.ok) for p in result.params]
      [('0.weight', 'layers.0.kernel', 'grad', True), ('0.bias', 'layers.0.bias', 'grad', True)]
      >>> result.params[0].error < 1e-5
      True
    """

    torch_name: str
    jax_path: str
    quantity: str
    row: ParityRow

    @property
    def grad_error(self) -> float:
        return self.row.max_abs_error

    @property
    def error(self) -> float:
        """The same as :attr:`grad_error` (for running statistics, their error)."""
        return self.row.max_abs_error

    @property
    def passed(self) -> bool:
        return self.row.passed

    @property
    def ok(self) -> bool:
        return self.row.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "torch_name": self.torch_name,
            "jax_path": self.jax_path,
            "quantity": self.quantity,
            "error": self.row.max_abs_error,
            "pass": self.row.passed,
            "row": self.row.to_dict(),
        }


class Finding(NamedTuple):
    """A convention that differs between an aligned pair of layers.

    Attributes:
      layer: the torch module name.
      rule: the convention (``"strided-same-padding"``, ``"norm-epsilon"``, ...).
      torch_setting: torch's side (``"padding=1 (symmetric), stride=2"``).
      jax_setting: the JAX side (``"padding='SAME' (asymmetric when strided)"``).
      fix: what to change in the JAX model.
      entry: the divergence-registry entry (``funcdiff.parity.get_divergence(entry)``), or
        ``""`` for porting mistakes that are not a framework convention (a transposed weight).

    Examples:
      >>> import numpy as np, torch
      >>> from flax import nnx
      >>> from funcdiff.parity import compare_model, load_torch_weights
      >>> _ = torch.manual_seed(0)
      >>> tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))  # eps=1e-5
      >>> jm = nnx.Sequential(
      ...     nnx.Linear(3, 4, rngs=nnx.Rngs(0)), nnx.LayerNorm(4, epsilon=0.1, rngs=nnx.Rngs(0))
      ... )
      >>> mapping = load_torch_weights(jm, tm)
      >>> (finding,) = compare_model(jm, tm, np.ones((2, 3), np.float32)).diagnosis
      >>> print(finding)
      1: norm-epsilon (registry: flax-norm-epsilon)
        torch: eps=1e-05
        JAX:   epsilon=0.1
        fix:   LayerNorm(..., epsilon=1e-05)
    """

    layer: str
    rule: str
    torch_setting: str
    jax_setting: str
    fix: str
    entry: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self._asdict())

    def __str__(self) -> str:
        entry = f" (registry: {self.entry})" if self.entry not in ("", self.rule) else ""
        return (
            f"{self.layer}: {self.rule}{entry}\n  torch: {self.torch_setting}\n"
            f"  JAX:   {self.jax_setting}\n  fix:   {self.fix}"
        )


@dataclasses.dataclass(frozen=True)
class ModelParityResult:
    """The outcome of :func:`~funcdiff.parity.compare_model`.

    Attributes:
      layers: one :class:`LayerRow` per aligned layer in torch execution order, then the
        model outputs; the model inputs' gradients come first.
      params: one :class:`ParamRow` per parameter gradient (and per running statistic after a
        training-mode forward).
      first_divergence: the torch name of the first layer in execution order whose output (or,
        when the forward agrees, whose backward) fails while its inputs pass; None when
        everything agrees.
      diagnosis: :class:`Finding` records, the first divergence's first.
      dtype: the floating dtype of the run.
      train: whether the forward ran in training mode.
      notes: what was not compared and why.
      torch_tree: ``(name, kind, depth)`` of every torch module, for the tree.

    Examples:
      >>> import numpy as np, torch
      >>> from flax import nnx
      >>> from funcdiff.parity import compare_model, load_torch_weights
      >>> _ = torch.manual_seed(0)
      >>> tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))  # eps=1e-5
      >>> jm = nnx.Sequential(
      ...     nnx.Linear(3, 4, rngs=nnx.Rngs(0)), nnx.LayerNorm(4, epsilon=0.1, rngs=nnx.Rngs(0))
      ... )
      >>> mapping = load_torch_weights(jm, tm)
      >>> result = compare_model(jm, tm, np.ones((2, 3), np.float32))
      >>> result.ok, result.first_divergence, result.dtype, result.train
      (False, '1', 'float32', False)
      >>> [(d.layer, d.rule, d.fix) for d in result.diagnosis]
      [('1', 'norm-epsilon', 'LayerNorm(..., epsilon=1e-05)')]
    """

    layers: tuple[LayerRow, ...]
    params: tuple[ParamRow, ...]
    first_divergence: str | None
    diagnosis: tuple[Finding, ...]
    dtype: str
    train: bool = False
    notes: tuple[str, ...] = ()
    torch_tree: tuple[tuple[str, str, int], ...] = ()

    @property
    def ok(self) -> bool:
        """True when every layer, output and parameter row passed (and there was one)."""
        return (
            bool(self.layers)
            and all(r.passed for r in self.layers)
            and all(p.passed for p in self.params)
        )

    @property
    def failures(self) -> tuple[LayerRow | ParamRow, ...]:
        """Every failing layer and parameter row."""
        rows: list[LayerRow | ParamRow] = [*self.layers, *self.params]
        return tuple(r for r in rows if not r.passed)

    def summary(self) -> str:
        """Two lines: the verdict and sizes, then the largest absolute error per kind of row
        (layer outputs, activation gradients, parameter gradients; ``-`` where none)."""

        def worst(rows: Any) -> str:
            errs = [r.max_abs_error for r in rows if r is not None]
            return f"{max(errs):.0e}" if errs else "-"

        fwd = worst(r.forward for r in self.layers)
        act = worst(r.grad for r in self.layers)
        grads = worst(p.row for p in self.params)
        return (
            f"agrees {self.ok}, {len(self.layers)} layers, {len(self.params)} parameters\n"
            f"  max abs error: outputs {fwd}, activation grads {act}, param grads {grads}"
        )

    def _tree(self) -> str:
        by_name = {r.torch_name: r for r in self.layers}
        lines = []
        shown = set()
        tree = self.torch_tree or tuple((r.torch_name, r.kind, r.depth) for r in self.layers)
        for r in self.layers:
            if r.kind == "input":
                shown.add(r.torch_name)
                lines.append(f"   {r.torch_name} <-> {r.jax_path}  " + _cells(r))
        for name, kind, depth in tree:
            row = by_name.get(name)
            shown.add(name)
            mark = ">>" if name == self.first_divergence else "  "
            if row is None:
                lines.append(f"{mark} {'  ' * depth}{name} ({kind})  [not aligned]")
                continue
            lines.append(f"{mark} {'  ' * depth}{name} ({kind}) <-> {row.jax_path}  " + _cells(row))
        for r in self.layers:
            if r.torch_name not in shown:
                mark = ">>" if r.torch_name == self.first_divergence else "  "
                lines.append(f"{mark} {r.torch_name} ({r.kind}) <-> {r.jax_path}  " + _cells(r))
        return "\n".join(lines)

    def __str__(self) -> str:
        n_fail = len(self.failures)
        status = "OK" if self.ok else f"FAILED ({n_fail} rows)"
        head = f"model parity {status}: {self.dtype}, {'train' if self.train else 'eval'} mode"
        parts = [
            head,
            "torch <-> JAX (fwd: output error, iso: isolated, grad: activation "
            "gradient; >> first divergence)",
            self._tree(),
        ]
        if self.first_divergence is not None:
            parts.append(f"first divergence: {self.first_divergence}")
        if self.params:
            bad = [p for p in self.params if not p.passed]
            worst = max(self.params, key=lambda p: p.row.excess)
            parts.append(
                f"parameters: {len(self.params) - len(bad)} of {len(self.params)} agree "
                f"(worst {worst.torch_name}: {fmt(worst.row.max_abs_error)})"
            )
            if bad:
                parts.append(
                    table(
                        ("torch", "jax", "quantity", "max abs err", "rtol", "atol", "pass"),
                        [
                            (
                                p.torch_name,
                                p.jax_path,
                                p.quantity,
                                p.row.max_abs_error,
                                p.row.rtol,
                                p.row.atol,
                                p.passed,
                            )
                            for p in bad
                        ],
                    )
                )
        if self.diagnosis:
            parts.append(
                table(
                    ("layer", "rule", "torch", "jax", "fix", "registry"),
                    _grouped(self.diagnosis),
                    title="diagnosis",
                )
            )
        parts.extend(f"note: {n}" for n in self.notes)
        return "\n".join(parts)

    def assert_ok(self) -> None:
        """Raises ``AssertionError`` with the tree, the first divergence and the diagnosis."""
        if not self.ok:
            raise AssertionError("JAX and PyTorch models disagree:\n" + str(self))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "dtype": self.dtype,
            "train": self.train,
            "first_divergence": self.first_divergence,
            "layers": [r.to_dict() for r in self.layers],
            "params": [p.to_dict() for p in self.params],
            "diagnosis": [f.to_dict() for f in self.diagnosis],
            "notes": list(self.notes),
        }


def _cells(r: LayerRow) -> str:
    def one(label: str, row: ParityRow | None) -> str:
        if row is None:
            return ""
        return f"{label} {fmt(row.max_abs_error)}{'' if row.passed else ' FAIL'}"

    cells = [one("fwd", r.forward), one("iso", r.isolated), one("grad", r.grad)]
    text = "  ".join(c for c in cells if c)
    return text + (f"  ({r.note})" if r.note else "")


def _grouped(findings: tuple[Finding, ...]) -> list[tuple[str, ...]]:
    """One table row per distinct finding; the same one on many layers names the first two
    and counts the rest (``to_dict`` keeps every finding)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for f in findings:
        key = (f.rule, f.torch_setting, f.jax_setting, f.fix, f.entry)
        groups.setdefault(key, []).append(f.layer)
    rows: list[tuple[str, ...]] = []
    for (rule, t, j, fix, entry), layers in groups.items():
        where = ", ".join(layers[:2]) + (f" (+{len(layers) - 2} more)" if len(layers) > 2 else "")
        rows.append((where, rule, t, j, fix, entry or "-"))
    return rows
