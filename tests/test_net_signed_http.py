"""btauth/1 on loopback: every refusal maps to the right 4xx and the server keeps serving."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import orjson
import pytest
from aiohttp import web
from bittensor import http_auth as ha
from bittensor.sp_core import Keypair

from soundsright_async.chain.types import Metagraph, Neuron
from soundsright_async.net import (
    CallerRule,
    MetagraphCache,
    PeerRejectedError,
    PeerUnavailableError,
    SignedClient,
    body_of,
    btauth_middleware,
    caller_of,
    message_response,
)
from soundsright_async.protocol import (
    FEEDBACK_PATH,
    MODEL_PATH,
    FeedbackRequest,
    FeedbackResponse,
    ModelRequest,
    ModelResponse,
    decode_message,
)

MINER = Keypair.create_from_uri("//Miner")
VALIDATOR = Keypair.create_from_uri("//Validator")
POOR = Keypair.create_from_uri("//PoorValidator")
PLAIN = Keypair.create_from_uri("//PlainNeuron")
STRANGER = Keypair.create_from_uri("//Stranger")
REV = "6bab4cf9116d72c1bc4f8e857e7cd5c40795a882"
CAP = 4096


def _metagraph() -> Metagraph:
    rows = [
        (MINER, 0.0, False),
        (VALIDATOR, 5000.0, True),
        (POOR, 10.0, True),
        (PLAIN, 9000.0, False),
    ]
    return Metagraph(
        1,
        100,
        tuple(
            Neuron(i, k.ss58_address, k.ss58_address, s, s, p, None)
            for i, (k, s, p) in enumerate(rows)
        ),
    )


async def model_handler(request: web.Request) -> web.Response:
    req = decode_message(ModelRequest, body_of(request))
    if req.competition != "DENOISING_16000HZ":
        raise web.HTTPNotFound(reason=f"no model for {req.competition}")
    return message_response(
        ModelResponse(
            competition=req.competition,
            hf_model_namespace="ns",
            hf_model_name="m",
            hf_model_revision=REV,
        )
    )


async def feedback_handler(request: web.Request) -> web.Response:
    decode_message(FeedbackRequest, body_of(request))
    assert caller_of(request).neuron.validator_permit
    return message_response(FeedbackResponse())


async def whoami(request: web.Request) -> web.Response:
    return web.json_response({"hotkey": caller_of(request).hotkey})


async def health(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@dataclass
class Server:
    endpoint: str
    url: str


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    miner_rule = CallerRule(require_permit=True, min_stake=1000.0)
    app = web.Application(
        middlewares=[
            btauth_middleware(
                receiver=MINER.ss58_address,
                metagraph=MetagraphCache(_metagraph()),
                rules={MODEL_PATH: miner_rule, FEEDBACK_PATH: miner_rule},
                public_paths=frozenset({"/health"}),
                max_body_bytes=CAP,
            )
        ]
    )
    app.router.add_post(MODEL_PATH, model_handler)
    app.router.add_post(FEEDBACK_PATH, feedback_handler)
    app.router.add_post("/whoami", whoami)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield Server(f"127.0.0.1:{port}", f"http://127.0.0.1:{port}")
    await runner.cleanup()


def _signed(
    key: Keypair,
    path: str,
    body: bytes,
    *,
    receiver: str | None = None,
    nonce_ns: int | None = None,
) -> dict[str, str]:
    return ha.sign(
        key,
        method="POST",
        path=path,
        body=body,
        receiver_ss58=receiver or MINER.ss58_address,
        nonce_ns=nonce_ns,
    )


MODEL_BODY = b'{"protocol_version": 3, "competition": "DENOISING_16000HZ"}'


async def test_client_round_trip(server: Server) -> None:
    async with SignedClient(VALIDATOR, deadline_s=5) as client:
        got = await client.call(
            server.endpoint,
            MODEL_PATH,
            ModelRequest(competition="DENOISING_16000HZ"),
            ModelResponse,
            receiver=MINER.ss58_address,
        )
        assert got is not None
        assert got.hf_model_revision == REV
        none = await client.call(
            server.endpoint,
            MODEL_PATH,
            ModelRequest(competition="DENOISING_48000HZ"),
            ModelResponse,
            receiver=MINER.ss58_address,
        )
        assert none is None
        fb = FeedbackRequest(competition="DENOISING_16000HZ", epoch=1, seed=2, result=None)
        ok = await client.call(
            server.endpoint, FEEDBACK_PATH, fb, FeedbackResponse, receiver=MINER.ss58_address
        )
        assert ok is not None
        assert ok.ok
        with pytest.raises(PeerRejectedError) as exc:
            await client.call(
                server.endpoint,
                MODEL_PATH,
                ModelRequest(competition="DENOISING_16000HZ"),
                ModelResponse,
                receiver=VALIDATOR.ss58_address,
            )
        assert exc.value.status == 401
        # many concurrent calls through a small slot pool: all fresh nonces, all accepted
    async with SignedClient(VALIDATOR, concurrency=2) as client:
        results = await asyncio.gather(
            *(
                client.post(server.endpoint, "/whoami", b"{}", receiver=MINER.ss58_address)
                for _ in range(20)
            )
        )
        assert {r.status for r in results} == {200}


async def test_client_deadline_and_unreachable() -> None:
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with SignedClient(VALIDATOR) as client:
            t0 = time.monotonic()
            with pytest.raises(PeerUnavailableError, match=r"0\.2s"):
                await client.post(
                    f"127.0.0.1:{port}", "/slow", b"{}", receiver=MINER.ss58_address, deadline_s=0.2
                )
            assert time.monotonic() - t0 < 2
    finally:
        await runner.cleanup()
    async with SignedClient(VALIDATOR, deadline_s=2) as client:
        with pytest.raises(PeerUnavailableError):
            await client.post(f"127.0.0.1:{port}", "/slow", b"{}", receiver=MINER.ss58_address)


async def _post(
    session: aiohttp.ClientSession, server: Server, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, object]]:
    async with session.post(server.url + path, data=body, headers=headers) as r:
        return r.status, orjson.loads(await r.read())


def _bad_requests() -> list[tuple[str, str, bytes, dict[str, str], int]]:
    now = time.time_ns()
    replay_headers = _signed(VALIDATOR, MODEL_PATH, MODEL_BODY)
    big = b"x" * (CAP + 1)
    return [
        ("unsigned", MODEL_PATH, MODEL_BODY, {}, 401),
        (
            "tampered body",
            MODEL_PATH,
            MODEL_BODY.replace(b"16000", b"48000"),
            _signed(VALIDATOR, MODEL_PATH, MODEL_BODY),
            401,
        ),
        (
            "tampered path",
            FEEDBACK_PATH,
            MODEL_BODY,
            _signed(VALIDATOR, MODEL_PATH, MODEL_BODY),
            401,
        ),
        (
            "wrong receiver",
            MODEL_PATH,
            MODEL_BODY,
            _signed(VALIDATOR, MODEL_PATH, MODEL_BODY, receiver=VALIDATOR.ss58_address),
            401,
        ),
        (
            "stale",
            MODEL_PATH,
            MODEL_BODY,
            _signed(VALIDATOR, MODEL_PATH, MODEL_BODY, nonce_ns=now - 60 * 10**9),
            401,
        ),
        (
            "future",
            MODEL_PATH,
            MODEL_BODY,
            _signed(VALIDATOR, MODEL_PATH, MODEL_BODY, nonce_ns=now + 60 * 10**9),
            401,
        ),
        ("replay #1 is accepted", MODEL_PATH, MODEL_BODY, replay_headers, 200),
        ("replayed", MODEL_PATH, MODEL_BODY, replay_headers, 401),
        ("unregistered", MODEL_PATH, MODEL_BODY, _signed(STRANGER, MODEL_PATH, MODEL_BODY), 403),
        ("no permit", MODEL_PATH, MODEL_BODY, _signed(PLAIN, MODEL_PATH, MODEL_BODY), 403),
        ("low stake", MODEL_PATH, MODEL_BODY, _signed(POOR, MODEL_PATH, MODEL_BODY), 403),
        ("oversized", MODEL_PATH, big, _signed(VALIDATOR, MODEL_PATH, big), 413),
        ("malformed JSON", MODEL_PATH, b"{oops", _signed(VALIDATOR, MODEL_PATH, b"{oops"), 400),
        (
            "missing field",
            MODEL_PATH,
            b'{"protocol_version": 3}',
            _signed(VALIDATOR, MODEL_PATH, b'{"protocol_version": 3}'),
            400,
        ),
        (
            "mistyped field",
            MODEL_PATH,
            b'{"protocol_version": 3, "competition": 1}',
            _signed(VALIDATOR, MODEL_PATH, b'{"protocol_version": 3, "competition": 1}'),
            400,
        ),
    ]


async def test_each_refusal_gets_its_status(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        for name, path, body, headers, want in _bad_requests():
            status, payload = await _post(session, server, path, body, headers)
            assert status == want, (name, payload)
            if want != 200:
                assert payload["status"] == want, name
                assert payload["error"], name
        # registered but not a validator may still call a route with the default rule
        status, payload = await _post(
            session, server, "/whoami", b"{}", _signed(PLAIN, "/whoami", b"{}")
        )
        assert (status, payload) == (200, {"hotkey": PLAIN.ss58_address})
        async with session.get(server.url + "/health") as r:
            assert r.status == 200


async def test_thousands_of_bad_requests_then_a_good_one(server: Server) -> None:
    rng = random.Random(7)
    all_cases = _bad_requests()
    cases = [c for c in all_cases if c[4] != 200]
    first_use = next(c for c in all_cases if c[4] == 200)  # so that "replayed" is a replay
    # pre-sign a pool of bad requests (signing is the slow part); replays reuse them freely
    pool = [cases[i % len(cases)] for i in range(60)]
    counts: dict[int, int] = {}
    conn = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=conn) as session:
        sem = asyncio.Semaphore(32)
        assert (await _post(session, server, *first_use[1:4]))[0] == 200

        async def fire(case: tuple[str, str, bytes, dict[str, str], int]) -> None:
            name, path, body, headers, want = case
            async with sem, session.post(server.url + path, data=body, headers=headers) as r:
                await r.read()
                got = r.status
            # 400/403 cases carry valid one-shot signatures: their repeats are replays (401)
            assert got == want or (want in (400, 403) and got == 401), name
            counts[got] = counts.get(got, 0) + 1

        await asyncio.gather(*(fire(rng.choice(pool)) for _ in range(3000)))
        assert sum(counts.values()) == 3000
        assert 500 not in counts
        assert 200 not in counts
        status, payload = await _post(
            session, server, MODEL_PATH, MODEL_BODY, _signed(VALIDATOR, MODEL_PATH, MODEL_BODY)
        )
        assert status == 200
        assert payload["hf_model_revision"] == REV
