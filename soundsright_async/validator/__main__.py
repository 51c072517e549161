"""Entry point: ``soundsright-validator`` or ``python -m soundsright_async.validator``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .._entry import daemon_main


def main(argv: Sequence[str] | None = None) -> int:
    return daemon_main("validator", argv, default_config="config/validator.toml")


if __name__ == "__main__":
    sys.exit(main())
