"""Fuzzed surface (issue 13.4): the model API client (``sandbox.client.ModelClient``) against a
hostile model server on loopback (raw asyncio streams, so any byte can be sent back).

For each step (status, prepare, upload, enhance, download, reset) hypothesis draws a hostile
answer: bad or wrongly shaped JSON, another status code or a redirect, a body cut short, a wrong
or unparsable Content-Length, chunked garbage, huge or too many headers, a broken status line, a
close or a reset without an answer, no answer at all, a trickled head or body, a body over the
cap (declared, or chunked), and for the download random bytes, truncated or corrupted zips and
hostile members. Every step ends in its exact ``StepFailed`` reason (a corrupted zip: success or
one of the zip reasons) within its deadline plus a little; nothing else escapes, nothing is left
in the destination directory, the same client then runs the whole contract against a well-behaved
server, and resident memory grew by less than a bound.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import socket
import struct
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from fuzzing import fuzz, rss_bytes
from hypothesis import strategies as st

from soundsright_async.sandbox.client import ClientLimits, ModelClient, StepFailed, StepTimeouts

FILES = ("0000.wav", "0001.wav")
DEADLINE_S = 0.3
"""Step deadline where the answer must time out (hang, trickle; status polling bad answers)."""
PATIENT_S = 5.0
"""Step deadline everywhere else: the failure must come from the answer, never a loaded machine."""
SLACK_S = 1.0
LIMITS = ClientLimits(
    max_json_bytes=4096,
    max_download_bytes=64 * 1024,
    max_extracted_bytes=256 * 1024,
    member_slack=2,
    status_poll_s=0.02,
)
RSS_GROWTH_BOUND = 32 * 1024 * 1024
ZIP_REASONS = {
    "not_a_zip", "too_many_members", "central_directory_too_large", "unsafe_path",
    "absolute_path", "path_traversal", "name_too_long", "not_regular", "encrypted", "duplicate",
    "path_conflict", "too_large", "bad_member",
}  # fmt: skip
GOOD_JSON = {
    "/status/": {"container_running": True},
    "/prepare/": {"preparations": True},
    "/upload-audio/": {"uploaded_files": list(FILES), "status": True},
    "/enhance/": {"status": True},
    "/reset/": {"status": True, "noisy": [], "enhanced": []},
}
PATHS = {
    "status": "/status/",
    "prepare": "/prepare/",
    "upload": "/upload-audio/",
    "enhance": "/enhance/",
    "download": "/download-enhanced/",
    "reset": "/reset/",
}
STEP_KEYS = {"container_running", "preparations", "uploaded_files", "status", "noisy", "enhanced"}


def make_zip(names: list[str] | tuple[str, ...], data: bytes = b"RIFF....WAVE") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in names:
            zf.writestr(name, data)
    return buf.getvalue()


GOOD_ZIP = make_zip(FILES)


def http(status: int, body: bytes, *, headers: str = "", length: int | None = None) -> bytes:
    n = len(body) if length is None else length
    return f"HTTP/1.1 {status} X\r\nContent-Length: {n}\r\n{headers}\r\n".encode() + body


@dataclass(frozen=True)
class Hostile:
    """What the server does with the request of the step under test: send ``chunks``
    ``pause_s`` apart, then ``close``, ``reset`` or ``hang`` (wait for the client to go)."""

    chunks: tuple[bytes, ...]
    then: str = "close"
    pause_s: float = 0.0


@dataclass
class ModelServer:
    port: int = 0
    hostile: dict[str, Hostile] = field(default_factory=dict)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            path = await read_request(reader)
            plan = self.hostile.get(path) or good_answer(path)
            for i, chunk in enumerate(plan.chunks):
                if i and plan.pause_s:
                    await asyncio.sleep(plan.pause_s)
                writer.write(chunk)
                await writer.drain()
            if plan.then == "hang":
                await reader.read()  # until the client gives up and closes
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.transport.abort()  # the client went first
            return
        if plan.then == "reset":  # SO_LINGER 0: the close sends a reset
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.close()


async def read_request(reader: asyncio.StreamReader) -> str:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    path = head.split(" ", 2)[1]
    fields = {
        k.strip().lower(): v.strip()
        for k, v in (line.split(":", 1) for line in head.split("\r\n")[1:] if ":" in line)
    }
    if "content-length" in fields:
        await reader.readexactly(int(fields["content-length"]))
    elif fields.get("transfer-encoding", "").lower() == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    return path


def good_answer(path: str) -> Hostile:
    if path == PATHS["download"]:
        return Hostile((http(200, GOOD_ZIP, headers="Content-Type: application/zip\r\n"),))
    return Hostile((http(200, orjson.dumps(GOOD_JSON.get(path, {}))),))


@asynccontextmanager
async def model_server() -> AsyncIterator[ModelServer]:
    ms = ModelServer()
    server = await asyncio.start_server(ms.handle, "127.0.0.1", 0)
    ms.port = server.sockets[0].getsockname()[1]
    try:
        yield ms
    finally:
        server.close()


# -- hostile answers -----------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)  # what orjson encodes
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(max_size=10).filter(lambda k: k not in STEP_KEYS), inner, max_size=4
        )
    ),
    max_leaves=10,
)
NOT_JSON = st.binary(max_size=300).filter(lambda b: not _is_json(b))


def _is_json(b: bytes) -> bool:
    try:
        orjson.loads(b)
    except orjson.JSONDecodeError:
        return False
    return True


@st.composite
def answer(draw: st.DrawFn, step: str) -> tuple[str, Hostile, str]:
    """``(family, hostile answer, the StepFailed reason the client must record)``; ``a|b`` when
    either is right."""
    cap = LIMITS.max_download_bytes if step == "download" else LIMITS.max_json_bytes
    good = GOOD_ZIP if step == "download" else orjson.dumps(GOOD_JSON[PATHS[step]])
    families = [
        "http_status", "redirect", "truncated", "bad_length", "chunked_garbage", "huge_header",
        "many_headers", "status_line", "close", "reset", "hang", "slow_head", "slow_body",
        "declared_too_large", "chunked_too_large",
    ]  # fmt: skip
    if step != "download":  # the zip itself is fuzzed by ``zip_case``
        families += ["not_json", "json_shape", "short_length"]
    family = draw(st.sampled_from(families))
    h: Hostile
    reason = "connection"
    if family == "http_status":
        code = draw(st.sampled_from([201, 202, 400, 401, 403, 404, 409, 413, 422, 429, 500, 502]))
        h, reason = Hostile((http(code, good),)), "http_status"
    elif family == "redirect":
        code = draw(st.sampled_from([301, 302, 303, 307, 308]))
        loc = draw(st.sampled_from(["http://127.0.0.1:1/x", "/prepare/", "http://10.0.0.1/"]))
        h, reason = Hostile((http(code, b"", headers=f"Location: {loc}\r\n"),)), "http_status"
    elif family == "truncated":
        n = draw(st.integers(1, len(good)))
        h = Hostile((http(200, good[: n - 1], length=len(good)),))
    elif family == "bad_length":
        value = draw(st.sampled_from(["abc", "-1", "1.5", "0x10", "99999999999999999999999"]))
        h = Hostile((f"HTTP/1.1 200 OK\r\nContent-Length: {value}\r\n\r\n".encode() + good,))
    elif family == "chunked_garbage":
        size = draw(st.from_regex(r"\A[g-zG-Z!@#%^&*()+=\-][0-9a-zA-Z]{0,6}\Z"))
        body = size.encode() + b"\r\n" + good + b"\r\n0\r\n\r\n"
        h = Hostile((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body,))
    elif family == "huge_header":
        n = draw(st.integers(8191, 40000))
        h = Hostile((b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * n + b"\r\n" + http(200, good)[17:],))
    elif family == "many_headers":
        n = draw(st.integers(129, 500))
        lines = b"".join(b"X-%d: 1\r\n" % i for i in range(n))
        h = Hostile((b"HTTP/1.1 200 OK\r\n" + lines + http(200, good)[17:],))
    elif family == "status_line":
        line = draw(
            st.sampled_from(
                [b"HTTP/1.1 OK\r\n", b"HTTP/9.9 200 OK\r\n", b"ICY 200 OK\r\n",
                 b"HTTP/1.1 2000 X\r\n", b"\x00\xff\r\n", b"HTTP/1.1  200 OK\r\n",
                 b"http/1.1 200 OK\r\n"]
            )
        )  # fmt: skip
        h = Hostile((line + b"Content-Length: %d\r\n\r\n" % len(good) + good,))
    elif family == "close":
        h = Hostile(())
    elif family == "reset":
        h = Hostile((), then="reset")
    elif family == "hang":
        h, reason = Hostile((), then="hang"), "timeout"
    elif family == "slow_head":
        raw = http(200, good)
        h, reason = Hostile(tuple(raw[i : i + 1] for i in range(len(raw))), pause_s=0.05), "timeout"
    elif family == "slow_body":
        n = draw(st.integers(20, 200))
        raw = http(200, b"x" * n)
        head_end = raw.index(b"\r\n\r\n") + 4
        chunks = (raw[:head_end], *(raw[i : i + 1] for i in range(head_end, len(raw))))
        h, reason = Hostile(chunks, pause_s=0.05), "timeout"
    elif family == "declared_too_large":
        n = draw(st.integers(cap + 1, 10**12))
        h, reason = Hostile((http(200, b"", length=n),), then="hang"), "too_large"
    elif family == "chunked_too_large":
        sizes = draw(
            st.lists(st.integers(1, 2 * cap), min_size=1, max_size=6).filter(lambda s: sum(s) > cap)
        )
        body = b"".join(b"%x\r\n" % n + b"z" * n + b"\r\n" for n in sizes) + b"0\r\n\r\n"
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        h, reason = Hostile((head + body,), then="hang"), "too_large"
    elif family == "not_json":
        h, reason = Hostile((http(200, draw(NOT_JSON)),)), "bad_response"
    elif family == "json_shape":
        h, reason = Hostile((http(200, orjson.dumps(draw(JSON_VALUES))),)), "bad_response"
    elif family == "short_length":  # a proper prefix of a JSON object is never JSON
        n = draw(st.integers(0, len(good) - 1))
        # the bytes past Content-Length are parsed as a next response: aiohttp may fail the read
        # on them before the short body is judged, so either failure is right
        h, reason = Hostile((http(200, good, length=n),)), "bad_response|connection"
    if step == "status" and reason not in ("too_large",):
        reason = "timeout"  # wait_ready polls on until its deadline, then reports the last error
    return family, h, reason


ANY_ZIP_OUTCOME = "|".join(["ok", *sorted(ZIP_REASONS)])


@st.composite
def zip_case(draw: st.DrawFn) -> tuple[str, str, Hostile, str]:
    """A download answered 200 with a zip that is garbage, cut short, hostile or corrupted."""
    family = draw(st.sampled_from(["garbage", "truncated", "hostile", "mutated"]))
    if family == "garbage":
        data = draw(st.binary(max_size=2000).filter(lambda b: b"PK\x05\x06" not in b))
        reason = "not_a_zip"
    elif family == "truncated":
        data, reason = GOOD_ZIP[: draw(st.integers(0, len(GOOD_ZIP) - 1))], "not_a_zip"
    elif family == "hostile":
        reason, data = draw(hostile_zip())
    else:  # bytes changed anywhere: extracted as named, or refused with a zip reason
        mutated = bytearray(GOOD_ZIP)
        for at, value in draw(
            st.lists(
                st.tuples(st.integers(0, len(mutated) - 1), st.integers(0, 255)),
                min_size=1,
                max_size=8,
            )
        ):
            mutated[at] = value
        data, reason = bytes(mutated), ANY_ZIP_OUTCOME
    return "download", f"zip_{family}", Hostile((http(200, data),)), reason


@st.composite
def hostile_zip(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(
        st.sampled_from(
            ["traversal", "absolute", "backslash", "too_many", "duplicate", "long_name",
             "symlink", "conflict", "too_large", "corrupt"]
        )
    )  # fmt: skip
    if kind == "traversal":
        return "path_traversal", make_zip(
            [FILES[0], draw(st.sampled_from(["../x.wav", "a/../../x.wav", "a//b.wav"]))]
        )
    if kind == "absolute":
        return "absolute_path", make_zip([draw(st.sampled_from(["/etc/x.wav", "C:/x.wav"]))])
    if kind == "backslash":
        return "unsafe_path", make_zip(["a\\b.wav"])
    if kind == "too_many":
        n = draw(st.integers(len(FILES) + LIMITS.member_slack + 1, 200))
        return "too_many_members", make_zip([f"{i:04d}.wav" for i in range(n)], b"")
    if kind == "duplicate":
        return "duplicate", make_zip([FILES[0], FILES[0].upper()])
    if kind == "long_name":
        return "name_too_long", make_zip(["d/" + "n" * draw(st.integers(256, 400)) + ".wav"])
    if kind == "symlink":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            info = zipfile.ZipInfo("link.wav")
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
        return "not_regular", buf.getvalue()
    if kind == "conflict":
        return "path_conflict", make_zip(["x.wav", "x.wav/y.wav"])
    if kind == "too_large":
        return "too_large", make_zip(FILES, b"\0" * (LIMITS.max_extracted_bytes // 2))
    # one member whose compressed stream is flipped somewhere: the CRC or inflate fails
    data = bytearray(make_zip([FILES[0]], bytes(range(256)) * 8))
    header = 30 + len(FILES[0])
    at = draw(st.integers(header + 2, header + 40))
    data[at] ^= draw(st.integers(1, 255))
    return "bad_member", bytes(data)


STEP_NAMES = ("status", "prepare", "upload", "enhance", "download", "reset")
Case = tuple[str, str, Hostile, str]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    step = draw(st.sampled_from(STEP_NAMES))
    family, hostile, reason = draw(answer(step))
    return step, family, hostile, reason


async def run_step(client: ModelClient, step: str, dest: Path, inputs: list[Path]) -> None:
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "status": client.wait_ready,
        "prepare": client.prepare,
        "upload": lambda: client.upload(inputs),
        "enhance": client.enhance,
        "download": lambda: client.download(dest, inputs=len(inputs)),
        "reset": client.reset,
    }
    await calls[step]()


async def good_contract(client: ModelClient, dest: Path, inputs: list[Path]) -> None:
    """The whole contract against a well-behaved server, on the same client (its session)."""
    client.timeouts = StepTimeouts(*(PATIENT_S,) * 6)
    for step in STEP_NAMES:
        await run_step(client, step, dest, inputs)
    assert clear(dest) == sorted(FILES)


def clear(dest: Path) -> list[str]:
    """Empty ``dest``; returns what was in it."""
    names = sorted(p.name for p in dest.iterdir())
    for name in names:
        if (dest / name).is_dir():
            shutil.rmtree(dest / name)
        else:
            (dest / name).unlink()
    return names


def outside(root: Path, dest: Path) -> list[str]:
    """Every path under ``root`` but not under ``dest`` (a download must write nowhere else)."""
    return sorted(str(p) for p in root.rglob("*") if dest not in (p, *p.parents))


async def outcome(client: ModelClient, step: str, dest: Path, inputs: list[Path]) -> str:
    """The step's ``StepFailed`` reason, or ``ok``; anything else escapes (a bug)."""
    try:
        await run_step(client, step, dest, inputs)
    except StepFailed as exc:
        if exc.step != step or not exc.detail:
            raise AssertionError(f"{step}: incomplete failure record {exc!r}") from exc
        return exc.reason
    return "ok"


async def test_hostile_answers_are_recorded_failures_within_the_step_deadline(
    tmp_path: Path,
) -> None:
    inputs = []
    for name in FILES:
        (tmp_path / name).write_bytes(b"RIFF....WAVE" * 10)
        inputs.append(tmp_path / name)
    dest = tmp_path / "out"
    dest.mkdir()
    seen: dict[str, set[str]] = {}
    families: dict[str, set[str]] = {}
    async with model_server() as ms:
        url = f"http://127.0.0.1:{ms.port}"
        async with ModelClient(url, limits=LIMITS) as client:
            await good_contract(client, dest, inputs)
            before = outside(tmp_path, dest)
            rss0 = 0

            async def case(c: Case) -> None:
                step, family, hostile, reason = c
                ms.hostile = {PATHS[step]: hostile}
                deadline = DEADLINE_S if "timeout" in reason else PATIENT_S
                client.timeouts = StepTimeouts(*(deadline,) * 6)
                t0 = time.monotonic()
                try:
                    got = await outcome(client, step, dest, inputs)
                finally:
                    ms.hostile = {}
                took = time.monotonic() - t0
                left = clear(dest)
                assert got in reason.split("|"), (step, family, got, reason)
                assert took < deadline + SLACK_S, (step, family, took)
                if family == "declared_too_large":  # the server then hangs: refused from the head
                    assert took < SLACK_S, (step, family, took)
                if got != "ok":
                    assert left == [], (step, family, left)  # a failed download leaves nothing
                assert outside(tmp_path, dest) == before, (step, family)
                seen.setdefault(step, set()).add(got)
                families.setdefault(family, set()).add(got)

            for batch in range(2):
                for strategy, n in ((cases(), 150), (zip_case(), 100)):
                    await fuzz(strategy, case, max_examples=n, limit_s=10.0)
                    await good_contract(client, dest, inputs)
                if batch == 0:  # the first pass also warms hypothesis and every cache up
                    rss0 = rss_bytes()
            grew = rss_bytes() - rss0
    assert grew < RSS_GROWTH_BOUND, grew
    assert set(seen) == set(STEP_NAMES), seen
    assert {"connection", "timeout", "too_large", "http_status", "bad_response"} <= set().union(
        *seen.values()
    ), seen
    assert {f"zip_{f}" for f in ("garbage", "truncated", "hostile", "mutated")} <= set(families)
