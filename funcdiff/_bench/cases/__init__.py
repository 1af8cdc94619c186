"""The benchmark cases. Each module has ``NAME``, ``count(settings)`` (measurements, for the
progress bar) and ``run(ctx)`` (records rows into the context)."""

from __future__ import annotations

from funcdiff._bench.cases import (
    bootstrap,
    fd_accuracy,
    gradcheck,
    parity,
    port,
    regression,
    seed_grad,
    startup,
)

__all__ = ["CASES"]

CASES = {
    m.NAME: m
    for m in (seed_grad, regression, gradcheck, fd_accuracy, bootstrap, parity, port, startup)
}
