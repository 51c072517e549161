"""The model API client against a local aiohttp server on 127.0.0.1: the happy path, refused
redirects, capped JSON and downloads, and total deadlines that a trickling server cannot stretch."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from soundsright_async.sandbox.client import ClientLimits, ModelClient, StepFailed, StepTimeouts

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _zip(names: list[str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in names:
            zf.writestr(name, b"RIFF")
    return buf.getvalue()


async def _ok_json(data: object) -> web.Response:
    return web.json_response(data)


class Server:
    """A model API whose routes a test can override; counts the requests per path."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.routes: dict[tuple[str, str], Handler] = {
            ("GET", "/status/"): lambda r: _ok_json({"container_running": True}),
            ("POST", "/prepare/"): lambda r: _ok_json({"preparations": True}),
            ("POST", "/upload-audio/"): self._upload,
            ("POST", "/enhance/"): lambda r: _ok_json({"status": True}),
            ("GET", "/download-enhanced/"): self._download,
            ("POST", "/reset/"): lambda r: _ok_json({"status": True, "noisy": [], "enhanced": []}),
            ("POST", "/elsewhere/"): lambda r: _ok_json({"preparations": True}),
        }
        self.uploaded: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            raise web.HTTPNotFound()
        return await handler(request)

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.uploaded = sorted(f.filename for f in form.getall("files"))  # type: ignore[union-attr]
        return web.json_response({"uploaded_files": self.uploaded, "status": True})

    async def _download(self, request: web.Request) -> web.Response:
        return web.Response(body=_zip(self.uploaded), content_type="application/zip")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    s = Server()
    await s.start()
    yield s
    await s.close()


def _wavs(tmp_path: Path, n: int = 2) -> list[Path]:
    (tmp_path / "in").mkdir()
    files = []
    for i in range(n):
        p = tmp_path / "in" / f"{i}.wav"
        p.write_bytes(b"RIFF")
        files.append(p)
    return files


def _client(server: Server, **limits: int) -> ModelClient:
    timeouts = StepTimeouts(status=2, prepare=2, upload=2, enhance=2, download=1, reset=2)
    return ModelClient(server.url, timeouts=timeouts, limits=ClientLimits(**limits))


async def test_the_contract_in_order(server: Server, tmp_path: Path) -> None:
    files = _wavs(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    async with _client(server) as client:
        await client.wait_ready()
        await client.prepare()
        await client.upload(files)
        await client.enhance()
        assert sorted(await client.download(out, inputs=2)) == ["0.wav", "1.wav"]
        await client.reset()
    assert sorted(p.name for p in out.iterdir()) == ["0.wav", "1.wav"]


async def test_redirect_is_refused(server: Server) -> None:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(server.url + "/elsewhere/")

    server.routes["POST", "/prepare/"] = redirect
    async with _client(server) as client:
        with pytest.raises(StepFailed) as failed:
            await client.prepare()
    assert (failed.value.step, failed.value.reason) == ("prepare", "http_status")
    assert "307" in failed.value.detail
    assert "/elsewhere/" not in server.hits


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
async def test_json_answer_is_capped(server: Server, chunked: bool) -> None:
    big = b'{"status": true, "pad": "' + b"x" * 5000 + b'"}'

    async def enhance(request: web.Request) -> web.StreamResponse:
        if not chunked:
            return web.Response(body=big, content_type="application/json")
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(big), 500):
            await resp.write(big[i : i + 500])
        await resp.write_eof()
        return resp

    server.routes["POST", "/enhance/"] = enhance
    async with _client(server, max_json_bytes=1024) as client:
        with pytest.raises(StepFailed) as failed:
            await client.enhance()
    assert (failed.value.step, failed.value.reason) == ("enhance", "too_large")


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
async def test_download_is_capped_and_leaves_nothing(
    server: Server, tmp_path: Path, chunked: bool
) -> None:
    async def download(request: web.Request) -> web.StreamResponse:
        if not chunked:
            return web.Response(body=b"\0" * 8192, content_type="application/zip")
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(16):
            await resp.write(b"\0" * 1024)
        await resp.write_eof()
        return resp

    server.routes["GET", "/download-enhanced/"] = download
    out = tmp_path / "out"
    out.mkdir()
    async with _client(server, max_download_bytes=4096) as client:
        with pytest.raises(StepFailed) as failed:
            await client.download(out, inputs=2)
    assert (failed.value.step, failed.value.reason) == ("download", "too_large")
    assert list(out.iterdir()) == []


async def test_trickling_download_hits_the_total_deadline(server: Server, tmp_path: Path) -> None:
    async def trickle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_type = "application/zip"
        await resp.prepare(request)
        for _ in range(600):  # one byte every 50 ms: every read succeeds, the whole never ends
            await resp.write(b"P")
            await asyncio.sleep(0.05)
        return resp

    server.routes["GET", "/download-enhanced/"] = trickle
    out = tmp_path / "out"
    out.mkdir()
    async with _client(server) as client:
        t0 = time.monotonic()
        with pytest.raises(StepFailed) as failed:
            await client.download(out, inputs=2)
        took = time.monotonic() - t0
    assert (failed.value.step, failed.value.reason) == ("download", "timeout")
    assert 0.9 < took < 2.0
    assert list(out.iterdir()) == []


async def test_trickling_json_hits_the_total_deadline(server: Server) -> None:
    async def slow_json(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)
        for ch in b'{"status": true}' * 100:
            await resp.write(bytes([ch]))
            await asyncio.sleep(0.05)
        return resp

    server.routes["POST", "/enhance/"] = slow_json
    async with _client(server) as client:
        t0 = time.monotonic()
        with pytest.raises(StepFailed) as failed:
            await client.enhance()
    assert (failed.value.step, failed.value.reason) == ("enhance", "timeout")
    assert 1.9 < time.monotonic() - t0 < 3.0


async def test_status_polls_until_ready_then_times_out_with_the_last_error(
    server: Server,
) -> None:
    answers = iter([{"container_running": False}, {"container_running": True}])
    server.routes["GET", "/status/"] = lambda r: _ok_json(next(answers))
    async with _client(server, status_poll_s=0) as client:  # type: ignore[arg-type]
        await client.wait_ready()
    assert server.hits["/status/"] == 2

    server.routes["GET", "/status/"] = lambda r: _ok_json({"container_running": False})
    async with _client(server) as client:
        with pytest.raises(StepFailed) as failed:
            await client.wait_ready()
    assert failed.value.reason == "timeout"
    assert "container_running is False" in failed.value.detail


async def test_wrong_answers_are_bad_responses(server: Server, tmp_path: Path) -> None:
    server.routes["POST", "/reset/"] = lambda r: _ok_json({"status": True, "noisy": ["x.wav"]})
    server.routes["POST", "/prepare/"] = lambda r: _ok_json(["not", "an", "object"])
    async with _client(server) as client:
        with pytest.raises(StepFailed, match="bad_response"):
            await client.reset()
        with pytest.raises(StepFailed, match="not a JSON object"):
            await client.prepare()
