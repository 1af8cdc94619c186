"""``python -m funcdiff`` runs the CLI."""

import sys

from funcdiff._cli import main

sys.exit(main())
