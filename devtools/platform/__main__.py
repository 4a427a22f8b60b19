"""`python -m devtools.platform`: see `devtools.platform.cli`."""

import sys

from devtools.platform.cli import main

if __name__ == "__main__":
    sys.exit(main())
