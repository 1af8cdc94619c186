"""Benchmark settings per level (full, quick, tiny), the result record and the run context
that cases report into."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import jax

from funcdiff._bench._timing import Budget, Timing

__all__ = ["LEVELS", "Context", "Record", "Settings", "Skip"]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes and budgets of one level (``full``, ``quick`` or ``tiny``, the test level)."""

    level: str
    budget: Budget
    slow_budget: Budget
    regression: tuple[tuple[int, int], ...]  # (n, epochs)
    gradcheck_dims: tuple[int, ...]
    bootstrap_resamples: tuple[int, ...]
    bootstrap_n: int
    bootstrap_epochs: int
    bootstrap_torch_cap: int  # resamples the torch-eager loop is timed on (then scaled)
    torch_compile: bool
    parity_dtypes: tuple[str, ...]
    parity_subset: int | None = None  # catalog cases timed (spread evenly); None: all
    port_shape: tuple[int, int] | None = (4, 64)  # (batch, image size) of case port; None: skip


LEVELS: dict[str, Settings] = {
    "full": Settings(
        level="full",
        budget=Budget(repeats=9, min_repeats=5, repeat_s=0.05, total_s=2.0, warmup=3),
        slow_budget=Budget(repeats=5, min_repeats=3, repeat_s=0.0, total_s=6.0, warmup=0),
        regression=((100, 500), (10_000, 500), (1_000_000, 50), (10_000_000, 20)),
        gradcheck_dims=(10, 100, 1000),
        bootstrap_resamples=(100, 1000),
        bootstrap_n=100,
        bootstrap_epochs=500,
        bootstrap_torch_cap=10,
        torch_compile=True,
        parity_dtypes=("float32", "float64"),
    ),
    "quick": Settings(
        level="quick",
        budget=Budget(repeats=5, min_repeats=3, repeat_s=0.02, total_s=0.5, warmup=2),
        slow_budget=Budget(repeats=3, min_repeats=3, repeat_s=0.0, total_s=1.5, warmup=0),
        regression=((100, 100), (10_000, 100), (1_000_000, 5)),
        gradcheck_dims=(10, 100, 1000),
        bootstrap_resamples=(1000,),
        bootstrap_n=100,
        bootstrap_epochs=100,
        bootstrap_torch_cap=10,
        torch_compile=True,
        parity_dtypes=("float32", "float64"),
        parity_subset=12,
    ),
    "tiny": Settings(
        level="tiny",
        budget=Budget(repeats=2, min_repeats=2, repeat_s=0.001, total_s=0.05, warmup=1),
        slow_budget=Budget(repeats=2, min_repeats=2, repeat_s=0.0, total_s=0.05, warmup=1),
        regression=((100, 5),),
        gradcheck_dims=(4,),
        bootstrap_resamples=(8,),
        bootstrap_n=20,
        bootstrap_epochs=5,
        bootstrap_torch_cap=2,
        torch_compile=False,
        parity_dtypes=("float32",),
        parity_subset=2,
        port_shape=None,
    ),
}


@dataclasses.dataclass(frozen=True)
class Record:
    """One row of ``results.json``: seconds per call of ``impl`` on ``case`` at ``size``.

    The first eight fields are the schema's contract; the rest are extras (None is dropped).
    """

    case: str
    impl: str
    size: int
    median_s: float
    min_s: float
    max_s: float
    compile_s: float
    repeats: int
    cold_s: float | None = None
    number: int | None = None
    mode: str | None = None
    dtype: str | None = None
    epochs: int | None = None
    per_epoch_s: float | None = None
    aot_compile_s: float | None = None
    note: str | None = None

    @property
    def label(self) -> str:
        """The implementation, with its mode when it has one (``funcdiff[directional]``)."""
        return f"{self.impl}[{self.mode}]" if self.mode else self.impl

    @property
    def unit_s(self) -> float:
        """Seconds per epoch where the case reports epochs, else per call."""
        return self.per_epoch_s if self.per_epoch_s is not None else self.median_s

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True)
class Skip:
    """An implementation (or a whole case) that was not run, and why."""

    case: str
    impl: str
    note: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Context:
    """What a case needs: settings, devices, torch (or why not), and where to report rows."""

    def __init__(
        self,
        settings: Settings,
        device: jax.Device,
        *,
        use_torch: bool = True,
        on_step: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.device = device
        self.records: list[Record] = []
        self.skipped: list[Skip] = []
        self._on_step = on_step
        self.torch: ModuleType | None = None
        self.torch_device: str | None = None
        self.torch_note: str | None = None
        if not use_torch:
            self.torch_note = "torch baselines disabled"
            return
        try:
            torch = importlib.import_module("torch")
        except ImportError:
            self.torch_note = "PyTorch is not installed (pip install 'funcdiff[torch]')"
            return
        if device.platform == "cpu":
            self.torch, self.torch_device = torch, "cpu"
        elif device.platform == "gpu" and torch.cuda.is_available():
            self.torch, self.torch_device = torch, "cuda:0"
        else:
            self.torch_note = f"this PyTorch build has no {device.platform} support"

    def step(self, what: str) -> None:
        """Advances the progress bar by one measurement."""
        if self._on_step is not None:
            self._on_step(what)

    def record(self, case: str, impl: str, size: int, t: Timing, **extra: Any) -> Record:
        """Adds a row from a :class:`Timing`; extras as in :class:`Record`."""
        rec = Record(
            case=case,
            impl=impl,
            size=int(size),
            median_s=t.median_s,
            min_s=t.min_s,
            max_s=t.max_s,
            compile_s=t.compile_s,
            repeats=t.repeats,
            cold_s=t.cold_s,
            number=t.number,
            **extra,
        )
        self.records.append(rec)
        self.step(f"{case} {rec.label} {size}")
        return rec

    def skip(self, case: str, impl: str, note: str, *, steps: int = 0) -> None:
        """Notes a skipped implementation once per case (and advances ``steps`` steps)."""
        if not any(s.case == case and s.impl == impl for s in self.skipped):
            self.skipped.append(Skip(case, impl, note))
        for _ in range(steps):
            self.step(f"{case} {impl} skipped")

    def torch_sync(self, out: Any) -> Any:
        """Waits for torch work on the benchmark device (a no-op on CPU)."""
        if self.torch is not None and self.torch_device and self.torch_device.startswith("cuda"):
            self.torch.cuda.synchronize()
        return out
