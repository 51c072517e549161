"""Bittensor wallets: load a server's hotkey, create throwaway wallets without prompts.

Wallets use the standard bittensor layout (``<path>/<name>/coldkey``, ``coldkeypub.txt``,
``hotkeys/<hotkey>``). A server (validator or miner) only needs its hotkey file; the coldkey is
never read. Blocking file work here is small and runs at start-up; call it from a thread when
the loop is already serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from bittensor.wallet import Wallet

from ._exceptions import SoundsrightError
from .config import WalletSettings

__all__ = [
    "Hotkey",
    "WalletError",
    "WalletInfo",
    "create_wallet",
    "load_hotkey",
    "load_hotkey_from",
    "public_keys",
]


class Hotkey(Protocol):
    """What we use of a bittensor keypair (``bittensor.sp_core.Keypair`` satisfies it)."""

    @property
    def ss58_address(self) -> str: ...

    @property
    def crypto_type(self) -> int: ...

    @property
    def public_key(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes: ...


class WalletError(SoundsrightError):
    """A wallet could not be created or its hotkey could not be loaded."""

    def __init__(self, problem: str, *, name: str, hotkey: str, path: Path) -> None:
        self.name = name
        self.hotkey = hotkey
        self.path = path
        super().__init__(f"wallet {name}/{hotkey} in {path}: {problem}")


@dataclass(frozen=True, slots=True)
class WalletInfo:
    name: str
    hotkey: str
    path: Path
    hotkey_ss58: str
    coldkey_ss58: str
    created_coldkey: bool


def _wallet(name: str, hotkey: str, path: Path) -> Wallet:
    for label, value in (("name", name), ("hotkey", hotkey)):
        if not value or "/" in value or value in (".", ".."):
            raise WalletError(f"invalid {label} {value!r}", name=name, hotkey=hotkey, path=path)
    return Wallet(name, hotkey, path=str(path.expanduser()))


def create_wallet(
    name: str, hotkey: str, path: Path | str, *, overwrite: bool = False
) -> WalletInfo:
    """Create an unencrypted wallet (for tests, the demo and localnet) without prompting.

    An existing coldkey is kept, so several hotkeys can share one coldkey. An existing hotkey is
    an error unless ``overwrite``. Mnemonics are not printed.
    """
    p = Path(path).expanduser()
    w = _wallet(name, hotkey, p)
    created_coldkey = False
    try:
        if overwrite or not w.coldkeypub_file.exists_on_device():
            w.create_new_coldkey(use_password=False, suppress=True, overwrite=overwrite)
            created_coldkey = True
        if w.hotkey_file.exists_on_device() and not overwrite:
            raise WalletError(
                "hotkey already exists (pass overwrite to replace it)",
                name=name,
                hotkey=hotkey,
                path=p,
            )
        w.create_new_hotkey(use_password=False, suppress=True, overwrite=overwrite)
        return WalletInfo(
            name=name,
            hotkey=hotkey,
            path=p,
            hotkey_ss58=str(w.hotkey.ss58_address),
            coldkey_ss58=str(w.coldkeypub.ss58_address),
            created_coldkey=created_coldkey,
        )
    except WalletError:
        raise
    except (OSError, ValueError) as exc:
        raise WalletError(f"cannot create: {exc}", name=name, hotkey=hotkey, path=p) from exc


def load_hotkey(name: str, hotkey: str, path: Path | str, *, password: str | None = None) -> Hotkey:
    """The hotkey keypair (the only key a server needs). Never prompts.

    An encrypted hotkey needs ``password``; the coldkey is never touched.
    """
    p = Path(path).expanduser()
    w = _wallet(name, hotkey, p)
    f = w.hotkey_file
    if not f.exists_on_device():
        raise WalletError(
            f"no hotkey file at {f.path} (create one with `soundsright wallet create` or btcli)",
            name=name,
            hotkey=hotkey,
            path=p,
        )
    if f.is_encrypted() and password is None:
        raise WalletError(
            "hotkey file is encrypted and no password was given", name=name, hotkey=hotkey, path=p
        )
    try:
        return cast(Hotkey, w.get_hotkey(password))
    except Exception as exc:  # the SDK raises several unrelated types for a bad keyfile
        raise WalletError(f"cannot load hotkey: {exc}", name=name, hotkey=hotkey, path=p) from exc


def load_hotkey_from(settings: WalletSettings, *, password: str | None = None) -> Hotkey:
    return load_hotkey(settings.name, settings.hotkey, settings.path, password=password)


def public_keys(name: str, hotkey: str, path: Path | str) -> tuple[str, str]:
    """``(hotkey_ss58, coldkey_ss58)`` from the public key files; no secret is unlocked."""
    p = Path(path).expanduser()
    w = _wallet(name, hotkey, p)
    try:
        if w.hotkeypub_file.exists_on_device():
            hot = str(w.hotkeypub.ss58_address)
        elif w.hotkey_file.exists_on_device() and not w.hotkey_file.is_encrypted():
            hot = str(w.hotkey.ss58_address)
        else:
            raise WalletError("no readable hotkey file", name=name, hotkey=hotkey, path=p)
        if not w.coldkeypub_file.exists_on_device():
            raise WalletError("no coldkeypub.txt", name=name, hotkey=hotkey, path=p)
        return hot, str(w.coldkeypub.ss58_address)
    except WalletError:
        raise
    except Exception as exc:  # the SDK raises several unrelated types for a bad keyfile
        raise WalletError(f"cannot read keys: {exc}", name=name, hotkey=hotkey, path=p) from exc
