"""Signed (btauth/1) vs unsigned requests on loopback: requests/s and latency, same run.

Both servers run the same handler (decode a ``ModelRequest``, answer a ``ModelResponse``); the
signed one sits behind ``btauth_middleware`` (verify, replay cache, metagraph policy) and is
called through ``SignedClient`` (a fresh signature per request). Prints JSON; the ratio
signed/unsigned is the number to compare across machines.

    python benchmarks/signed_http.py [--requests 2000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from bittensor.sp_core import Keypair

from soundsright_async.chain.types import Metagraph, Neuron
from soundsright_async.net import CallerRule, MetagraphCache, SignedClient, btauth_middleware
from soundsright_async.protocol import (
    MODEL_PATH,
    ModelRequest,
    ModelResponse,
    decode_message,
    encode_message,
)

REV = "6bab4cf9116d72c1bc4f8e857e7cd5c40795a882"


def _app(signed: bool, miner: Keypair, validator: Keypair) -> web.Application:
    from soundsright_async.net import body_of

    async def handler(request: web.Request) -> web.Response:
        raw = body_of(request) if signed else await request.read()
        req = decode_message(ModelRequest, raw)
        resp = ModelResponse(
            competition=req.competition,
            hf_model_namespace="ns",
            hf_model_name="m",
            hf_model_revision=REV,
        )
        return web.Response(body=encode_message(resp), content_type="application/json")

    middlewares = []
    if signed:
        mg = Metagraph(
            1, 1, (Neuron(0, validator.ss58_address, validator.ss58_address, 1e4, 1e4, True, None),)
        )
        middlewares.append(
            btauth_middleware(
                receiver=miner.ss58_address,
                metagraph=MetagraphCache(mg),
                rules={MODEL_PATH: CallerRule(require_permit=True, min_stake=1000)},
            )
        )
    app = web.Application(middlewares=middlewares)
    app.router.add_post(MODEL_PATH, handler)
    return app


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"127.0.0.1:{port}"


async def _measure(
    call: Callable[[], Awaitable[int]], n: int, concurrency: int
) -> dict[str, float]:
    latencies: list[float] = []
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            t0 = time.perf_counter()
            status = await call()
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"unexpected status {status}")

    for _ in range(min(50, n)):  # warm-up: connections, caches
        await one()
    latencies.clear()
    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100)
    return {
        "requests": n,
        "requests_per_s": round(n / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1e3, 3),
        "p99_ms": round(q[98] * 1e3, 3),
    }


async def run(n: int, concurrency: int) -> dict[str, Any]:
    miner, validator = Keypair.create_from_uri("//Miner"), Keypair.create_from_uri("//Validator")
    body = encode_message(ModelRequest(competition="DENOISING_16000HZ"))
    plain_runner, plain_ep = await _serve(_app(False, miner, validator))
    signed_runner, signed_ep = await _serve(_app(True, miner, validator))
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency)
        ) as session:

            async def unsigned() -> int:
                url = f"http://{plain_ep}{MODEL_PATH}"
                headers = {"Content-Type": "application/json"}
                async with session.post(url, data=body, headers=headers) as r:
                    decode_message(ModelResponse, await r.read())
                    return r.status

            unsigned_stats = await _measure(unsigned, n, concurrency)

        async with SignedClient(validator, concurrency=concurrency) as client:

            async def signed() -> int:
                resp = await client.post(signed_ep, MODEL_PATH, body, receiver=miner.ss58_address)
                decode_message(ModelResponse, resp.body)
                return resp.status

            signed_stats = await _measure(signed, n, concurrency)
    finally:
        await plain_runner.cleanup()
        await signed_runner.cleanup()
    return {
        "benchmark": "signed_http",
        "concurrency": concurrency,
        "unsigned": unsigned_stats,
        "signed": signed_stats,
        "signed_over_unsigned_throughput": round(
            signed_stats["requests_per_s"] / unsigned_stats["requests_per_s"], 3
        ),
        "signed_over_unsigned_p99": round(signed_stats["p99_ms"] / unsigned_stats["p99_ms"], 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args()
    result = asyncio.run(run(args.requests, args.concurrency))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
