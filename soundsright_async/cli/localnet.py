"""``soundsright localnet init|register|show``: manage the embedded dev chain file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .._exceptions import InputError

if TYPE_CHECKING:
    from ..chain._localnet_db import LocalnetDB
from ._common import EXIT_OK, print_json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("localnet", help="embedded dev chain (one SQLite file)")
    lsub = p.add_subparsers(dest="localnet_command", required=True, metavar="COMMAND")

    i = lsub.add_parser("init", help="create the chain file (if missing) and a subnet")
    i.add_argument("--path", required=True, type=Path, metavar="FILE")
    i.add_argument("--netuid", required=True, type=int)
    i.add_argument(
        "--block-time", type=float, default=12.0, metavar="S", help="seconds per block (new file)"
    )
    i.add_argument("--weights-rate-limit", type=int, default=100, metavar="BLOCKS")
    i.set_defaults(handler=_init)

    r = lsub.add_parser("register", help="register a wallet's hotkey on a subnet")
    r.add_argument("--path", required=True, type=Path, metavar="FILE")
    r.add_argument("--wallet", required=True, metavar="NAME")
    r.add_argument("--hotkey", required=True, metavar="NAME")
    r.add_argument("--wallet-path", type=Path, default=Path("~/.bittensor/wallets"), metavar="DIR")
    r.add_argument("--netuid", type=int, help="default: the file's only subnet")
    r.add_argument("--stake", type=float, default=0.0, help="stake (alpha of the subnet)")
    r.add_argument("--validator", action="store_true", help="grant a validator permit")
    r.set_defaults(handler=_register)

    s = lsub.add_parser("show", help="print blocks, neurons, commitments and weights")
    s.add_argument("--path", required=True, type=Path, metavar="FILE")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=_show)


def _db(path: Path, must_exist: bool = True) -> LocalnetDB:
    from ..chain._localnet_db import LocalnetDB

    if must_exist and not path.expanduser().is_file():
        raise InputError(f"{path}: no localnet file (create it with `soundsright localnet init`)")
    return LocalnetDB(path)


def _init(args: argparse.Namespace) -> int:
    if args.block_time <= 0 or args.weights_rate_limit < 0 or not 0 <= args.netuid <= 65535:
        raise InputError("--block-time must be > 0, --weights-rate-limit >= 0, --netuid 0..65535")
    db = _db(args.path, must_exist=False)
    created = db.init(
        netuid=args.netuid, block_time=args.block_time, weights_rate_limit=args.weights_rate_limit
    )
    m = db.meta()
    state = "created" if created else "already exists"
    print(f"{db.path}: subnet {args.netuid} {state}; block time {m.block_time:g}s")
    return EXIT_OK


def _register(args: argparse.Namespace) -> int:
    from ..chain.errors import ChainError
    from ..wallet import WalletError, public_keys

    db = _db(args.path)
    netuid = args.netuid
    if netuid is None:
        netuids = db.netuids()
        if len(netuids) != 1:
            raise InputError(f"{db.path} has subnets {netuids}; pass --netuid")
        netuid = netuids[0]
    try:
        hot, cold = public_keys(args.wallet, args.hotkey, args.wallet_path)
        uid = db.register(netuid, hot, cold, stake=args.stake, validator=args.validator)
    except (WalletError, ChainError, ValueError) as exc:
        raise InputError(str(exc)) from None
    role = "validator" if args.validator else "neuron"
    print(f"netuid {netuid} uid {uid}: {hot} ({role}, stake {args.stake:g})")
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    snap = _db(args.path).snapshot()
    if args.json:
        print_json(snap)
        return EXIT_OK
    print(f"{snap['path']}: block {snap['block']} ({snap['block_time']:g}s per block)")
    for sn in snap["subnets"]:
        print(f"subnet {sn['netuid']}: {len(sn['neurons'])} neurons")
        for n in sn["neurons"]:
            flag = "V" if n["validator_permit"] else "-"
            where = n["endpoint"] or ""
            print(f"  uid {n['uid']:>3} {flag} {n['hotkey']} stake {n['stake']:g} {where}")
        for c in sn["commitments"]:
            print(f"  commitment uid {c['uid']} block {c['block']}: {c['data']}")
        for v, row in sn["weights"].items():
            print(f"  weights from uid {v}: {row}")
    return EXIT_OK
