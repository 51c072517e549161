"""``soundsright config check``: validate a validator or miner config file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    pass
from ._common import EXIT_OK, print_json

__all__ = ["check_config", "register"]

Role = Literal["validator", "miner"]


def check_config(role: Role, path: Path) -> dict[str, Any]:
    """Load the config (raising ``ConfigError``) and return a summary without secret values."""
    from ..config import load_miner_settings
    from ..validator.settings import load_validator_settings

    if role == "validator":
        settings, secrets = load_validator_settings(path)
        summary = settings.model_dump(mode="json")
        summary["secrets"] = {
            "ELEVENLABS_API_KEY": "set" if secrets.elevenlabs_api_key else "not set",
            "HF_TOKEN": "set" if secrets.hf_token else "not set",
        }
    else:
        summary = load_miner_settings(path).model_dump(mode="json")
    return {"role": role, "config": str(path), "ok": True, "settings": summary}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    c = csub.add_parser("check", help="validate a config file and print the settings")
    c.add_argument("--role", choices=("validator", "miner"), required=True)
    c.add_argument("--config", required=True, type=Path, metavar="FILE")
    c.add_argument("--json", action="store_true")
    c.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    report = check_config(args.role, args.config)
    if args.json:
        print_json(report)
    else:
        print(f"{args.config}: valid {args.role} configuration")
        _print_flat(report["settings"])
    return EXIT_OK


def _print_flat(obj: dict[str, Any], prefix: str = "") -> None:
    for key, value in obj.items():
        if isinstance(value, dict):
            _print_flat(value, f"{prefix}{key}.")
        else:
            print(f"  {prefix}{key} = {value}")
