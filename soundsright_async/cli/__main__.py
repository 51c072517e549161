"""``python -m soundsright_async.cli`` is ``soundsright``."""

from __future__ import annotations

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
