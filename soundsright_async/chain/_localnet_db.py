"""The embedded dev chain's storage: one SQLite file (WAL) shared by several processes.

Everything here is blocking; ``chain.localnet.LocalnetChain`` runs it in threads. Each call opens
its own connection (cheap, and safe across threads and processes); writes run in ``BEGIN
IMMEDIATE`` transactions so concurrent writers queue on SQLite's lock instead of deadlocking.

The block height comes from the clock: ``(now - genesis) // block_time``. A write (commitment,
weights, endpoint) is a ``SignedWrite``: the hotkey signs ``write_message(...)``, which binds the
chain id (random per file), netuid, kind, body and a nonce that must grow per hotkey, so a write
cannot be forged by another hotkey, replayed, or moved to another localnet file.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from bittensor import sp_core

from ._values import commitment_text, format_endpoint, normalize_weights
from .errors import ChainError, SubnetNotFoundError
from .types import Block, Commitment, Metagraph, Neuron, WriteResult

__all__ = ["LocalnetDB", "SignedWrite", "WriteKind", "write_message"]

WriteKind = Literal["commit", "weights", "serve"]
MAX_COMMITMENT_BYTES = 128
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subnets (
    netuid INTEGER PRIMARY KEY, created_block INTEGER NOT NULL,
    weights_rate_limit INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS neurons (
    netuid INTEGER NOT NULL, uid INTEGER NOT NULL, hotkey TEXT NOT NULL, coldkey TEXT NOT NULL,
    stake REAL NOT NULL, validator_permit INTEGER NOT NULL, endpoint TEXT,
    registered_block INTEGER NOT NULL, last_update INTEGER,
    PRIMARY KEY (netuid, uid), UNIQUE (netuid, hotkey)
);
CREATE TABLE IF NOT EXISTS commitments (
    netuid INTEGER NOT NULL, hotkey TEXT NOT NULL, data BLOB NOT NULL, block INTEGER NOT NULL,
    PRIMARY KEY (netuid, hotkey)
);
CREATE TABLE IF NOT EXISTS weights (
    netuid INTEGER NOT NULL, validator_uid INTEGER NOT NULL, uid INTEGER NOT NULL,
    value INTEGER NOT NULL, block INTEGER NOT NULL,
    PRIMARY KEY (netuid, validator_uid, uid)
);
CREATE TABLE IF NOT EXISTS nonces (hotkey TEXT PRIMARY KEY, nonce INTEGER NOT NULL);
"""


def write_message(
    *, chain_id: str, netuid: int, kind: WriteKind, body: bytes, nonce: int, hotkey: str
) -> bytes:
    """The exact bytes a hotkey signs for one localnet write."""
    digest = hashlib.sha256(body).hexdigest()
    lines = ("soundsright-localnet/1", chain_id, str(netuid), kind, digest, str(nonce), hotkey)
    return "\n".join(lines).encode()


@dataclass(frozen=True, slots=True)
class SignedWrite:
    netuid: int
    hotkey: str
    kind: WriteKind
    body: bytes
    """commit: the raw commitment; weights: JSON ``{uid: weight}``; serve: JSON ``[ip, port]``."""
    nonce: int
    signature: bytes
    crypto_type: int = sp_core.CRYPTO_SR25519


@dataclass(frozen=True, slots=True)
class _Meta:
    chain_id: str
    genesis: float
    block_time: float


class LocalnetDB:
    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path).expanduser()
        self._clock = clock
        self._meta: _Meta | None = None

    # --- connections -------------------------------------------------------------------

    def _open(self, create: bool = False) -> sqlite3.Connection:
        if not create and not self.path.is_file():
            raise ChainError(
                f"no localnet at {self.path} (create it with `soundsright localnet init`)",
                network="localnet",
            )
        try:
            uri = f"file:{self.path}?mode={'rwc' if create else 'rw'}"
            conn = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise ChainError(f"cannot open {self.path}: {exc}", network="localnet") from exc
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            conn.close()
            raise ChainError(f"cannot open {self.path}: {exc}", network="localnet") from exc
        return conn

    @contextmanager
    def _tx(self, create: bool = False) -> Iterator[sqlite3.Connection]:
        conn = self._open(create)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise ChainError(f"{self.path}: {exc}", network="localnet") from exc
        finally:
            conn.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._open()
        try:
            conn.execute("BEGIN")  # one consistent snapshot for multi-table reads
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise ChainError(f"{self.path}: {exc}", network="localnet") from exc
        finally:
            conn.close()

    # --- chain metadata ------------------------------------------------------------------

    def init(self, *, netuid: int, block_time: float = 12.0, weights_rate_limit: int = 100) -> bool:
        """Create the file (if missing) and the subnet (if missing). True if the subnet is new.

        ``block_time`` only applies when the file is created; it is fixed for the chain's life.
        """
        if block_time <= 0:
            raise ValueError("block_time must be positive")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._open(create=True)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SCHEMA)
        finally:
            conn.close()
        with self._tx() as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                conn.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [
                        ("chain_id", secrets.token_hex(16)),
                        ("genesis", repr(self._clock())),
                        ("block_time", repr(float(block_time))),
                    ],
                )
            self._meta = None
            if conn.execute("SELECT 1 FROM subnets WHERE netuid = ?", (netuid,)).fetchone():
                return False
            conn.execute(
                "INSERT INTO subnets VALUES (?, ?, ?)",
                (netuid, self._block_in(conn), weights_rate_limit),
            )
            return True

    def meta(self) -> _Meta:
        if self._meta is None:
            with self._read() as conn:
                rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            try:
                self._meta = _Meta(
                    rows["chain_id"], float(rows["genesis"]), float(rows["block_time"])
                )
            except KeyError:
                raise ChainError(
                    f"{self.path} is not an initialised localnet", network="localnet"
                ) from None
        return self._meta

    def _block_in(self, conn: sqlite3.Connection) -> int:
        rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        return max(0, int((self._clock() - float(rows["genesis"])) // float(rows["block_time"])))

    def head(self) -> Block:
        m = self.meta()
        n = max(0, int((self._clock() - m.genesis) // m.block_time))
        return Block(n, _hash_of(m.chain_id, n))

    def block_hash(self, number: int) -> str:
        """The hash of a block at or below the head (a function of the chain id and number)."""
        head = self.head()
        if not 0 <= number <= head.number:
            raise ChainError(
                f"block {number} does not exist yet (head is {head.number})", network="localnet"
            )
        return _hash_of(self.meta().chain_id, number)

    def _subnet(self, conn: sqlite3.Connection, netuid: int) -> tuple[int, int]:
        row = conn.execute(
            "SELECT created_block, weights_rate_limit FROM subnets WHERE netuid = ?", (netuid,)
        ).fetchone()
        if row is None:
            raise SubnetNotFoundError("subnet does not exist", network="localnet", netuid=netuid)
        return int(row[0]), int(row[1])

    # --- admin (the `soundsright localnet` CLI) ------------------------------------------------

    def register(
        self, netuid: int, hotkey: str, coldkey: str, *, stake: float = 0.0, validator: bool = False
    ) -> int:
        """Register a hotkey (or update its stake and permit); returns its uid."""
        if stake < 0:
            raise ValueError("stake must be non-negative")
        block = self.head().number
        with self._tx() as conn:
            self._subnet(conn, netuid)
            row = conn.execute(
                "SELECT uid FROM neurons WHERE netuid = ? AND hotkey = ?", (netuid, hotkey)
            ).fetchone()
            if row is not None:
                conn.execute(
                    "UPDATE neurons SET stake = ?, validator_permit = ?, coldkey = ?"
                    " WHERE netuid = ? AND uid = ?",
                    (stake, int(validator), coldkey, netuid, row[0]),
                )
                return int(row[0])
            uid = conn.execute(
                "SELECT COUNT(*) FROM neurons WHERE netuid = ?", (netuid,)
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO neurons VALUES (?, ?, ?, ?, ?, ?, NULL, ?, NULL)",
                (netuid, uid, hotkey, coldkey, stake, int(validator), block),
            )
            return int(uid)

    # --- reads ---------------------------------------------------------------------------

    def metagraph(self, netuid: int) -> Metagraph:
        block = self.head().number
        with self._read() as conn:
            self._subnet(conn, netuid)
            rows = conn.execute(
                "SELECT uid, hotkey, coldkey, stake, validator_permit, endpoint FROM neurons"
                " WHERE netuid = ? ORDER BY uid",
                (netuid,),
            ).fetchall()
        neurons = tuple(Neuron(u, h, c, s, s, bool(p), e) for u, h, c, s, p, e in rows)
        return Metagraph(netuid, block, neurons)

    def commitments(self, netuid: int) -> dict[str, Commitment]:
        with self._read() as conn:
            self._subnet(conn, netuid)
            rows = conn.execute(
                "SELECT c.hotkey, n.uid, c.data, c.block FROM commitments c LEFT JOIN neurons n"
                " ON n.netuid = c.netuid AND n.hotkey = c.hotkey WHERE c.netuid = ?"
                " ORDER BY c.block DESC, c.hotkey",
                (netuid,),
            ).fetchall()
        return {h: Commitment(h, u, commitment_text(bytes(d)), int(b)) for h, u, d, b in rows}

    def weights(self, netuid: int) -> dict[int, dict[int, int]]:
        out: dict[int, dict[int, int]] = {}
        with self._read() as conn:
            self._subnet(conn, netuid)
            for v, u, w in conn.execute(
                "SELECT validator_uid, uid, value FROM weights WHERE netuid = ?"
                " ORDER BY validator_uid, uid",
                (netuid,),
            ):
                out.setdefault(int(v), {})[int(u)] = int(w)
        return out

    def netuids(self) -> list[int]:
        with self._read() as conn:
            return [int(r[0]) for r in conn.execute("SELECT netuid FROM subnets ORDER BY netuid")]

    # --- signed writes -------------------------------------------------------------------

    def submit(self, write: SignedWrite) -> WriteResult:
        """Check the signature and nonce, then apply the write like the chain would."""
        meta = self.meta()
        msg = write_message(
            chain_id=meta.chain_id,
            netuid=write.netuid,
            kind=write.kind,
            body=write.body,
            nonce=write.nonce,
            hotkey=write.hotkey,
        )
        try:
            good = bool(
                sp_core.verify(msg, write.signature, write.hotkey, crypto_type=write.crypto_type)
            )
        except (ValueError, TypeError) as exc:
            return WriteResult.rejected(f"BadSignature: {exc}")
        if not good:
            return WriteResult.rejected(f"BadSignature: not signed by {write.hotkey}")
        block = self.head().number
        with self._tx() as conn:
            _, rate_limit = self._subnet(conn, write.netuid)
            row = conn.execute(
                "SELECT nonce FROM nonces WHERE hotkey = ?", (write.hotkey,)
            ).fetchone()
            if row is not None and write.nonce <= int(row[0]):
                return WriteResult.rejected("Stale: nonce already used (replayed write)")
            conn.execute(
                "INSERT INTO nonces VALUES (?, ?) ON CONFLICT (hotkey) DO UPDATE SET nonce = ?",
                (write.hotkey, write.nonce, write.nonce),
            )
            neuron = conn.execute(
                "SELECT uid, validator_permit, last_update FROM neurons"
                " WHERE netuid = ? AND hotkey = ?",
                (write.netuid, write.hotkey),
            ).fetchone()
            apply = {"commit": self._commit, "weights": self._weights, "serve": self._serve}
            return apply[write.kind](conn, write, neuron, block, rate_limit)

    def _commit(
        self, conn: sqlite3.Connection, w: SignedWrite, neuron: Any, block: int, _: int
    ) -> WriteResult:
        if neuron is None:
            return WriteResult.rejected(f"AccountNotAllowedCommit: {w.hotkey} is not registered")
        if len(w.body) > MAX_COMMITMENT_BYTES:
            return WriteResult.rejected("InvalidArgument: a raw commitment holds at most 128 bytes")
        conn.execute(
            "INSERT INTO commitments VALUES (?, ?, ?, ?) ON CONFLICT (netuid, hotkey)"
            " DO UPDATE SET data = excluded.data, block = excluded.block",
            (w.netuid, w.hotkey, w.body, block),
        )
        return WriteResult.success(block)

    def _weights(
        self, conn: sqlite3.Connection, w: SignedWrite, neuron: Any, block: int, rate_limit: int
    ) -> WriteResult:
        if neuron is None:
            return WriteResult.rejected(f"NotRegistered: {w.hotkey} is not registered")
        uid, permit, last = neuron
        if not permit:
            return WriteResult.rejected("NeuronNoValidatorPermit: no validator permit")
        try:
            raw = orjson.loads(w.body)
            values = normalize_weights({int(k): float(v) for k, v in raw.items()})
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
            return WriteResult.rejected(f"InvalidArgument: {exc}")
        size = conn.execute(
            "SELECT COUNT(*) FROM neurons WHERE netuid = ?", (w.netuid,)
        ).fetchone()[0]
        if max(values) >= size:
            return WriteResult.rejected("UidVecContainInvalidOne: unknown uid")
        if last is not None and block - int(last) < rate_limit:
            return WriteResult.rate_limited(
                f"SettingWeightsTooFast: last set {block - int(last)} blocks ago; "
                f"the rate limit is {rate_limit} blocks"
            )
        conn.execute("DELETE FROM weights WHERE netuid = ? AND validator_uid = ?", (w.netuid, uid))
        conn.executemany(
            "INSERT INTO weights VALUES (?, ?, ?, ?, ?)",
            [(w.netuid, uid, u, v, block) for u, v in values.items()],
        )
        conn.execute(
            "UPDATE neurons SET last_update = ? WHERE netuid = ? AND uid = ?",
            (block, w.netuid, uid),
        )
        return WriteResult.success(block)

    def _serve(
        self, conn: sqlite3.Connection, w: SignedWrite, neuron: Any, block: int, _: int
    ) -> WriteResult:
        if neuron is None:
            return WriteResult.rejected(f"HotKeyNotRegisteredInSubNet: {w.hotkey}")
        try:
            ip, port = orjson.loads(w.body)
            endpoint = format_endpoint(str(ip), int(port))
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            return WriteResult.rejected(f"InvalidIpAddress: {exc}")
        conn.execute(
            "UPDATE neurons SET endpoint = ? WHERE netuid = ? AND uid = ?",
            (endpoint, w.netuid, neuron[0]),
        )
        return WriteResult.success(block)

    def snapshot(self) -> dict[str, Any]:
        """Everything in the file, for ``soundsright localnet show``."""
        m, head = self.meta(), self.head()
        subnets = []
        for netuid in self.netuids():
            mg, cs, ws = self.metagraph(netuid), self.commitments(netuid), self.weights(netuid)
            subnets.append(
                {
                    "netuid": netuid,
                    "neurons": [
                        {
                            "uid": n.uid,
                            "hotkey": n.hotkey,
                            "coldkey": n.coldkey,
                            "stake": n.stake_alpha,
                            "validator_permit": n.validator_permit,
                            "endpoint": n.endpoint,
                        }
                        for n in mg.neurons
                    ],
                    "commitments": [
                        {"hotkey": c.hotkey, "uid": c.uid, "block": c.block, "data": c.data}
                        for c in cs.values()
                    ],
                    "weights": {
                        str(v): {str(u): x for u, x in row.items()} for v, row in ws.items()
                    },
                }
            )
        return {
            "path": str(self.path),
            "chain_id": m.chain_id,
            "block": head.number,
            "block_time": m.block_time,
            "subnets": subnets,
        }


def _hash_of(chain_id: str, number: int) -> str:
    return "0x" + hashlib.sha256(f"{chain_id}:{number}".encode()).hexdigest()
