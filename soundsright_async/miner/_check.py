"""``soundsright-miner --check`` beyond the config: ask the chain and try the endpoint.

Each check has its own message: the subnet exists, the hotkey is registered on it (and what the
chain holds for it), the published ``ip:port`` answers a TCP connect from this machine (a
throw-away listener on the configured port when the daemon is not running).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from dataclasses import dataclass

import anyio

from ..chain import ChainError, SubnetNotFoundError, open_chain
from ._setup import MinerSetup

__all__ = ["Check", "chain_checks"]

CONNECT_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    message: str


async def chain_checks(setup: MinerSetup) -> list[Check]:
    s = setup.settings
    net = f"{s.chain.network}"
    chain = open_chain(s.chain, netuid=s.netuid, hotkey=setup.hotkey)
    try:
        try:
            mg = await chain.metagraph()
        except SubnetNotFoundError:
            return [
                Check(
                    "subnet",
                    False,
                    f"subnet {s.netuid} does not exist on {net} (check netuid in the config)",
                )
            ]
        except ChainError as exc:
            return [Check("subnet", False, f"cannot read subnet {s.netuid} on {net}: {exc}")]
        out = [Check("subnet", True, f"subnet {s.netuid} on {net}: {len(mg)} neurons")]
        me = mg.by_hotkey(setup.hotkey.ss58_address)
        if me is None:
            out.append(
                Check(
                    "registered",
                    False,
                    f"hotkey {setup.hotkey.ss58_address} is not registered on subnet {s.netuid} "
                    "(register it first; the daemon would wait for it)",
                )
            )
        else:
            on_chain = me.endpoint or "none"
            out.append(
                Check(
                    "registered",
                    True,
                    f"hotkey registered as uid {me.uid}; endpoint on chain: {on_chain}",
                )
            )
    finally:
        with anyio.move_on_after(5.0, shield=True):
            await chain.aclose()
    out.append(await _endpoint_check(setup))
    return out


async def _endpoint_check(setup: MinerSetup) -> Check:
    srv = setup.settings.server
    ip = srv.published_ip()
    if ip is None or not srv.port:
        return Check("endpoint", True, "endpoint: port 0 is chosen at start; not checked")
    port = srv.external_port or srv.port
    listener = None
    try:
        listener = socket.create_server((srv.host, srv.port))
        listener.setblocking(False)
        running = ""
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            return Check("endpoint", False, f"cannot listen on {srv.host}:{srv.port}: {exc}")
        running = " (the port is in use: a running miner answered)"
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            _, writer = await asyncio.open_connection(ip, port)
        writer.close()
        return Check("endpoint", True, f"endpoint {ip}:{port} is reachable{running}")
    except (OSError, TimeoutError) as exc:
        if isinstance(exc, TimeoutError):
            why = "no answer"
        else:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
        return Check(
            "endpoint",
            False,
            f"endpoint {ip}:{port} is not reachable from this machine ({why} within "
            f"{CONNECT_TIMEOUT_S:g}s): check the firewall, NAT, server.external_ip and "
            "server.external_port",
        )
    finally:
        if listener is not None:
            listener.close()
