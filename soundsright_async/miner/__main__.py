"""Entry point: ``soundsright-miner`` or ``python -m soundsright_async.miner``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .._entry import daemon_main


def main(argv: Sequence[str] | None = None) -> int:
    return daemon_main("miner", argv, default_config="config/miner.toml")


if __name__ == "__main__":
    sys.exit(main())
