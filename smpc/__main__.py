"""``python -m smpc`` is the ``smpc`` command."""

import sys

from smpc.cli import main

if __name__ == "__main__":
    sys.exit(main())
