"""``python -m funcdiff._bench.render DIR``: redraw results.md and the plots from results.json."""

from __future__ import annotations

import sys

from funcdiff._bench._output import rerender

if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) != 2:
        sys.exit("usage: python -m funcdiff._bench.render DIR")
    for path in rerender(sys.argv[1]):
        print(f"wrote {path}")
