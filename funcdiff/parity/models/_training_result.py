"""The record of :func:`~funcdiff.parity.compare_training`: one row per step, the drift, and
the float32 envelope the rows are judged against (measured in docs/training_parity.md)."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np

from funcdiff import _report

__all__ = [
    "FLOAT32_ENVELOPE_SLOPE",
    "PART",
    "QUANTITIES",
    "Drift",
    "TrainingParityResult",
    "TrainingStep",
    "drift_of",
    "envelope",
]

#: Data-flow order of the compared quantities, and the part each belongs to.
QUANTITIES = ("loss", "buffer", "gradient", "lr", "update", "parameter")
PART = {
    "loss": "forward",
    "buffer": "forward",
    "gradient": "gradient",
    "lr": "optimizer",
    "update": "optimizer",
    "parameter": "optimizer",
}
#: float32 envelope slope: the allowance at step k is (atol + rtol |ref|) * (1 + k * slope).
FLOAT32_ENVELOPE_SLOPE = 0.1


def envelope(dtype: str, step: int, *, teacher_forcing: bool) -> float:
    """The factor on ``atol + rtol |torch|`` at ``step`` (1-based); see the module docstring."""
    if dtype == "float64" or teacher_forcing:
        return 1.0
    return 1.0 + FLOAT32_ENVELOPE_SLOPE * step


class TrainingStep(NamedTuple):
    """One training step compared.

    Errors are the largest ``|jax - torch|`` over all elements of all parameters (or
    buffers); the ``*_name`` fields give the torch name where that largest error sits.

    Attributes:
      step: 1-based step number.
      lr: torch's learning rate for this step (first param group).
      lr_jax: the JAX side's learning rate when it is known (``tx`` built here, or an
        ``optax.inject_hyperparams`` state), else None.
      loss_torch, loss_jax: the losses at the step's starting parameters.
      loss_error: ``|loss_jax - loss_torch|``.
      grad_error, grad_name: largest gradient error and its parameter.
      update_error, update_name: largest error of the update ``θ_after - θ_before``.
      param_error, param_name: largest parameter error after the step.
      buffer_error, buffer_name: largest running-statistics error after the step.
      passed: every quantity within its allowance.
      failed: ``(quantity, torch name)`` of every failing quantity, in data-flow order.
      excess: the largest error/allowance ratio of the step (> 1 fails).

    Examples:
      >>> import numpy as np, optax, torch
      >>> from funcdiff.parity import compare_training
      >>> _ = torch.manual_seed(0)
      >>> net = torch.nn.Linear(3, 1).double()
      >>> opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
      >>> apply = lambda p, x: x @ p["weight"].T + p["bias"]
      >>> params = {"weight": np.zeros((1, 3)), "bias": np.zeros(1)}
      >>> rng = np.random.default_rng(0)
      >>> data = [(rng.normal(size=(8, 3)), rng.normal(size=(8, 1))) for _ in range(5)]
      >>> no_momentum = optax.sgd(0.1)  # a planted bug: torch uses momentum=0.9
      >>> result = compare_training((apply, params), no_momentum, net, opt, data, loss="mse")
      >>> first, second = result.steps[:2]
      >>> first.step, first.lr, first.passed, round(first.loss_torch, 4)
      (1, 0.1, True, 0.819)
      >>> second.passed, second.failed, round(second.update_error, 4)
      (False, (('update', 'weight'), ('parameter', 'weight')), 0.0682)
    """

    step: int
    lr: float | None
    lr_jax: float | None
    loss_torch: float
    loss_jax: float
    loss_error: float
    grad_error: float
    grad_name: str
    update_error: float
    update_name: str
    param_error: float
    param_name: str
    buffer_error: float
    buffer_name: str
    passed: bool
    failed: tuple[tuple[str, str], ...]
    excess: float

    def to_dict(self) -> dict[str, Any]:
        d = self._asdict()
        d["failed"] = [list(f) for f in self.failed]
        return d


class Drift(NamedTuple):
    """How the parameter error grows over the run.

    Attributes:
      param_error: ``(steps,)`` largest parameter error after each step.
      growth_per_step: ``exp(b)`` of a least-squares fit ``log err ≈ a + b k`` over the steps
        with a nonzero error (1.0: no growth); None with fewer than two such steps.
      linear_rate: slope of a least-squares line ``err ≈ c + r k`` (error per step).

    Examples:
      >>> import numpy as np, optax, torch
      >>> from funcdiff.parity import compare_training
      >>> _ = torch.manual_seed(0)
      >>> net = torch.nn.Linear(3, 1).double()
      >>> opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
      >>> apply = lambda p, x: x @ p["weight"].T + p["bias"]
      >>> params = {"weight": np.zeros((1, 3)), "bias": np.zeros(1)}
      >>> rng = np.random.default_rng(0)
      >>> data = [(rng.normal(size=(8, 3)), rng.normal(size=(8, 1))) for _ in range(5)]
      >>> no_momentum = optax.sgd(0.1)  # a planted bug: torch uses momentum=0.9
      >>> drift = compare_training((apply, params), no_momentum, net, opt, data, loss="mse").drift
      >>> [round(float(e), 3) for e in drift.param_error]
      [0.0, 0.068, 0.298, 0.379, 0.337]
      >>> drift.growth_per_step > 1, round(drift.linear_rate, 2)  # error per step
      (True, 0.1)
    """

    param_error: np.ndarray
    growth_per_step: float | None
    linear_rate: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "param_error": self.param_error.tolist(),
            "growth_per_step": self.growth_per_step,
            "linear_rate": self.linear_rate,
        }


def drift_of(err: np.ndarray) -> Drift:
    k = np.arange(1, err.size + 1, dtype=np.float64)
    good = np.isfinite(err) & (err > 0)
    growth = None
    if good.sum() >= 2:
        b = np.polyfit(k[good], np.log(err[good]), 1)[0]
        growth = float(np.exp(b))
    fin = np.isfinite(err)
    rate = float(np.polyfit(k[fin], err[fin], 1)[0]) if fin.sum() >= 2 else 0.0
    return Drift(err, growth, rate)


@dataclasses.dataclass(frozen=True)
class TrainingParityResult:
    """The outcome of :func:`compare_training`.

    Attributes:
      steps: one :class:`TrainingStep` per step.
      dtype: ``"float64"`` or ``"float32"``.
      rtol, atol: the base tolerances (multiplied by :func:`envelope` at each step).
      teacher_forcing: whether the JAX side was reset to torch's state before every step.
      first_divergent_step: the first failing step (1-based), or None.
      first_divergent_quantity: ``"loss"``, ``"buffer"``, ``"gradient"``, ``"lr"``,
        ``"update"`` or ``"parameter"``: the first failing one in data-flow order.
      first_divergent_part: ``"forward"``, ``"gradient"`` or ``"optimizer"``.
      first_divergent_parameter: the torch name failing worst there (None for loss and lr).
      drift: the parameter error against the step and its fitted growth.
      framework: ``"nnx"``, ``"equinox"`` or ``"function"``.
      optimizer: e.g. ``"SGD + StepLR"``.
      notes: what could not be compared or was special.
      compiles: how many times the JAX step was traced (1 for a healthy run).
      torch_seconds, jax_seconds: wall time of the stepping loops (JAX without the compile).

    Examples:
      >>> import numpy as np, optax, torch
      >>> from funcdiff.parity import compare_training
      >>> _ = torch.manual_seed(0)
      >>> net = torch.nn.Linear(3, 1).double()
      >>> opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
      >>> apply = lambda p, x: x @ p["weight"].T + p["bias"]
      >>> params = {"weight": np.zeros((1, 3)), "bias": np.zeros(1)}
      >>> rng = np.random.default_rng(0)
      >>> data = [(rng.normal(size=(8, 3)), rng.normal(size=(8, 1))) for _ in range(5)]
      >>> result = compare_training((apply, params), None, net, opt, data, loss="mse")
      >>> result.ok, result.optimizer, result.dtype, len(result.steps), result.compiles
      (True, 'SGD', 'float64', 5, 1)
      >>> planted = compare_training((apply, params), optax.sgd(0.1), net, opt, data, loss="mse")
      >>> planted.ok, planted.first_divergence  # (step, part, quantity, parameter)
      (False, (2, 'optimizer', 'update', 'weight'))
    """

    steps: tuple[TrainingStep, ...]
    dtype: str
    rtol: float
    atol: float
    teacher_forcing: bool
    first_divergent_step: int | None
    first_divergent_quantity: str | None
    first_divergent_part: str | None
    first_divergent_parameter: str | None
    drift: Drift
    framework: str = "function"
    optimizer: str = ""
    notes: tuple[str, ...] = ()
    compiles: int = 1
    torch_seconds: float = 0.0
    jax_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every step agreed (and there was at least one)."""
        return bool(self.steps) and self.first_divergent_step is None

    @property
    def first_divergence(self) -> tuple[int, str, str, str | None] | None:
        """``(step, part, quantity, parameter)`` of the first divergence, or None."""
        if self.first_divergent_step is None:
            return None
        return (
            self.first_divergent_step,
            str(self.first_divergent_part),
            str(self.first_divergent_quantity),
            self.first_divergent_parameter,
        )

    @property
    def torch_steps_per_second(self) -> float:
        return len(self.steps) / self.torch_seconds if self.torch_seconds > 0 else float("inf")

    @property
    def jax_steps_per_second(self) -> float:
        return len(self.steps) / self.jax_seconds if self.jax_seconds > 0 else float("inf")

    def _title(self) -> str:
        mode = "teacher-forced" if self.teacher_forcing else "free-running"
        head = (
            f"training parity {self.optimizer} ({self.framework} port), {len(self.steps)} "
            f"{mode} steps in {self.dtype}: "
        )
        if self.ok:
            return head + "OK"
        where = f" in {self.first_divergent_parameter}" if self.first_divergent_parameter else ""
        return head + (
            f"FAILED from step {self.first_divergent_step}: {self.first_divergent_quantity} "
            f"({self.first_divergent_part}){where}"
        )

    def _table(self, picks: list[int]) -> str:
        headers = [
            "",
            "step",
            "lr",
            "loss torch",
            "loss jax",
            "|Δloss|",
            "max |Δgrad|",
            "in",
            "max |Δupdate|",
            "max |Δθ|",
            "in",
            "pass",
        ]
        buffers = any(s.buffer_name for s in self.steps)
        if buffers:
            headers[-1:-1] = ["max |Δbuffer|", "in"]
        rows = []
        for k in picks:
            s = self.steps[k - 1]
            mark = ">>" if k == self.first_divergent_step else ""
            rows.append(
                [
                    mark,
                    s.step,
                    s.lr,
                    s.loss_torch,
                    s.loss_jax,
                    s.loss_error,
                    s.grad_error,
                    s.grad_name,
                    s.update_error,
                    s.param_error,
                    s.param_name,
                    *((s.buffer_error, s.buffer_name) if buffers else ()),
                    s.passed,
                ]
            )
        return _report.table(headers, rows, title=self._title(), digits=6)

    def __str__(self) -> str:
        n = len(self.steps)
        picks = {1, 2, *(max(1, round(n * f)) for f in (0.25, 0.5, 0.75)), n}
        if self.first_divergent_step is not None:
            k = self.first_divergent_step
            picks |= {max(1, k - 1), k, min(n, k + 1)}
        out = self._table(sorted(p for p in picks if 1 <= p <= n))
        g = self.drift.growth_per_step
        out += (
            f"\ndrift: max |Δθ| {_report.fmt(float(np.nanmax(self.drift.param_error)))}, "
            f"growth per step {'-' if g is None else f'{g:.4f}'}, "
            f"{_report.fmt(self.drift.linear_rate)} per step (linear fit)"
        )
        if self.first_divergent_step is not None:
            s = self.steps[self.first_divergent_step - 1]
            out += "\nfailing at step {}: {}".format(
                s.step, ", ".join(f"{q} {n}".strip() for q, n in s.failed)
            )
        return out + "".join(f"\nnote: {n}" for n in self.notes)

    def assert_ok(self) -> None:
        """Raises ``AssertionError`` with the table and the first divergence when not ok."""
        if not self.ok:
            raise AssertionError("JAX and PyTorch train differently:\n" + str(self))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "dtype": self.dtype,
            "rtol": self.rtol,
            "atol": self.atol,
            "teacher_forcing": self.teacher_forcing,
            "first_divergent_step": self.first_divergent_step,
            "first_divergent_quantity": self.first_divergent_quantity,
            "first_divergent_part": self.first_divergent_part,
            "first_divergent_parameter": self.first_divergent_parameter,
            "framework": self.framework,
            "optimizer": self.optimizer,
            "notes": list(self.notes),
            "compiles": self.compiles,
            "torch_steps_per_second": self.torch_steps_per_second,
            "jax_steps_per_second": self.jax_steps_per_second,
            "drift": self.drift.to_dict(),
            "steps": [s.to_dict() for s in self.steps],
        }

    def plot(self, path: str) -> str:
        """Writes the loss curves of both and the errors against the step (log scale).

        Needs matplotlib (``pip install matplotlib``); returns ``path``.
        """
        try:
            import matplotlib
        except ImportError as e:  # pragma: no cover - optional dependency
            raise ImportError("plot needs matplotlib: pip install matplotlib") from e
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        k = np.array([s.step for s in self.steps])
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        ax1.plot(k, [s.loss_torch for s in self.steps], lw=3, alpha=0.5, label="torch")
        ax1.plot(k, [s.loss_jax for s in self.steps], "--", label="jax")
        ax1.set(xlabel="step", ylabel="loss", yscale="log", title="loss")
        ax1.legend()
        tiny = np.finfo(np.float64).tiny
        for field, label in (
            ("loss_error", "|Δloss|"),
            ("grad_error", "max |Δgrad|"),
            ("update_error", "max |Δupdate|"),
            ("param_error", "max |Δθ|"),
        ):
            ax2.semilogy(k, [max(getattr(s, field), tiny) for s in self.steps], label=label)
        if self.first_divergent_step is not None:
            ax2.axvline(self.first_divergent_step, color="red", ls=":", label="first divergence")
        ax2.set(xlabel="step", ylabel="torch − jax", title=f"errors ({self.dtype})")
        ax2.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
