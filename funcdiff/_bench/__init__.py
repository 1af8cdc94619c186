"""The benchmark suite behind ``funcdiff bench``: harness and cases ship inside the package
(so ``pip install .`` runs them); ``benchmarks/`` in the repository holds results and docs.

Cases: ``seed-grad``, ``regression``, ``gradcheck``, ``bootstrap``, ``parity``, ``port``,
``startup``. Only this package and ``funcdiff.parity`` import torch (and flax, for ``port``),
lazily; without it the torch rows are skipped with a note.
"""

from __future__ import annotations

from funcdiff._bench._context import LEVELS, Record, Settings, Skip
from funcdiff._bench._machine import split_cpu_into_cores
from funcdiff._bench._runner import LEVEL_ENV, BenchReport, check_cases, prepare_out, run_bench
from funcdiff._bench._timing import Budget, Timing, measure
from funcdiff._bench.cases import CASES

__all__ = [
    "CASES",
    "LEVELS",
    "LEVEL_ENV",
    "BenchReport",
    "Budget",
    "Record",
    "Settings",
    "Skip",
    "Timing",
    "check_cases",
    "measure",
    "prepare_out",
    "run_bench",
    "split_cpu_into_cores",
]
