from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from bittensor import http_auth as ha

from soundsright_async.cli import main
from soundsright_async.config import WalletSettings
from soundsright_async.wallet import (
    WalletError,
    create_wallet,
    load_hotkey,
    load_hotkey_from,
    public_keys,
)


def test_create_and_load_without_prompts(tmp_path: Path) -> None:
    a = create_wallet("cold", "a", tmp_path)
    b = create_wallet("cold", "b", tmp_path)
    assert a.created_coldkey
    assert not b.created_coldkey
    assert a.coldkey_ss58 == b.coldkey_ss58
    assert a.hotkey_ss58 != b.hotkey_ss58
    key = load_hotkey("cold", "a", tmp_path)
    assert key.ss58_address == a.hotkey_ss58
    assert public_keys("cold", "b", tmp_path) == (b.hotkey_ss58, b.coldkey_ss58)
    settings = WalletSettings(name="cold", hotkey="b", path=tmp_path)
    assert load_hotkey_from(settings).ss58_address == b.hotkey_ss58
    with pytest.raises(WalletError, match="already exists"):
        create_wallet("cold", "a", tmp_path)
    assert create_wallet("cold", "a", tmp_path, overwrite=True).hotkey_ss58 != a.hotkey_ss58


def test_hotkey_only_box_can_sign(tmp_path: Path) -> None:
    info = create_wallet("cold", "hot", tmp_path)
    (tmp_path / "cold" / "coldkey").unlink()
    key = load_hotkey("cold", "hot", tmp_path)
    headers = ha.sign(key, method="POST", path="/v3/model", body=b"{}", receiver_ss58="5X")
    assert headers[ha.HEADER_HOTKEY] == info.hotkey_ss58


def test_load_errors_name_the_wallet(tmp_path: Path) -> None:
    with pytest.raises(WalletError, match=r"wallet cold/nope in .*: no hotkey file"):
        load_hotkey("cold", "nope", tmp_path)
    with pytest.raises(WalletError, match="invalid name"):
        load_hotkey("a/b", "x", tmp_path)


def test_wallet_create_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["wallet", "create", "--name", "demo", "--hotkey", "m1", "--path", str(tmp_path)]
    assert main(args) == 0
    ss58 = capsys.readouterr().out.strip()
    assert ss58 == load_hotkey("demo", "m1", tmp_path).ss58_address
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args[:5], "m2", *args[6:], "--json"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out["hotkey"] == "m2"
    assert out["hotkey_ss58"].startswith("5")
