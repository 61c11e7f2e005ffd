"""`python -m scripts.replay` (see scripts/replay/__init__.py)."""
import sys

from scripts.replay.cli import main

sys.exit(main())
