"""``soundsright feedback show``: summarise the Feedback a miner received (``feedback.jsonl``)."""

from __future__ import annotations

import argparse
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._exceptions import InputError

if TYPE_CHECKING:
    from ..miner.feedback import FeedbackRecord
from ._common import EXIT_OK, print_json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("feedback", help="the Feedback validators sent to this miner")
    fsub = p.add_subparsers(dest="feedback_command", required=True, metavar="COMMAND")
    s = fsub.add_parser(
        "show",
        help="latest result per competition against the winners",
        description="Reads feedback.jsonl (and its rotated files) in the miner's data dir.",
    )
    where = s.add_mutually_exclusive_group()
    where.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="miner config whose data_dir holds feedback.jsonl (default: config/miner.toml)",
    )
    where.add_argument("--data-dir", type=Path, metavar="DIR", help="the miner's data dir")
    s.add_argument("--json", action="store_true")
    s.add_argument(
        "--html",
        action="store_true",
        help="write an HTML page of every epoch's scores against the winners (see --out)",
    )
    s.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="with --html: the file to write (default: DATA_DIR/feedback.html)",
    )
    s.set_defaults(handler=run)


def _clean(value: object) -> str:
    """Text a validator sent, safe for a terminal: control and format characters (escape
    sequences, newlines, bidi overrides) are dropped."""
    return "".join(c for c in str(value) if not unicodedata.category(c).startswith("C"))


def _num(x: float | None, width: int = 9) -> str:
    return f"{'-':>{width}}" if x is None else f"{x:>{width}.4g}"


def _print(summary: dict[str, Any], directory: Path) -> None:
    files = summary["files"]
    if not summary["records"]:
        print(f"no feedback yet in {directory}")
        return
    extra = f" (+{len(files) - 1} rotated)" if len(files) > 1 else ""
    print(f"{summary['records']} feedback records in {directory}{extra}")
    if summary["skipped_lines"]:
        print(f"  skipped {summary['skipped_lines']} unreadable lines")
    for comp, c in summary["competitions"].items():
        print(
            f"\n{_clean(comp)}  epoch {c['epoch']}  from {len(c['validators'])} validator(s), "
            f"latest {c['received_at']}"
        )
        if c["model"] is None:
            print("  no scorable submission this epoch")
        else:
            state = "valid" if c["valid"] else f"INVALID: {_clean(c['reason'])}"
            print(f"  model {_clean(c['model'])} (commit block {c['commit_block']}): {state}")
        print(f"  {'metric':<8} {'ours':>9} {'95% CI':>19} {'winner':>9} {'gap':>9}  winner model")
        for metric, m in c["metrics"].items():
            ci = (
                f"[{m['ci_low']:.4g}, {m['ci_high']:.4g}]"
                if m["ci_low"] is not None and m["ci_high"] is not None
                else "-"
            )
            won = "  <- you" if m["we_won"] else ""
            print(
                f"  {_clean(metric):<8} {_num(m['ours'])} {ci:>19} {_num(m['winner'])} "
                f"{_num(m['gap'])}  {_clean(m['winner_model'] or '-')}{won}"
            )


def run(args: argparse.Namespace) -> int:
    from ..config import load_miner_settings
    from ..miner.feedback import read_records, summarize

    if args.data_dir is not None:
        directory = args.data_dir.expanduser()
    else:
        directory = load_miner_settings(args.config or Path("config/miner.toml")).data_dir
    if not directory.is_dir():
        raise InputError(f"{directory}: no such directory (the miner's data_dir)")
    records, skipped, files = read_records(directory)
    if args.html:
        return _write_html(records, directory, args.out)
    summary = {
        "data_dir": str(directory),
        "files": [str(f) for f in files],
        "skipped_lines": skipped,
        **summarize(records),
    }
    if args.json:
        print_json(summary)
    else:
        _print(summary, directory)
    return EXIT_OK


def _write_html(records: list[FeedbackRecord], directory: Path, out: Path | None) -> int:
    from ..dashboard.feedback import feedback_page

    target = (out or directory / "feedback.html").expanduser()
    try:
        target.write_text(feedback_page(records, source=str(directory)), encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{target}: cannot write ({exc.strerror})") from None
    print(target)
    return EXIT_OK
