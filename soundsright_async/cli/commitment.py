"""``soundsright commitment``: print the on-chain commitment hash of a model."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass
from ._common import EXIT_OK, competition_arg

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "commitment",
        help="print the commitment hash (sha256 of ns:name:rev:hotkey:competition_id)",
    )
    p.add_argument("--namespace", required=True, help="HuggingFace namespace")
    p.add_argument("--name", required=True, help="HuggingFace model repository name")
    p.add_argument("--revision", required=True, help="40-hex commit id")
    p.add_argument("--hotkey", required=True, metavar="SS58", help="the miner's hotkey")
    p.add_argument(
        "--competition", required=True, type=competition_arg, help="e.g. DENOISING_16000HZ"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..protocol import commitment_hash

    print(
        commitment_hash(
            namespace=args.namespace,
            name=args.name,
            revision=args.revision,
            hotkey=args.hotkey,
            competition=args.competition,
        )
    )
    return EXIT_OK
