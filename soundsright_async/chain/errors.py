"""Chain errors, under ``SoundsrightError``::

    ChainError                 a chain read failed or returned something unusable
    ├── ChainUnavailableError  the chain could not be reached within the deadline (after retries)
    └── SubnetNotFoundError    the configured netuid does not exist

A write the chain refuses is not an exception: it is a ``WriteResult`` with a reason.
"""

from __future__ import annotations

from .._exceptions import SoundsrightError

__all__ = ["ChainError", "ChainUnavailableError", "SubnetNotFoundError"]


class ChainError(SoundsrightError):
    def __init__(self, problem: str, *, network: str, netuid: int | None = None) -> None:
        self.problem = problem
        self.network = network
        self.netuid = netuid
        where = network if netuid is None else f"{network} netuid {netuid}"
        super().__init__(f"chain {where}: {problem}")


class ChainUnavailableError(ChainError):
    """Connection refused or dropped, or the call's deadline passed."""


class SubnetNotFoundError(ChainError):
    pass
