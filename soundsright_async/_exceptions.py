"""The error tree. Every error the package raises on purpose derives from ``SoundsrightError``::

    SoundsrightError
    ├── ConfigError            bad/missing config file, unknown key, wrong type, missing secret
    ├── InputError             bad user input to a command (missing directory, no clean files)
    └── ScoringError           scoring could not run (our reference data is unusable)
        └── PoolError          the process pool could not run a job
            ├── WorkerCrashedError   the worker process died while running the job
            └── PoolClosedError      the pool was closed before the job could run

Each area defines its own subtree beside its code (one place to look per area):

    SoundsrightError
    ├── DatasetError                 audio/dataset/errors.py
    │   ├── SourceUnavailableError   a source is down: keep the previous dataset
    │   │   ├── SpeechAccountError   quota exhausted / bad API key (also a SpeechSourceError)
    │   │   └── CorpusError          WHAM!/Arni download, checksum or extraction
    │   └── SpeechSourceError        one clip failed after retries (redrawn)
    ├── ModelSourceError             sandbox/_errors.py
    │   ├── ModelRejected            the model itself is unusable (reason code)
    │   └── ModelUnavailable         could not be fetched this time (timeout, download)
    ├── ChainError                   chain/errors.py
    │   ├── ChainUnavailableError
    │   └── SubnetNotFoundError
    ├── PeerError                    net/client.py (unavailable, rejected, protocol)
    └── ProtocolError                protocol.py (also a ValueError)

A miner's bad output is never an exception: it scores the metric floor with a reason.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InputError",
    "PoolClosedError",
    "PoolError",
    "ScoringError",
    "SoundsrightError",
    "WorkerCrashedError",
]


class SoundsrightError(Exception):
    """Root of every error the package raises on purpose."""


class ConfigError(SoundsrightError):
    """A configuration problem, formatted as one line: ``FILE: KEY: PROBLEM``; with ``more``
    (further ``(KEY, PROBLEM)`` pairs from the same file) one such line per problem."""

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        key: str | None = None,
        more: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.problem = problem
        self.file = file
        self.key = key
        self.more = more
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        """Every problem as ``FILE: KEY: PROBLEM``."""
        pairs = [(self.key, self.problem), *self.more]
        return [": ".join(p for p in (self.file, key, problem) if p) for key, problem in pairs]


class InputError(SoundsrightError):
    """A user-supplied input (path, argument) is unusable."""


class ScoringError(SoundsrightError):
    """Scoring could not run at all, e.g. an unreadable clean reference file."""


class PoolError(ScoringError):
    """The process pool failed to run a job."""


class WorkerCrashedError(PoolError):
    """The worker process died (signal, ``os._exit``, OOM kill) while it ran the job."""

    def __init__(self, job: str, exitcode: int | None) -> None:
        self.job = job
        self.exitcode = exitcode
        if exitcode is not None and exitcode < 0:
            how = f"killed by signal {-exitcode}"
        elif exitcode is not None:
            how = f"exited with code {exitcode}"
        else:
            how = "exited"
        super().__init__(f"worker process {how} while running {job}")


class PoolClosedError(PoolError):
    """The pool is closed; no job can run."""
