"""`python -m jobs.publish`: the CLI of the simulated upstream (jobs.upstream.publish), at the name DESIGN.md gives it."""
from __future__ import annotations

import sys

from jobs.upstream.publish import main

if __name__ == "__main__":
    sys.exit(main())
