"""``python -m nas``: the command line, for launchers that start a module (torchrun, Ray job entry points)."""

import sys

from nas.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
