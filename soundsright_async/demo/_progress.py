"""One line of demo progress from the validator's ``GET /status`` document (pure)."""

from __future__ import annotations

from typing import Any

__all__ = ["progress_line"]


def progress_line(
    status: dict[str, Any], names: dict[str, tuple[str, str, str]]
) -> tuple[str, str]:
    """The line and its key (the line without the block counters: print on a new key).
    ``names`` maps a hotkey to (miner name, model, competition)."""
    epoch = status.get("epoch")
    head = status.get("head_block")
    if head is None:
        return "validator starting", "starting"
    if epoch is None:
        return f"block {head}: waiting for the first epoch", "waiting"
    cands = status.get("candidates") or []
    built = run = scored = failed = 0
    busy: list[str] = []
    for c in cands:
        steps = {s.get("step"): s.get("ok") for s in c.get("steps") or []}
        built += bool(steps.get("build"))
        run += bool(steps.get("enhance"))
        if c.get("passed") is True:
            scored += 1
        elif c.get("passed") is False:
            failed += 1
        if c.get("state") == "running":
            name = names.get(c.get("hotkey", ""), (str(c.get("uid")), "", ""))[0]
            busy.append(f"{name} ({c.get('step') or 'starting'})")
    parts = [
        f"epoch {epoch['number']}: block {head}, {epoch['blocks_left']} blocks left",
        f"datasets {len(status.get('unprocessed') or {})}/{len(status.get('competitions') or [])}",
        f"models {len(cands)}: built {built}, run {run}, scored {scored}"
        + (f", failed {failed}" if failed else ""),
    ]
    if busy:
        parts.append("now " + ", ".join(busy))
    if epoch["number"] > 0 or status.get("latest_judgement"):
        judged = status.get("latest_judgement") or {}
        if judged:
            parts.append(f"last judged epoch {judged.get('epoch')}")
    return " | ".join(parts), " | ".join([str(epoch["number"]), *parts[1:]])
