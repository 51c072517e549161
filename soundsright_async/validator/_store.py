"""The validator's durable state: one SQLite file (WAL), one module owning its schema.

Every write is one transaction (``BEGIN IMMEDIATE`` … ``COMMIT``, ``synchronous=FULL``), so a
``kill -9`` at any instant leaves either the whole write or none of it: a finished benchmark is
never lost, and a restart resumes the same epoch with the same seed and dataset. Calls run in a
single worker thread (a ``CapacityLimiter`` of one), never on the event loop.

Schema versions live in ``PRAGMA user_version``; ``_MIGRATIONS[i]`` upgrades version ``i`` to
``i + 1`` inside the same transaction that bumps the version.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import orjson

__all__ = ["CandidateRow", "EpochRow", "OutboxItem", "ResultRow", "Store", "StoreError"]

T = TypeVar("T")

_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE epochs (
        number INTEGER PRIMARY KEY, start_block INTEGER NOT NULL, end_block INTEGER NOT NULL,
        start_hash TEXT NOT NULL, seed INTEGER NOT NULL, status TEXT NOT NULL,
        datasets TEXT NOT NULL DEFAULT '{}', note TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL, judged_at REAL
    );
    CREATE TABLE candidates (
        epoch INTEGER NOT NULL, hotkey TEXT NOT NULL, competition TEXT NOT NULL,
        uid INTEGER NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, revision TEXT NOT NULL,
        commitment_block INTEGER NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
        content_hash TEXT NOT NULL DEFAULT '', ckpt_hashes TEXT NOT NULL DEFAULT '[]',
        kind TEXT NOT NULL DEFAULT 'miner', source TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL, updated_at REAL NOT NULL,
        PRIMARY KEY (epoch, hotkey, competition)
    );
    CREATE TABLE rejections (
        epoch INTEGER NOT NULL, hotkey TEXT NOT NULL, competition TEXT NOT NULL,
        uid INTEGER, reason TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '', at REAL NOT NULL,
        PRIMARY KEY (epoch, hotkey, competition)
    );
    CREATE TABLE results (
        epoch INTEGER NOT NULL, hotkey TEXT NOT NULL, competition TEXT NOT NULL,
        uid INTEGER NOT NULL, kind TEXT NOT NULL, content_hash TEXT NOT NULL,
        passed INTEGER NOT NULL, failed_step TEXT, reason TEXT, detail TEXT,
        steps TEXT NOT NULL, metrics TEXT, engine TEXT NOT NULL DEFAULT '',
        shared_from TEXT, created_at REAL NOT NULL,
        PRIMARY KEY (epoch, hotkey, competition)
    );
    CREATE TABLE unprocessed (
        epoch INTEGER NOT NULL, competition TEXT NOT NULL, metrics TEXT NOT NULL,
        PRIMARY KEY (epoch, competition)
    );
    CREATE TABLE judgements (
        epoch INTEGER PRIMARY KEY, input TEXT NOT NULL, output TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE weight_attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT, epoch INTEGER NOT NULL, block INTEGER,
        status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', weights TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, epoch INTEGER NOT NULL,
        hotkey TEXT NOT NULL, competition TEXT NOT NULL, body BLOB NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL, expires_at REAL NOT NULL, last_error TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL
    );
    CREATE INDEX outbox_due ON outbox (status, next_at);
    CREATE TABLE reports (
        epoch INTEGER PRIMARY KEY, audit_done INTEGER NOT NULL DEFAULT 0,
        remote TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT ''
    );
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)


class StoreError(Exception):
    """The state file cannot be opened or written (disk full, read-only, corrupt)."""


@dataclass(frozen=True, slots=True)
class EpochRow:
    number: int
    start_block: int
    end_block: int
    start_hash: str
    seed: int
    status: str
    """``open`` → ``ready`` (datasets made) → ``judged``; or ``missed`` / ``failed``."""
    datasets: dict[str, str]
    note: str
    created_at: float
    judged_at: float | None


@dataclass(frozen=True, slots=True)
class CandidateRow:
    epoch: int
    hotkey: str
    competition: str
    uid: int
    namespace: str
    name: str
    revision: str
    commitment_block: int
    state: str
    """``accepted`` → ``running`` → ``done``; ``failed`` (fetch) or ``dropped`` (deregistered)."""
    reason: str = ""
    content_hash: str = ""
    ckpt_hashes: tuple[str, ...] = ()
    kind: str = "miner"
    """``miner`` or ``baseline``."""
    source: str = ""
    """For a baseline: its local path, when it is not fetched."""


@dataclass(frozen=True, slots=True)
class ResultRow:
    epoch: int
    hotkey: str
    competition: str
    uid: int
    kind: str
    content_hash: str
    passed: bool
    failed_step: str | None
    reason: str | None
    detail: str | None
    steps: list[dict[str, Any]]
    metrics: dict[str, Any] | None
    """``DatasetScore.to_dict()``: per metric the average, confidence interval, per-file scores."""
    engine: str = ""
    shared_from: str | None = None
    """The hotkey whose benchmark of the identical content this result repeats."""
    created_at: float = 0.0

    def averages(self) -> dict[str, float]:
        if not self.metrics:
            return {}
        return {m: float(r["average"]) for m, r in self.metrics.get("metrics", {}).items()}


@dataclass(frozen=True, slots=True)
class OutboxItem:
    kind: str
    """``result`` or ``epoch``."""
    epoch: int
    hotkey: str
    competition: str
    body: bytes
    id: int = 0
    attempts: int = 0
    next_at: float = 0.0
    expires_at: float = 0.0


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


class Store:
    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        self._limiter = anyio.CapacityLimiter(1)

    # -- plumbing -------------------------------------------------------------------------------

    async def open(self) -> Store:
        await self._call(self._open_sync)
        return self

    def _open_sync(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}; this release knows up to "
                    f"{SCHEMA_VERSION} (downgrades are not supported)"
                )
            for v in range(version, SCHEMA_VERSION):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for stmt in _MIGRATIONS[v].split(";"):
                        if stmt.strip():
                            conn.execute(stmt)
                    conn.execute(f"PRAGMA user_version={v + 1}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the state file {self.path}: {exc}") from exc
        self._conn = conn

    async def aclose(self) -> None:
        if self._conn is not None:
            with anyio.CancelScope(shield=True):
                await self._call(self._conn.close)
            self._conn = None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(partial(fn, *args), limiter=self._limiter)

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the store is not open")
        return self._conn

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._c()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                value = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc
        return value

    def _rows(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        try:
            return self._c().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one transaction in the store's thread."""
        return await self._call(self._tx, fn)

    async def read(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        return await self._call(self._rows, sql, *params)

    # -- epochs ---------------------------------------------------------------------------------

    @staticmethod
    def _epoch(r: sqlite3.Row) -> EpochRow:
        return EpochRow(
            r["number"],
            r["start_block"],
            r["end_block"],
            r["start_hash"],
            r["seed"],
            r["status"],
            orjson.loads(r["datasets"]),
            r["note"],
            r["created_at"],
            r["judged_at"],
        )

    async def epoch(self, number: int) -> EpochRow | None:
        rows = await self.read("SELECT * FROM epochs WHERE number = ?", number)
        return self._epoch(rows[0]) if rows else None

    async def epochs(self, *statuses: str) -> list[EpochRow]:
        if statuses:
            marks = ",".join("?" * len(statuses))
            rows = await self.read(
                f"SELECT * FROM epochs WHERE status IN ({marks}) ORDER BY number", *statuses
            )
        else:
            rows = await self.read("SELECT * FROM epochs ORDER BY number")
        return [self._epoch(r) for r in rows]

    async def record_epoch(
        self, number: int, *, start_block: int, end_block: int, start_hash: str, seed: int
    ) -> EpochRow:
        """Insert the epoch unless it exists; the stored row either way (same seed after a
        restart)."""
        now = self._clock()

        def go(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT OR IGNORE INTO epochs (number, start_block, end_block, start_hash, seed,"
                " status, created_at) VALUES (?, ?, ?, ?, ?, 'open', ?)",
                (number, start_block, end_block, start_hash, seed, now),
            )

        await self.write(go)
        row = await self.epoch(number)
        assert row is not None
        return row

    async def set_epoch(
        self,
        number: int,
        *,
        status: str | None = None,
        datasets: dict[str, str] | None = None,
        note: str | None = None,
    ) -> None:
        def go(c: sqlite3.Connection) -> None:
            if status is not None:
                c.execute("UPDATE epochs SET status = ? WHERE number = ?", (status, number))
            if datasets is not None:
                c.execute(
                    "UPDATE epochs SET datasets = ? WHERE number = ?", (_json(datasets), number)
                )
            if note is not None:
                c.execute("UPDATE epochs SET note = ? WHERE number = ?", (note, number))

        await self.write(go)

    # -- candidates -----------------------------------------------------------------------------

    @staticmethod
    def _candidate(r: sqlite3.Row) -> CandidateRow:
        return CandidateRow(
            r["epoch"],
            r["hotkey"],
            r["competition"],
            r["uid"],
            r["namespace"],
            r["name"],
            r["revision"],
            r["commitment_block"],
            r["state"],
            r["reason"],
            r["content_hash"],
            tuple(orjson.loads(r["ckpt_hashes"])),
            r["kind"],
            r["source"],
        )

    async def add_candidate(self, c: CandidateRow) -> bool:
        """Insert a candidate (and clear its rejection); False when it is already there."""
        return (await self.discovered([c], []))[0]

    async def discovered(
        self, candidates: Sequence[CandidateRow], rejections: Sequence[tuple[Any, ...]]
    ) -> list[bool]:
        """One discovery pass in one transaction: new candidates (True where inserted) and
        rejections ``(epoch, hotkey, competition, uid, reason, detail)``."""
        now = self._clock()

        def go(conn: sqlite3.Connection) -> list[bool]:
            for epoch, hotkey, competition, uid, reason, detail in rejections:
                self._reject(conn, epoch, hotkey, competition, uid, reason, detail, now)
            return [self._add(conn, c, now) for c in candidates]

        return await self.write(go)

    @staticmethod
    def _add(conn: sqlite3.Connection, c: CandidateRow, now: float) -> bool:
        cur = conn.execute(
            "INSERT OR IGNORE INTO candidates (epoch, hotkey, competition, uid, namespace,"
            " name, revision, commitment_block, state, reason, kind, source, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                c.epoch,
                c.hotkey,
                c.competition,
                c.uid,
                c.namespace,
                c.name,
                c.revision,
                c.commitment_block,
                c.state,
                c.reason,
                c.kind,
                c.source,
                now,
                now,
            ),
        )
        if cur.rowcount:
            conn.execute(
                "DELETE FROM rejections WHERE epoch = ? AND hotkey = ?", (c.epoch, c.hotkey)
            )
        return bool(cur.rowcount)

    async def candidates(self, epoch: int, *states: str) -> list[CandidateRow]:
        sql = "SELECT * FROM candidates WHERE epoch = ?"
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
        rows = await self.read(sql + " ORDER BY commitment_block, uid", epoch, *states)
        return [self._candidate(r) for r in rows]

    async def set_candidate(
        self,
        epoch: int,
        hotkey: str,
        competition: str,
        *,
        state: str,
        reason: str = "",
        content_hash: str | None = None,
        ckpt_hashes: Sequence[str] | None = None,
    ) -> None:
        now = self._clock()

        def go(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE candidates SET state = ?, reason = ?, updated_at = ?,"
                " content_hash = COALESCE(?, content_hash), ckpt_hashes = COALESCE(?, ckpt_hashes)"
                " WHERE epoch = ? AND hotkey = ? AND competition = ?",
                (
                    state,
                    reason,
                    now,
                    content_hash,
                    None if ckpt_hashes is None else _json(sorted(ckpt_hashes)),
                    epoch,
                    hotkey,
                    competition,
                ),
            )

        await self.write(go)

    async def requeue_interrupted(self, epoch: int) -> int:
        """Candidates left ``running`` by a crash go back to ``accepted`` (re-run)."""

        def go(c: sqlite3.Connection) -> int:
            return c.execute(
                "UPDATE candidates SET state = 'accepted', reason = 'interrupted' "
                "WHERE epoch = ? AND state = 'running'",
                (epoch,),
            ).rowcount

        return await self.write(go)

    async def reject(
        self, epoch: int, hotkey: str, competition: str, uid: int | None, reason: str, detail: str
    ) -> None:
        await self.discovered([], [(epoch, hotkey, competition, uid, reason, detail)])

    @staticmethod
    def _reject(
        c: sqlite3.Connection,
        epoch: int,
        hotkey: str,
        competition: str,
        uid: int | None,
        reason: str,
        detail: str,
        now: float,
    ) -> None:
        c.execute(
            "INSERT INTO rejections (epoch, hotkey, competition, uid, reason, detail, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (epoch, hotkey, competition) DO UPDATE"
            " SET uid = excluded.uid, reason = excluded.reason, detail = excluded.detail,"
            " at = excluded.at",
            (epoch, hotkey, competition, uid, reason, detail[:500], now),
        )

    async def rejections(self, epoch: int) -> list[dict[str, Any]]:
        rows = await self.read(
            "SELECT hotkey, competition, uid, reason, detail FROM rejections WHERE epoch = ?"
            " ORDER BY uid, competition",
            epoch,
        )
        return [dict(r) for r in rows]

    async def drop_hotkey(self, hotkey: str, reason: str) -> int:
        """A hotkey left its uid: its candidates and results of unjudged epochs are dropped."""

        def go(c: sqlite3.Connection) -> int:
            open_epochs = "SELECT number FROM epochs WHERE status IN ('open', 'ready')"
            c.execute(
                f"DELETE FROM results WHERE hotkey = ? AND epoch IN ({open_epochs})", (hotkey,)
            )
            return c.execute(
                "UPDATE candidates SET state = 'dropped', reason = ? WHERE hotkey = ? AND "
                f"kind = 'miner' AND epoch IN ({open_epochs})",
                (reason, hotkey),
            ).rowcount

        return await self.write(go)

    # -- results --------------------------------------------------------------------------------

    @staticmethod
    def _result(r: sqlite3.Row) -> ResultRow:
        return ResultRow(
            r["epoch"],
            r["hotkey"],
            r["competition"],
            r["uid"],
            r["kind"],
            r["content_hash"],
            bool(r["passed"]),
            r["failed_step"],
            r["reason"],
            r["detail"],
            orjson.loads(r["steps"]),
            None if r["metrics"] is None else orjson.loads(r["metrics"]),
            r["engine"],
            r["shared_from"],
            r["created_at"],
        )

    async def save_result(self, r: ResultRow, outbox: Iterable[OutboxItem] = ()) -> None:
        """The result, its candidate marked done, and its Feedback queued: one transaction."""
        now = self._clock()
        items = list(outbox)

        def go(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT OR REPLACE INTO results (epoch, hotkey, competition, uid, kind,"
                " content_hash, passed, failed_step, reason, detail, steps, metrics, engine,"
                " shared_from, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r.epoch,
                    r.hotkey,
                    r.competition,
                    r.uid,
                    r.kind,
                    r.content_hash,
                    int(r.passed),
                    r.failed_step,
                    r.reason,
                    r.detail,
                    _json(r.steps),
                    None if r.metrics is None else _json(r.metrics),
                    r.engine,
                    r.shared_from,
                    now,
                ),
            )
            c.execute(
                "UPDATE candidates SET state = 'done', reason = ?, updated_at = ?"
                " WHERE epoch = ? AND hotkey = ? AND competition = ?",
                (r.reason or "", now, r.epoch, r.hotkey, r.competition),
            )
            self._enqueue(c, items, now)

        await self.write(go)

    async def results(self, epoch: int, kind: str | None = None) -> list[ResultRow]:
        if kind is None:
            rows = await self.read("SELECT * FROM results WHERE epoch = ? ORDER BY uid", epoch)
        else:
            rows = await self.read(
                "SELECT * FROM results WHERE epoch = ? AND kind = ? ORDER BY uid", epoch, kind
            )
        return [self._result(r) for r in rows]

    async def save_unprocessed(self, epoch: int, competition: str, metrics: dict[str, Any]) -> None:
        def go(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT OR REPLACE INTO unprocessed (epoch, competition, metrics) VALUES (?, ?, ?)",
                (epoch, competition, _json(metrics)),
            )

        await self.write(go)

    async def unprocessed(self, epoch: int) -> dict[str, dict[str, Any]]:
        rows = await self.read(
            "SELECT competition, metrics FROM unprocessed WHERE epoch = ?", epoch
        )
        return {r["competition"]: orjson.loads(r["metrics"]) for r in rows}

    # -- judgements -----------------------------------------------------------------------------

    async def save_judgement(
        self, epoch: int, input_text: str, output_text: str, outbox: Iterable[OutboxItem]
    ) -> None:
        """Judge input and output verbatim, the epoch marked judged, the epoch Feedback queued
        and the report scheduled: one transaction."""
        now = self._clock()
        items = list(outbox)

        def go(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT OR REPLACE INTO judgements (epoch, input, output, created_at)"
                " VALUES (?, ?, ?, ?)",
                (epoch, input_text, output_text, now),
            )
            c.execute(
                "UPDATE epochs SET status = 'judged', judged_at = ? WHERE number = ?", (now, epoch)
            )
            c.execute("INSERT OR IGNORE INTO reports (epoch) VALUES (?)", (epoch,))
            self._enqueue(c, items, now)

        await self.write(go)

    async def judgement(self, epoch: int | None = None) -> tuple[int, str, str] | None:
        """``(epoch, input, output)`` of the given epoch, or of the latest judged one."""
        if epoch is None:
            rows = await self.read(
                "SELECT epoch, input, output FROM judgements ORDER BY epoch DESC LIMIT 1"
            )
        else:
            rows = await self.read(
                "SELECT epoch, input, output FROM judgements WHERE epoch = ?", epoch
            )
        return (rows[0]["epoch"], rows[0]["input"], rows[0]["output"]) if rows else None

    # -- weights --------------------------------------------------------------------------------

    async def record_weights(
        self, epoch: int, block: int | None, status: str, reason: str, weights: dict[int, float]
    ) -> None:
        now = self._clock()

        def go(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO weight_attempts (epoch, block, status, reason, weights, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (epoch, block, status, reason, _json({str(k): v for k, v in weights.items()}), now),
            )

        await self.write(go)

    async def weight_attempts(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = await self.read(
            "SELECT epoch, block, status, reason, weights, at FROM weight_attempts"
            " ORDER BY id DESC LIMIT ?",
            limit,
        )
        return [dict(r) | {"weights": orjson.loads(r["weights"])} for r in rows]

    async def last_weights_set(self) -> dict[str, Any] | None:
        rows = await self.read(
            "SELECT epoch, block, at FROM weight_attempts WHERE status = 'ok'"
            " ORDER BY id DESC LIMIT 1"
        )
        return dict(rows[0]) if rows else None

    # -- outbox ---------------------------------------------------------------------------------

    @staticmethod
    def _enqueue(c: sqlite3.Connection, items: Sequence[OutboxItem], now: float) -> None:
        c.executemany(
            "INSERT INTO outbox (kind, epoch, hotkey, competition, body, next_at, expires_at,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (i.kind, i.epoch, i.hotkey, i.competition, i.body, now, i.expires_at, now)
                for i in items
            ],
        )

    async def outbox_due(self, now: float, limit: int) -> list[OutboxItem]:
        rows = await self.read(
            "SELECT * FROM outbox WHERE status = 'pending' AND next_at <= ? ORDER BY next_at, id"
            " LIMIT ?",
            now,
            limit,
        )
        return [
            OutboxItem(
                r["kind"],
                r["epoch"],
                r["hotkey"],
                r["competition"],
                bytes(r["body"]),
                r["id"],
                r["attempts"],
                r["next_at"],
                r["expires_at"],
            )
            for r in rows
        ]

    async def outbox_next_at(self) -> float | None:
        rows = await self.read("SELECT MIN(next_at) AS t FROM outbox WHERE status = 'pending'")
        return None if rows[0]["t"] is None else float(rows[0]["t"])

    async def outbox_done(self, item_id: int, status: str, error: str = "") -> None:
        """``sent`` or ``expired`` (given up): the item leaves the queue."""

        def go(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE outbox SET status = ?, last_error = ?, attempts = attempts + 1"
                " WHERE id = ?",
                (status, error[:500], item_id),
            )

        await self.write(go)

    async def outbox_retry(self, item_id: int, next_at: float, error: str) -> None:
        def go(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ?"
                " WHERE id = ?",
                (next_at, error[:500], item_id),
            )

        await self.write(go)

    async def outbox_counts(self) -> dict[str, int]:
        rows = await self.read("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
        return {r["status"]: r["n"] for r in rows}

    async def outbox_for(self, hotkey: str) -> list[dict[str, Any]]:
        rows = await self.read(
            "SELECT kind, epoch, competition, status, attempts, last_error FROM outbox"
            " WHERE hotkey = ? ORDER BY id",
            hotkey,
        )
        return [dict(r) for r in rows]

    # -- reports --------------------------------------------------------------------------------

    async def reports_pending(self, now: float) -> list[dict[str, Any]]:
        rows = await self.read(
            "SELECT * FROM reports WHERE (audit_done = 0 OR remote = 'pending') AND next_at <= ?"
            " ORDER BY epoch",
            now,
        )
        return [dict(r) for r in rows]

    async def report_update(self, epoch: int, **fields: Any) -> None:
        allowed = {"audit_done", "remote", "attempts", "next_at", "last_error"}
        if not set(fields) <= allowed:
            raise ValueError(f"unknown report fields {sorted(set(fields) - allowed)}")
        sets = ", ".join(f"{k} = ?" for k in fields)

        def go(c: sqlite3.Connection) -> None:
            c.execute(f"UPDATE reports SET {sets} WHERE epoch = ?", (*fields.values(), epoch))

        await self.write(go)
