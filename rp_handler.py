"""Entry point by file path, for the runpod CLI's project commands (`handler_path` in runpod.toml).

Run from the repository root (`python rp_handler.py`), it is the same as `python -m handler`.
"""

import sys

from handler.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
