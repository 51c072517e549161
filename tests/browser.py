"""A headless Chromium driven over the DevTools protocol (aiohttp websocket), for page tests:
load a URL, collect console errors, exceptions and failed loads, evaluate JavaScript, screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--window-size=1280,900",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    def __init__(self, exe: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="sr-chromium-")
        self.log = Path(self.profile) / "stderr.log"
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                [exe, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + 60
        while True:
            m = re.search(rb"DevTools listening on ws://127\.0\.0\.1:(\d+)/", self.log.read_bytes())
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("chromium did not start:\n" + self.log.read_text()[-2000:])
            time.sleep(0.1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    async def open(self, url: str, *, timeout_s: float = 60) -> Page:
        new = f"http://127.0.0.1:{self.port}/json/new?about:blank"
        async with aiohttp.ClientSession() as http, http.put(new) as resp:
            target = await resp.json()
        page = Page(self.port, target["id"])
        await page.connect(target["webSocketDebuggerUrl"])
        await page.goto(url, timeout_s)
        return page


class Page:
    def __init__(self, port: int, target_id: str) -> None:
        self.port, self.target_id = port, target_id
        self.errors: list[str] = []
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._loaded = asyncio.Event()

    async def connect(self, ws_url: str) -> None:
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(ws_url, max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        for domain in ("Page", "Runtime", "Log", "Network"):
            await self.send(f"{domain}.enable")

    async def _read(self) -> None:
        async for msg in self._ws:
            data = msg.json()
            if "id" in data:
                fut = self._waiting.pop(data["id"], None)
                if fut is not None and not fut.done():
                    if "error" in data:
                        fut.set_exception(RuntimeError(str(data["error"])))
                    else:
                        fut.set_result(data.get("result", {}))
                continue
            method, p = data.get("method"), data.get("params", {})
            if method == "Page.loadEventFired":
                self._loaded.set()
            elif method == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                self.errors.append(f"exception: {d.get('exception', {}).get('description', d)}")
            elif method == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                self.errors.append(f"console.{p['type']}: {p['args']}")
            elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
                self.errors.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif method == "Network.loadingFailed":
                self.errors.append(f"load failed: {p.get('errorText')} {p.get('blockedReason')}")
            elif method == "Network.responseReceived" and p["response"]["status"] >= 400:
                self.errors.append(f"HTTP {p['response']['status']}: {p['response']['url']}")

    async def send(self, method: str, params: dict[str, Any] | None = None) -> Any:
        i = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[i] = fut
        await self._ws.send_json({"id": i, "method": method, "params": params or {}})
        return await asyncio.wait_for(fut, 60)

    async def goto(self, url: str, timeout_s: float = 60) -> None:
        self._loaded.clear()
        await self.send("Page.navigate", {"url": url})
        await asyncio.wait_for(self._loaded.wait(), timeout_s)

    async def eval(self, expression: str) -> Any:
        r = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def count(self, selector: str) -> int:
        return int(await self.eval(f"document.querySelectorAll({selector!r}).length"))

    async def screenshot(self, path: Path) -> bytes:
        size = await self.eval(
            "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
        )
        shot = await self.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1},
            },
        )
        data = base64.b64decode(shot["data"])
        await asyncio.to_thread(_write, path, data)
        return data

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()
        with contextlib.suppress(aiohttp.ClientError):
            async with self._http.get(
                f"http://127.0.0.1:{self.port}/json/close/{self.target_id}"
            ) as resp:
                await resp.read()
        await self._http.close()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def artifacts_dir() -> Path:
    """Screenshots of the page tests (``tests/artifacts/``, git-ignored; override with
    ``SOUNDSRIGHT_TEST_ARTIFACTS``)."""
    default = Path(__file__).resolve().parent / "artifacts"
    return Path(os.environ.get("SOUNDSRIGHT_TEST_ARTIFACTS", default))


def launch_browser() -> Iterator[Browser]:
    """For a module-scoped fixture: a running Chromium, or a skip that says why it cannot run."""
    import pytest

    exe = find_chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    try:
        b = Browser(exe)
    except RuntimeError as exc:
        pytest.skip(f"chromium is installed but cannot start here: {exc}")
    try:
        yield b
    finally:
        b.close()
