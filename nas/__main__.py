"""``python -m nas``: the command line, for launchers that start a module (torchrun, Ray job entry points).

``python -m`` puts the current directory first on ``sys.path``; it goes last here, so that a file in the user's
working directory (a stray ``fvcore.py``, ``onnx.py``...) never replaces one of the tool's dependencies.
"""

import os
import sys


def _current_directory_last() -> None:
    here = {"", os.getcwd()}
    kept = [p for p in sys.path if p not in here]
    sys.path[:] = kept + [p for p in sys.path if p in here][:1]


if __name__ == "__main__":
    _current_directory_last()
    from nas.cli.main import main

    sys.exit(main())
