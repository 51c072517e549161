from __future__ import annotations

import orjson
import pytest

from soundsright_async.competitions import get_competition
from soundsright_async.protocol import (
    PROTOCOL_VERSION,
    VERSION_KEY,
    FeedbackRequest,
    FeedbackResponse,
    ModelRequest,
    ModelResponse,
    ProtocolError,
    commitment_hash,
    commitment_payload,
    commitment_preimage,
    decode_message,
    encode_message,
    parse_commitment,
)

REV = "6bab4cf9116d72c1bc4f8e857e7cd5c40795a882"
HOTKEY = "5C4hrfjw9DjXZTzV3MwzrrAr9P1MJhSrvWGWqi1eSuyUpnhM"
REFERENCE = "41162dc080cdc8fd34d432f3914e2f74891d9b37d8b87718904a04ba58d8d415"


def _hash(competition: object) -> str:
    return commitment_hash(
        namespace="synapsecai",
        name="my_speech_enhancement_model",
        revision=REV,
        hotkey=HOTKEY,
        competition=competition,  # type: ignore[arg-type]
    )


def test_reference_commitment_vector() -> None:
    assert _hash("DENOISING_16000HZ") == REFERENCE
    assert _hash(1) == REFERENCE
    assert _hash(get_competition("denoising_16000hz")) == REFERENCE


def test_each_competition_has_its_own_id() -> None:
    pre = [
        commitment_preimage(namespace="a", name="b", revision=REV, hotkey="h", competition=c)
        for c in (1, 2, 3, 4)
    ]
    assert [p.rsplit(":", 1)[1] for p in pre] == ["1", "2", "3", "4"]
    assert len({_hash(c) for c in (1, 2, 3, 4)}) == 4


@pytest.mark.parametrize("bad", [0, 5, "NOPE", True, 1.0])
def test_unknown_competition_is_refused(bad: object) -> None:
    with pytest.raises(ProtocolError):
        _hash(bad)


def test_preimage_parts_are_checked() -> None:
    with pytest.raises(ProtocolError, match="namespace"):
        commitment_preimage(namespace="a:b", name="n", revision=REV, hotkey="h", competition=1)
    with pytest.raises(ProtocolError, match="name"):
        commitment_preimage(namespace="a", name="", revision=REV, hotkey="h", competition=1)


def test_payload_round_trip() -> None:
    raw = commitment_payload(REFERENCE)
    assert raw == REFERENCE.encode()
    assert len(raw) == 64
    assert parse_commitment(raw) == REFERENCE
    assert parse_commitment(REFERENCE + "\n") == REFERENCE
    assert parse_commitment("hello") is None
    assert parse_commitment(b"\xff" * 64) is None
    with pytest.raises(ProtocolError):
        commitment_payload(REFERENCE.upper())


def test_version_key_follows_protocol() -> None:
    assert PROTOCOL_VERSION == 3
    assert VERSION_KEY == 3000


def _feedback() -> dict[str, object]:
    return {
        "protocol_version": 3,
        "competition": "DENOISING_16000HZ",
        "epoch": 12,
        "seed": 987654321,
        "result": {
            "hotkey": "5F",
            "hf_model_namespace": "ns",
            "hf_model_name": "model",
            "hf_model_revision": REV,
            "block": 100,
            "metrics": {"PESQ": {"mean": 2.5, "ci_low": 2.4, "ci_high": 2.6}},
            "something_new": [1, 2],
        },
        "winners": {
            "PESQ": {
                "hotkey": "5G",
                "uid": 3,
                "hf_model_namespace": "w",
                "hf_model_name": "m",
                "hf_model_revision": REV,
                "score": 3.1,
            }
        },
        "future_field": {"x": 1},
    }


def test_messages_round_trip_and_ignore_unknown_fields() -> None:
    fb = decode_message(FeedbackRequest, orjson.dumps(_feedback()))
    assert fb.result is not None
    assert fb.result.metrics["PESQ"].mean == 2.5
    assert fb.winners["PESQ"].uid == 3
    again = decode_message(FeedbackRequest, encode_message(fb))
    assert again == fb
    assert "future_field" not in orjson.loads(encode_message(fb))
    req = ModelRequest(competition="dereverberation_48000hz")
    assert orjson.loads(encode_message(req)) == {
        "protocol_version": 3,
        "competition": "DEREVERBERATION_48000HZ",
    }
    resp = ModelResponse(
        competition="DENOISING_16000HZ",
        hf_model_namespace="ns",
        hf_model_name="m",
        hf_model_revision=REV,
    )
    assert decode_message(ModelResponse, encode_message(resp)) == resp
    assert decode_message(FeedbackResponse, b'{"protocol_version": 3, "ok": true}').ok


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1]", "expected a JSON object"),
        (b'{"competition": "DENOISING_16000HZ"}', "protocol_version: missing"),
        (b'{"protocol_version": 2, "competition": "DENOISING_16000HZ"}', "unsupported"),
        (b'{"protocol_version": "3", "competition": "DENOISING_16000HZ"}', "protocol_version"),
        (b'{"protocol_version": 3}', "competition: missing"),
        (b'{"protocol_version": 3, "competition": 1}', "competition"),
        (b'{"protocol_version": 3, "competition": "SUPER_RES"}', "unknown competition"),
    ],
)
def test_bad_model_requests(body: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_message(ModelRequest, body)


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (("epoch",), "12", "epoch"),
        (("seed",), 1.5, "seed"),
        (("result", "hf_model_revision"), "abc", "hf_model_revision"),
        (("result", "metrics", "PESQ", "mean"), "high", "mean"),
        (("winners", "PESQ", "uid"), True, "uid"),
    ],
)
def test_mistyped_feedback_fields(path: tuple[str, ...], value: object, match: str) -> None:
    data = _feedback()
    node: dict[str, object] = data
    for key in path[:-1]:
        node = node[key]  # type: ignore[assignment]
    node[path[-1]] = value
    with pytest.raises(ProtocolError, match=match):
        decode_message(FeedbackRequest, orjson.dumps(data))


def test_missing_feedback_field() -> None:
    data = _feedback()
    del data["seed"]
    with pytest.raises(ProtocolError, match="seed: missing"):
        decode_message(FeedbackRequest, orjson.dumps(data))
