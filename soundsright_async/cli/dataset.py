"""``soundsright dataset generate``: make a benchmark dataset (clean + degraded + manifest)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..audio.dataset.generate import Dataset, DatasetSpec, ProgressCallback
    from ..config import (
        DatasetSettings,
        Secrets,
    )

from .._exceptions import ConfigError
from ..competitions import Competition, Task
from ._common import EXIT_OK, competition_arg, print_json, progress_bar, run_async, stderr_is_tty

__all__ = ["register"]


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {n}")
    return n


def _seed(value: str) -> int:
    try:
        n = int(value, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {n}")
    return n


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dataset", help="benchmark datasets")
    dsub = p.add_subparsers(dest="dataset_command", required=True, metavar="SUBCOMMAND")
    g = dsub.add_parser(
        "generate",
        help="generate a clean/degraded dataset for a competition",
        description=(
            "Write OUT/clean/*.wav, OUT/degraded/*.wav and OUT/manifest.json. The same "
            "(competition, seed, count) with offline sources gives byte-identical files. "
            "The dataset appears under OUT only when it is complete."
        ),
    )
    g.add_argument("--competition", required=True, type=competition_arg, metavar="NAME")
    g.add_argument("--count", required=True, type=_positive, metavar="N")
    g.add_argument("--seed", required=True, type=_seed, metavar="S")
    g.add_argument("--out", required=True, type=Path, metavar="DIR")
    g.add_argument("--speech", choices=("espeak", "elevenlabs"), default=None)
    g.add_argument("--noise", choices=("synthetic", "wham"), default=None, help="denoising only")
    g.add_argument("--rir", choices=("synthetic", "arni"), default=None, help="dereverb only")
    g.add_argument("--sentences", type=_positive, default=4, help="sentences per prompt (4)")
    g.add_argument("--workers", type=_positive, default=None, help="worker processes (CPUs)")
    g.add_argument(
        "--config", type=Path, metavar="FILE", help="validator.toml for [dataset] and data_dir"
    )
    g.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="where corpora are kept (~/.soundsright)"
    )
    g.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    g.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    g.set_defaults(handler=run, parser=g)


def _settings(args: argparse.Namespace) -> tuple[DatasetSettings, Secrets, str, Path]:
    from ..config import Secrets, resolve_secret
    from ..validator.settings import ValidatorSettings, load_validator_settings

    comp: Competition = args.competition
    if args.noise is not None and comp.task is not Task.DENOISING:
        args.parser.error(f"--noise applies to denoising competitions, not {comp.name}")
    if args.rir is not None and comp.task is not Task.DEREVERBERATION:
        args.parser.error(f"--rir applies to dereverberation competitions, not {comp.name}")
    if args.out.exists() and not args.overwrite:
        args.parser.error(f"--out {args.out} already exists (add --overwrite to replace it)")
    if args.config is not None:
        validator, secrets = load_validator_settings(args.config)
        settings, data_dir = validator.dataset, validator.data_dir
        network = validator.chain.network  # the sources that validator would use
    else:
        defaults = ValidatorSettings()  # one source for the default data dir
        settings, data_dir = defaults.dataset, defaults.data_dir
        secrets = Secrets(elevenlabs_api_key=resolve_secret("ELEVENLABS_API_KEY", os.environ))
        network = "localnet"  # no config: unset sources are the offline ones
    overrides = {
        k: getattr(args, k) for k in ("speech", "noise", "rir") if getattr(args, k) is not None
    }
    settings = settings.model_copy(update=overrides)
    if settings.speech == "elevenlabs" and secrets.elevenlabs_api_key is None:
        raise ConfigError("--speech elevenlabs needs the ELEVENLABS_API_KEY environment variable")
    from ..audio.dataset.choice import resolve_sources

    resolve_sources(network, settings, secrets.elevenlabs_api_key is not None)  # fail early
    return settings, secrets, network, args.data_dir.expanduser() if args.data_dir else data_dir


def run(args: argparse.Namespace) -> int:
    from ..audio.dataset.generate import DatasetSpec

    settings, secrets, network, data_dir = _settings(args)
    spec = DatasetSpec(
        competition=args.competition,
        count=args.count,
        seed=args.seed,
        out=args.out,
        sentences=args.sentences,
        overwrite=args.overwrite,
    )
    with progress_bar("generating", enabled=stderr_is_tty() and not args.json) as progress:
        dataset = run_async(
            _generate(spec, settings, secrets, network, data_dir, args.workers, progress)
        )
    summary = {"path": str(dataset.path), **dataset.manifest.summary()}
    if args.json:
        print_json(summary)
    else:
        _print_summary(summary)
    return EXIT_OK


async def _generate(
    spec: DatasetSpec,
    settings: DatasetSettings,
    secrets: Secrets,
    network: str,
    data_dir: Path,
    workers: int | None,
    progress: ProgressCallback | None,
) -> Dataset:
    from ..audio.dataset.factory import build_sources
    from ..audio.dataset.generate import generate_dataset
    from ..audio.pool import ScoringPool

    async with ScoringPool(workers=workers) as pool:
        sources = build_sources(settings, secrets, network=network, data_dir=data_dir, pool=pool)
        try:
            return await generate_dataset(spec, pool=pool, sources=sources, progress=progress)
        finally:
            await sources.aclose()


def _print_summary(summary: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"dataset {summary['path']}", show_header=False)
    for key, value in summary.items():
        if key == "path":
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        table.add_row(key, str(value))
    Console().print(table)
