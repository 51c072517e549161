"""Dataset errors. They extend the package tree (``soundsright_async._exceptions``)::

SoundsrightError
└── DatasetError                 a dataset could not be generated; nothing is left at the
    │                            final path
    ├── SpeechSourceError        the speech source failed (after its retries)
    │   └── SpeechAccountError   quota exhausted or API key refused: stop the run
    └── CorpusError              a corpus download/verification/extraction failed
"""

from __future__ import annotations

from ..._exceptions import SoundsrightError

__all__ = ["CorpusError", "DatasetError", "SpeechAccountError", "SpeechSourceError"]


class DatasetError(SoundsrightError):
    """A dataset could not be generated."""


class SpeechSourceError(DatasetError):
    """A speech clip could not be produced, with the source's name and the clip index."""

    def __init__(self, message: str, *, source: str, index: int | None = None) -> None:
        self.source = source
        self.index = index
        where = f" (clip {index})" if index is not None else ""
        super().__init__(f"{source}{where}: {message}")


class SpeechAccountError(SpeechSourceError):
    """The account cannot serve more requests (quota exhausted, key invalid): retrying is futile."""


class CorpusError(DatasetError):
    """A corpus could not be downloaded, verified or extracted."""
