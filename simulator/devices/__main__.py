"""`python -m simulator.devices --help`."""

from __future__ import annotations

import sys

from simulator.devices.cli import main

if __name__ == "__main__":
    sys.exit(main())
