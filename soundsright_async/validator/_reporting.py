"""Reporting: every judged epoch goes to a local audit log and, when configured, to a server.

``DATA_DIR/audit.jsonl`` gets one fsync'd JSON line per judged epoch: the judge input and output
and the sha256 of each dataset manifest, so anyone can check what was judged on what. When
``[reporting] url`` is set the same line is POSTed, signed over the body (btauth/1), with retries
and back-off until the server answers 2xx.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import anyio
import orjson
import structlog
import yarl

from ..net import PeerError, SignedClient
from ._context import Services

__all__ = ["Reporter", "audit_record"]

log = structlog.get_logger(__name__)
AUDIT_NAME = "audit.jsonl"


def _manifest_sha(path: str) -> str | None:
    p = Path(path) / "manifest.json"
    try:
        return hashlib.sha256(p.read_bytes()).hexdigest()
    except OSError:
        return None


def _logged_epochs(path: Path) -> set[int]:
    if not path.exists():
        return set()
    out: set[int] = set()
    with path.open("rb") as f:
        for line in f:
            try:
                out.add(int(orjson.loads(line)["epoch"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
    return out


def _append(path: Path, line: bytes) -> None:
    with path.open("ab") as f:
        if f.tell() and not _ends_with_newline(path):
            f.write(b"\n")  # never append onto a torn line
        f.write(line + b"\n")
        f.flush()
        os.fsync(f.fileno())


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


async def audit_record(svc: Services, epoch: int) -> dict[str, Any] | None:
    row = await svc.store.epoch(epoch)
    judged = await svc.store.judgement(epoch)
    if row is None or judged is None:
        return None
    manifests = {
        c: await anyio.to_thread.run_sync(_manifest_sha, p) for c, p in sorted(row.datasets.items())
    }
    return {
        "epoch": epoch,
        "start_block": row.start_block,
        "end_block": row.end_block,
        "seed": row.seed,
        "validator": svc.state.hotkey,
        "dataset_manifests_sha256": manifests,
        "judge_input": orjson.loads(judged[1]),
        "judge_output": orjson.loads(judged[2]),
    }


class Reporter:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        r = svc.settings.reporting
        self.client: SignedClient | None = None
        if r.url is not None:
            url = yarl.URL(r.url)
            self.client = SignedClient(
                svc.hotkey, concurrency=2, deadline_s=r.timeout_s, scheme=url.scheme
            )

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def step(self) -> float | None:
        svc = self.svc
        r = svc.settings.reporting
        path = svc.data_dir / AUDIT_NAME
        for pending in await svc.store.reports_pending(svc.state.now()):
            epoch = int(pending["epoch"])
            record = await audit_record(svc, epoch)
            if record is None:
                continue
            line = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
            if not pending["audit_done"]:
                if epoch not in await anyio.to_thread.run_sync(_logged_epochs, path):
                    await anyio.to_thread.run_sync(_append, path, line)
                await svc.store.report_update(epoch, audit_done=1)
                log.info("report.audit_logged", epoch=epoch, path=str(path))
            if pending["remote"] != "pending":
                continue
            if self.client is None or r.url is None:
                await svc.store.report_update(epoch, remote="disabled")
                continue
            url = yarl.URL(r.url)
            endpoint = f"{url.host}:{url.port}"
            receiver = r.receiver_hotkey or svc.state.hotkey
            attempts = int(pending["attempts"]) + 1
            try:
                resp = await self.client.post(endpoint, url.raw_path_qs, line, receiver=receiver)
                ok = 200 <= resp.status < 300
                error = "" if ok else f"HTTP {resp.status}"
            except PeerError as exc:
                ok, error = False, exc.problem
            if ok:
                await svc.store.report_update(epoch, remote="sent", attempts=attempts)
                log.info("report.sent", epoch=epoch, url=r.url)
            else:
                delay = min(r.retry_backoff_max_s, r.retry_backoff_s * 2 ** (attempts - 1))
                await svc.store.report_update(
                    epoch,
                    attempts=attempts,
                    last_error=error,
                    next_at=svc.state.now() + delay,
                )
                log.warning("report.retry", epoch=epoch, error=error, retry_in_s=delay)
        return None
