"""``soundsright wallet create``: a throwaway unencrypted wallet (tests, demo, localnet)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .._exceptions import InputError

if TYPE_CHECKING:
    pass
from ._common import EXIT_OK, print_json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("wallet", help="wallet tools")
    wsub = p.add_subparsers(dest="wallet_command", required=True, metavar="COMMAND")
    c = wsub.add_parser(
        "create",
        help="create an unencrypted wallet without prompts and print the hotkey ss58",
        description="Creates the coldkey if missing and a new hotkey. Keys are NOT encrypted: "
        "use this for tests, the demo and localnet, not for real funds.",
    )
    c.add_argument("--name", required=True, help="wallet (coldkey) name")
    c.add_argument("--hotkey", required=True, help="hotkey name")
    c.add_argument("--path", type=Path, default=Path("~/.bittensor/wallets"), metavar="DIR")
    c.add_argument("--overwrite", action="store_true", help="replace existing keys")
    c.add_argument("--json", action="store_true")
    c.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..wallet import WalletError, create_wallet

    try:
        info = create_wallet(args.name, args.hotkey, args.path, overwrite=args.overwrite)
    except WalletError as exc:
        raise InputError(str(exc)) from None
    if args.json:
        print_json(
            {
                "name": info.name,
                "hotkey": info.hotkey,
                "path": str(info.path),
                "hotkey_ss58": info.hotkey_ss58,
                "coldkey_ss58": info.coldkey_ss58,
            }
        )
    else:
        print(info.hotkey_ss58)
    return EXIT_OK
