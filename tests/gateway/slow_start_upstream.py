"""The flaky upstream (``tests.gateway.flaky_upstream``), slow to start the first time only:
``python -m tests.gateway.slow_start_upstream MARKER SECONDS`` sleeps SECONDS before serving
when the file MARKER does not exist yet (and creates it), as a server that downloads itself
on first use does."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import anyio

from tests.gateway.flaky_upstream import main

if __name__ == "__main__":
    marker, seconds = Path(sys.argv[1]), float(sys.argv[2])
    if not marker.exists():
        marker.touch()
        time.sleep(seconds)
    anyio.run(main)
