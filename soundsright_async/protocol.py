"""Wire protocol v3 and the on-chain commitment format.

Commitment
    A miner binds a model to its hotkey and a competition by committing
    ``sha256("namespace:name:revision:hotkey:competition_id").hexdigest()`` (64 lowercase hex
    characters) as a 64-byte raw commitment (``Raw64``). Competition ids are 1..4
    (``competitions.py``).

Wire protocol v3
    JSON (orjson) over btauth/1-signed HTTP; every message carries ``protocol_version``:

    * ``POST /v3/model`` (validator -> miner): ``ModelRequest`` -> ``ModelResponse``, or 404 when
      the miner has no model for the competition.
    * ``POST /v3/feedback`` (validator -> miner): ``FeedbackRequest`` -> ``FeedbackResponse``.

    Both sides validate with ``decode_message``: unknown fields are ignored, a missing or
    mistyped field (no coercion: ``"1"`` is not an int) raises ``ProtocolError``, which a server
    answers with 400.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Final, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ._exceptions import SoundsrightError
from .competitions import Competition, competition_by_chain_id, get_competition

__all__ = [
    "COMMITMENT_BYTES",
    "FEEDBACK_PATH",
    "MODEL_PATH",
    "PROTOCOL_VERSION",
    "VERSION_KEY",
    "FeedbackRequest",
    "FeedbackResponse",
    "MetricStats",
    "MinerResult",
    "ModelRequest",
    "ModelResponse",
    "ProtocolError",
    "Winner",
    "commitment_hash",
    "commitment_payload",
    "commitment_preimage",
    "decode_message",
    "encode_message",
    "parse_commitment",
]

PROTOCOL_VERSION: Final = 3
VERSION_KEY: Final = PROTOCOL_VERSION * 1000
"""``version_key`` for weights: 3000 for protocol 3 (the 2.x reference used 2014)."""
COMMITMENT_BYTES: Final = 64
MODEL_PATH: Final = "/v3/model"
FEEDBACK_PATH: Final = "/v3/feedback"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ProtocolError(SoundsrightError, ValueError):
    """A message or commitment does not follow protocol v3; the message says which field."""


# --- commitment --------------------------------------------------------------------------


def _competition(competition: Competition | str | int) -> Competition:
    if isinstance(competition, Competition):
        return competition
    try:
        if isinstance(competition, int) and not isinstance(competition, bool):
            return competition_by_chain_id(competition)
        if isinstance(competition, str):
            return get_competition(competition)
    except KeyError as exc:
        raise ProtocolError(exc.args[0]) from None
    raise ProtocolError(f"competition must be a name or an id 1..4, not {competition!r}")


def commitment_preimage(
    *,
    namespace: str,
    name: str,
    revision: str,
    hotkey: str,
    competition: Competition | str | int,
) -> str:
    """``namespace:name:revision:hotkey:competition_id``; no part may be empty or hold ``:``."""
    parts = {"namespace": namespace, "name": name, "revision": revision, "hotkey": hotkey}
    for key, value in parts.items():
        if not value or ":" in value:
            raise ProtocolError(f"{key} must be non-empty and without ':', not {value!r}")
    cid = _competition(competition).chain_id
    return f"{namespace}:{name}:{revision}:{hotkey}:{cid}"


def commitment_hash(
    *,
    namespace: str,
    name: str,
    revision: str,
    hotkey: str,
    competition: Competition | str | int,
) -> str:
    """The 64-character lowercase hex sha256 of the preimage."""
    pre = commitment_preimage(
        namespace=namespace, name=name, revision=revision, hotkey=hotkey, competition=competition
    )
    return hashlib.sha256(pre.encode("utf-8")).hexdigest()


def commitment_payload(hex_digest: str) -> bytes:
    """The 64 ASCII bytes written on chain as ``Raw64``."""
    if not _HEX64.match(hex_digest):
        raise ProtocolError(f"a commitment is 64 lowercase hex characters, not {hex_digest!r}")
    return hex_digest.encode("ascii")


def parse_commitment(data: str | bytes) -> str | None:
    """The hex digest in a commitment read back from chain, or None if it is not one of ours."""
    if isinstance(data, bytes):
        try:
            data = data.decode("ascii")
        except UnicodeDecodeError:
            return None
    data = data.strip()
    return data if _HEX64.match(data) else None


# --- messages ----------------------------------------------------------------------------


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    protocol_version: int = PROTOCOL_VERSION

    @field_validator("protocol_version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v != PROTOCOL_VERSION:
            raise ValueError(
                f"unsupported protocol_version {v}; this peer speaks {PROTOCOL_VERSION}"
            )
        return v


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


def _canonical_competition(v: str) -> str:
    try:
        return get_competition(v).name
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None


class _HasCompetition(_Message):
    competition: str

    @field_validator("competition")
    @classmethod
    def _competition(cls, v: str) -> str:
        return _canonical_competition(v)


def _name() -> Any:
    return Field(min_length=1, max_length=96, pattern=r"^[^:\s]+$")


class ModelRequest(_HasCompetition):
    """``POST /v3/model`` body: which competition the validator asks about."""


class ModelResponse(_HasCompetition):
    """The miner's model for the competition: a HuggingFace repo pinned to a commit."""

    hf_model_namespace: str = _name()
    hf_model_name: str = _name()
    hf_model_revision: str = Field(pattern=r"^[0-9a-f]{40}$")


class MetricStats(_Part):
    """One metric of a benchmark: mean over the dataset and its 95% confidence interval."""

    mean: float
    ci_low: float | None = None
    ci_high: float | None = None


class MinerResult(_Part):
    """The validator's benchmark result for one miner's model in one competition."""

    hotkey: str = Field(min_length=1)
    hf_model_namespace: str = _name()
    hf_model_name: str = _name()
    hf_model_revision: str = Field(pattern=r"^[0-9a-f]{40}$")
    block: int | None = None
    """Block of the miner's commitment."""
    model_hash: str | None = None
    valid: bool = True
    reason: str | None = None
    """Why the model was not scored or was invalid (build failure, commitment mismatch, ...)."""
    metrics: dict[str, MetricStats] = Field(default_factory=dict)


class Winner(_Part):
    """The winner of one (competition, metric) sub-competition."""

    hotkey: str = Field(min_length=1)
    uid: int | None = None
    hf_model_namespace: str = _name()
    hf_model_name: str = _name()
    hf_model_revision: str = Field(pattern=r"^[0-9a-f]{40}$")
    score: float


class FeedbackRequest(_HasCompetition):
    """``POST /v3/feedback`` body: the miner's result and the current winners by metric."""

    epoch: int = Field(ge=0)
    seed: int
    result: MinerResult | None
    """None when the miner had no scorable submission this epoch."""
    winners: dict[str, Winner] = Field(default_factory=dict)
    """Metric name (``PESQ``, ``ESTOI``, ...) -> winner."""


class FeedbackResponse(_Message):
    ok: Literal[True] = True


M = TypeVar("M", bound=BaseModel)


def encode_message(message: BaseModel) -> bytes:
    """The exact bytes to send (and sign)."""
    return orjson.dumps(message.model_dump(mode="json"))


def _describe(err: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "(body)"
    if err["type"] == "missing":
        return f"{loc}: missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"].endswith("_type") or err["type"] == "literal_error":
        return f"{loc}: {msg} (got {type(err['input']).__name__})"
    return f"{loc}: {msg}"


def decode_message(model: type[M], body: bytes | str | dict[str, Any]) -> M:
    """Parse and validate a message; ``ProtocolError`` names the first bad field."""
    if isinstance(body, dict):
        data: Any = body
    else:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"{model.__name__}: malformed JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{model.__name__}: expected a JSON object, got {type(data).__name__}")
    if issubclass(model, _Message) and "protocol_version" not in data:
        raise ProtocolError(f"{model.__name__}: protocol_version: missing")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ProtocolError(f"{model.__name__}: {_describe(errors[0])}{more}") from None
