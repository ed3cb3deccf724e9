"""Entry point for ``python -m unlearn_core``."""

import sys

from unlearn_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
