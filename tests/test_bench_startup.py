"""Bench case ``startup``: registered, skipped at the test level, and its log parsing right.

Timing whole processes is the benchmark's business; here only the harness pieces.
"""

from __future__ import annotations

from funcdiff._bench import CASES, LEVELS
from funcdiff._bench.cases import startup


def test_startup_is_a_registered_case_with_the_issue_commands():
    assert CASES["startup"] is startup
    cmds = startup.COMMANDS
    assert {"jax-bare", "funcdiff-demo", "funcdiff-check", "funcdiff-compare"} <= set(cmds)
    assert cmds["funcdiff-check"][-4:] == [
        "check",
        "funcdiff.seed:composite",
        "--at",
        "[0.5, 0.75]",
    ]
    assert "import jax, optax" in cmds["jax-bare"][-1]


def test_breakdown_sums_tracing_lowering_and_compiling():
    log = "\n".join(
        [
            "WARNING:jax._src.dispatch:Finished tracing + transforming f for pjit in 0.5 sec",
            "Finished tracing g for jit in 0.25 sec",
            "Finished jaxpr to MLIR module conversion jit(g) in 0.125 sec",
            "Finished XLA compilation of jit(g) in 1.5 sec",
            "Finished XLA compilation of jit(h) in 0.5 sec",
            "something else in 9 sec",
        ]
    )
    assert startup.breakdown(log) == {"trace": 0.75, "lower": 0.125, "compile": 2.0}
    assert startup.breakdown("") == {"trace": 0.0, "lower": 0.0, "compile": 0.0}


def test_tiny_level_skips_it_with_a_level_note():
    assert startup.count(LEVELS["tiny"]) == 1
    assert startup.count(LEVELS["quick"]) == startup.count(LEVELS["full"]) == 9
