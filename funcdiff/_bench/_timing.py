"""How one implementation is timed: a cold first call, warm-ups, then repeats of calibrated
batches of calls, each call synchronised (``block_until_ready`` / ``torch.cuda.synchronize``).

The per-call time of a repeat is the batch's wall time divided by its number of calls, so
microsecond-scale calls are timed over many calls and second-scale calls one at a time.
``compile_s`` is the cold first call minus the steady-state median: tracing + XLA compilation
for ``jax.jit``, Dynamo + Inductor for ``torch.compile``, first-call overhead (op caches,
allocator) for eager implementations.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Budget", "Timing", "measure"]


@dataclasses.dataclass(frozen=True)
class Budget:
    """How hard to try when timing one implementation at one size.

    Attributes:
      repeats: the most repeats; fewer when one call is slow (never fewer than ``min_repeats``).
      min_repeats: the fewest repeats.
      repeat_s: target wall time of one repeat (calls are batched up to it).
      total_s: target wall time of all repeats together (limits repeats for slow calls).
      warmup: warm-up calls after the cold first call (0: none, for calls of many seconds).
    """

    repeats: int = 7
    min_repeats: int = 3
    repeat_s: float = 0.05
    total_s: float = 2.0
    warmup: int = 2


@dataclasses.dataclass(frozen=True)
class Timing:
    """Steady-state seconds per call over ``repeats`` repeats, and the cold first call."""

    median_s: float
    min_s: float
    max_s: float
    cold_s: float
    compile_s: float
    repeats: int
    number: int


def measure(fn: Callable[[], Any], sync: Callable[[Any], Any], budget: Budget) -> Timing:
    """Times ``sync(fn())``: one cold call, warm-ups, then calibrated repeats.

    Args:
      fn: the call to time, with its inputs already bound (same arrays for every impl).
      sync: waits for the result (``jax.block_until_ready`` or a torch synchronise).
      budget: repeats and time targets.

    Returns:
      A :class:`Timing` with per-call seconds.
    """
    t0 = time.perf_counter()
    sync(fn())
    cold = time.perf_counter() - t0

    est = cold  # with warmup=0 (very long calls) the cold call is the only estimate
    for _ in range(budget.warmup):
        t0 = time.perf_counter()
        sync(fn())
        est = time.perf_counter() - t0
        if est > budget.total_s / 4:  # slow call: one warm-up is enough
            break
    est = max(est, 1e-7)
    number = max(1, min(100_000, math.ceil(budget.repeat_s / est)))
    by_budget = int(budget.total_s // (est * number)) if est * number > 0 else budget.repeats
    repeats = max(budget.min_repeats, min(budget.repeats, by_budget))

    per_call = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            sync(fn())
        per_call.append((time.perf_counter() - t0) / number)
    median = statistics.median(per_call)
    return Timing(
        median_s=median,
        min_s=min(per_call),
        max_s=max(per_call),
        cold_s=cold,
        compile_s=max(cold - median, 0.0),
        repeats=repeats,
        number=number,
    )
