"""Dataset errors. They extend the package tree (``soundsright_async._exceptions``)::

SoundsrightError
└── DatasetError                     a dataset could not be generated; nothing is left at the
    │                                final path
    ├── SourceUnavailableError       a source cannot serve this epoch (speech service down
    │   │                            after every redraw, quota, refused key, corpus download):
    │   │                            the validator keeps the previous dataset
    │   ├── SpeechAccountError       quota exhausted or API key refused (also SpeechSourceError)
    │   └── CorpusError              a corpus download/verification/extraction failed
    └── SpeechSourceError            one clip failed after the source's retries (the clip is
                                     redrawn with the next voice; raised only by sources)
"""

from __future__ import annotations

from ..._exceptions import SoundsrightError

__all__ = [
    "CorpusError",
    "DatasetError",
    "SourceUnavailableError",
    "SpeechAccountError",
    "SpeechSourceError",
]


class DatasetError(SoundsrightError):
    """A dataset could not be generated."""


class SourceUnavailableError(DatasetError):
    """A speech, noise or RIR source cannot serve this run; ``source`` names it.

    Not a problem of one clip: every redraw failed, or the account or corpus is unusable.
    A validator catches this, keeps serving the previous dataset and says so.
    """

    def __init__(self, message: str, *, source: str) -> None:
        super().__init__(message)
        self.source = source


class SpeechSourceError(DatasetError):
    """A speech clip could not be produced, with the source's name and the clip index."""

    def __init__(self, message: str, *, source: str, index: int | None = None) -> None:
        where = f" (clip {index})" if index is not None else ""
        DatasetError.__init__(self, f"{source}{where}: {message}")
        self.source = source
        self.index = index


class SpeechAccountError(SpeechSourceError, SourceUnavailableError):
    """The account cannot serve more requests (quota exhausted, key invalid): retrying is futile."""


class CorpusError(SourceUnavailableError):
    """A corpus could not be downloaded, verified or extracted."""

    def __init__(self, message: str, *, source: str = "corpus") -> None:
        super().__init__(message, source=source)
