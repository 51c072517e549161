"""``soundsright model ...``: model repository tools.

``model check`` fetches a model (or takes a local directory), applies the repository rules and
prints its content hash, checkpoint hashes, size and file count, or why it is rejected (exit 1).
The ``model`` group takes more subcommands (``verify``) beside ``check``: each one is a
``_register_*`` function listed in ``_SUBCOMMANDS``, and they share the model-source options
(``add_source_arguments`` / ``source_settings``; ``sandbox.setup.build_source``).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

if TYPE_CHECKING:
    from pydantic import SecretStr

    from ..config import (
        ModelSourceSettings,
        SandboxSettings,
    )
    from ..sandbox import (
        ModelRef,
        ModelSource,
        ModelSourceError,
        RepoDigest,
    )
    from ..sandbox.runner import BenchmarkResult

from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    competition_arg,
    existing_dir,
    print_json,
    run_async,
    stderr_is_tty,
)

__all__ = ["add_source_arguments", "register", "source_settings"]

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
T = TypeVar("T")


def register(sub: SubParsers) -> None:
    p = sub.add_parser("model", help="model repository tools")
    msub = p.add_subparsers(dest="model_command", required=True, metavar="COMMAND")
    for register_subcommand in _SUBCOMMANDS:
        register_subcommand(msub)


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    """Options that choose and configure the model source (shared by the model subcommands)."""
    g = p.add_argument_group("model source (default: [models] of --config, else HuggingFace)")
    g.add_argument("--config", type=Path, metavar="FILE", help="validator config to read")
    g.add_argument("--source", choices=("huggingface", "git"), help="where models come from")
    g.add_argument("--git-base-url", metavar="URL", help="git hub: {URL}/{namespace}/{name}")
    g.add_argument("--hf-endpoint", metavar="URL", help="HuggingFace hub endpoint")
    g.add_argument("--timeout", type=float, metavar="SECONDS", help="total download deadline")


def source_settings(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> tuple[ModelSourceSettings, SecretStr | None]:
    """The ``[models]`` settings (config file, then command-line overrides) and the HF token."""
    from pydantic import ValidationError

    from ..config import ModelSourceSettings, resolve_secret
    from ..validator.settings import load_validator_settings

    if args.config is not None:
        settings, secrets = load_validator_settings(args.config)
        base, token = settings.models, secrets.hf_token
    else:
        base, token = ModelSourceSettings(), resolve_secret("HF_TOKEN", os.environ)
    overrides: dict[str, Any] = {
        key: value
        for key, value in (
            ("source", args.source),
            ("git_base_url", args.git_base_url),
            ("hf_endpoint", args.hf_endpoint),
            ("download_timeout_s", args.timeout),
        )
        if value is not None
    }
    if args.git_base_url is not None and args.source is None:
        overrides["source"] = "git"
    try:
        return ModelSourceSettings.model_validate(base.model_dump() | overrides), token
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        if 'source = "git" needs git_base_url' in msg:
            msg = "--source git needs --git-base-url (or models.git_base_url in --config)"
        parser.error(msg)


# -- model check -------------------------------------------------------------------------------


def _register_check(msub: SubParsers) -> None:
    c = msub.add_parser(
        "check",
        help="fetch a model (or take a directory), apply the repository rules and hash it",
        description=(
            "Print the content hash, checkpoint hashes, size and file count of a model "
            "repository, or the reason it is rejected (exit status 1)."
        ),
    )
    what = c.add_mutually_exclusive_group(required=True)
    what.add_argument("--path", type=existing_dir, metavar="DIR", help="a local model directory")
    what.add_argument("--repo", metavar="NS/NAME", help="a model repository to fetch")
    c.add_argument("--revision", metavar="REV", help="the full 40-character commit id (--repo)")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    add_source_arguments(c)
    c.set_defaults(handler=run_check, parser=c)


def run_check(args: argparse.Namespace) -> int:
    from ..sandbox import ModelRef, ModelSourceError, inspect_repo
    from ..sandbox.setup import build_source, limits_of

    parser: argparse.ArgumentParser = args.parser
    if args.repo is not None and args.revision is None:
        parser.error("--repo needs --revision")
    if args.path is not None and args.revision is not None:
        parser.error("--revision goes with --repo, not --path")
    if args.repo is not None and args.repo.count("/") != 1:
        parser.error(f"--repo must be NAMESPACE/NAME, not {args.repo!r}")
    settings, token = source_settings(args, parser)
    try:
        if args.path is not None:
            digest = run_async(inspect_repo(args.path.resolve(), limits_of(settings)))
        else:
            ref = ModelRef.parse(args.repo, args.revision)
            with _status(f"fetching {ref}", enabled=stderr_is_tty() and not args.json):
                digest = run_async(_fetch(build_source(settings, token), ref, settings))
    except ModelSourceError as exc:
        _print_rejection(exc, as_json=args.json)
        return EXIT_FAILED
    _print_digest(digest, as_json=args.json)
    return EXIT_OK


async def _fetch(source: ModelSource, ref: ModelRef, settings: ModelSourceSettings) -> RepoDigest:
    from ..sandbox import fetch_model
    from ..sandbox.setup import limits_of

    with tempfile.TemporaryDirectory(prefix="soundsright-model-") as tmp:
        fetched = await fetch_model(source, ref, Path(tmp) / "model", limits_of(settings))
        return fetched.digest


@contextmanager
def _status(text: str, *, enabled: bool) -> Iterator[None]:
    from rich.console import Console

    if not enabled:
        yield
        return
    with Console(stderr=True).status(text):
        yield


def _print_rejection(exc: ModelSourceError, *, as_json: bool) -> None:
    if as_json:
        print_json({"rejected": exc.reason, "detail": exc.detail})
    else:
        print(f"rejected: {exc.reason}: {exc.detail}")


def _print_digest(digest: RepoDigest, *, as_json: bool) -> None:
    if as_json:
        print_json(digest.to_dict())
        return
    print(f"content hash: {digest.content_hash}")
    print(f"files: {digest.file_count}")
    print(f"bytes: {digest.total_bytes}")
    print(f"checkpoint hashes: {len(digest.checkpoints)}")
    for path, sha in digest.checkpoints:
        print(f"  {sha}  {path}")


# -- model verify ------------------------------------------------------------------------------


def _register_verify(msub: SubParsers) -> None:
    v = msub.add_parser(
        "verify",
        help="check, build, run and benchmark a model in the sandbox, as a validator would",
        description=(
            "Check the repository rules, build the image, run it locked down, send it a generated "
            "dataset, score the output; print per-step timings and metrics, or which step failed "
            "and why. Exit 0 only when every step passed. Needs a container engine "
            "(DOCKER_HOST, or `make podman`)."
        ),
    )
    what = v.add_mutually_exclusive_group(required=True)
    what.add_argument("--path", type=existing_dir, metavar="DIR", help="a local model directory")
    what.add_argument("--repo", metavar="NS/NAME", help="a model repository to fetch")
    v.add_argument("--revision", metavar="REV", help="the full 40-character commit id (--repo)")
    v.add_argument("--competition", type=competition_arg, required=True, metavar="C")
    v.add_argument("--count", type=int, default=4, metavar="N", help="dataset files (default 4)")
    v.add_argument("--seed", type=int, default=0, metavar="S")
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.add_argument(
        "--no-firewall",
        action="store_true",
        help="run without the host firewall rule pair (needed without root; then a model "
        "container can reach services on this host's bridge address)",
    )
    add_source_arguments(v)
    v.set_defaults(handler=run_verify, parser=v)


def run_verify(args: argparse.Namespace) -> int:
    import asyncio

    from ..config import SandboxSettings
    from ..sandbox import ModelSourceError
    from ..validator.settings import load_validator_settings

    parser: argparse.ArgumentParser = args.parser
    if args.repo is not None and args.revision is None:
        parser.error("--repo needs --revision")
    if args.count < 1 or args.count > 1000:
        parser.error("--count must be between 1 and 1000")
    if args.seed < 0:
        parser.error("--seed must be >= 0")
    settings, token = source_settings(args, parser)
    sandbox = load_validator_settings(args.config)[0].sandbox if args.config else SandboxSettings()
    if args.no_firewall:
        sandbox = sandbox.model_copy(update={"firewall": "off"})
    elif os.geteuid() != 0 and sandbox.firewall == "iptables":
        parser.error(
            "the host firewall that keeps model containers away from this host's services needs "
            'root (iptables); run as root, or pass --no-firewall (or sandbox.firewall = "off")'
        )
    sandbox = sandbox.model_copy(update={"owner": verify_owner(os.getpid())})
    try:
        result = run_async(_until_signal(_verify(args, settings, token, sandbox)))
    except ModelSourceError as exc:
        _print_rejection(exc, as_json=args.json)
        return EXIT_FAILED
    except asyncio.CancelledError:
        print(
            "soundsright: terminated; the container, network, image and files are removed",
            file=sys.stderr,
        )
        return EXIT_TERMINATED
    unscored = result.unscored_files()
    if args.json:
        data = result.to_dict()
        data["passed"] = data["passed"] and not unscored
        print_json(data)
    else:
        _print_result(result)
    return EXIT_OK if result.passed and not unscored else EXIT_FAILED


EXIT_TERMINATED = 143
_VERIFY_OWNER = re.compile(r"^verify-(\d+)-(\d+)$")


def verify_owner(pid: int) -> str:
    """``verify-PID-STARTTIME``: unique while the process lives, recognisably dead after."""
    from ..sandbox.engine.firewall import process_start_time

    return f"verify-{pid}-{process_start_time(pid)}"


def dead_verify_owner(owner: str) -> bool:
    """An owner label of a ``model verify`` process on this host that is no longer running
    (its leftovers after a SIGKILL are swept by the next ``model verify``)."""
    from ..sandbox.engine.firewall import process_start_time

    m = _VERIFY_OWNER.match(owner)
    return m is not None and process_start_time(int(m[1])) != m[2]


async def _until_signal(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; SIGTERM (and SIGHUP) cancel it like Ctrl-C, so every ``finally`` and
    ``async with`` cleans up (container, network, image, temp dir) before the exit. A repeated
    signal does not interrupt that cleanup (each step of it has a deadline)."""
    import asyncio

    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)

    def cancel_once() -> None:
        if not task.cancelling():
            task.cancel()

    signals = (signal.SIGTERM, signal.SIGHUP)
    for sig in signals:
        loop.add_signal_handler(sig, cancel_once)
    try:
        return await task
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def _verify(
    args: argparse.Namespace,
    settings: ModelSourceSettings,
    token: SecretStr | None,
    sandbox: SandboxSettings,
) -> BenchmarkResult:
    from ..audio.dataset import DatasetSpec, generate_dataset
    from ..audio.pool import ScoringPool, default_workers
    from ..sandbox import ModelRef, fetch_model, inspect_repo
    from ..sandbox.runner import DatasetDirs, ModelUnderTest
    from ..sandbox.setup import build_source, limits_of, open_runner

    with tempfile.TemporaryDirectory(prefix="soundsright-verify-") as tmp_name:
        tmp = Path(tmp_name)
        if args.path is not None:
            path = args.path.resolve()
            digest = await inspect_repo(path, limits_of(settings))
            label = str(path)
        else:
            ref = ModelRef.parse(args.repo, args.revision)
            fetched = await fetch_model(
                build_source(settings, token), ref, tmp / "model", limits_of(settings)
            )
            path, digest, label = fetched.path, fetched.digest, str(ref)
        model = ModelUnderTest(label, path, digest.content_hash, args.competition)
        async with ScoringPool(workers=min(4, default_workers())) as pool:
            # the validator's offline dataset: espeak-ng speech, synthetic noise or rooms
            spec = DatasetSpec(args.competition, count=args.count, seed=args.seed, out=tmp / "data")
            dataset = DatasetDirs.of(await generate_dataset(spec, pool=pool))
            async with open_runner(
                sandbox, pool=pool, work_dir=tmp / "work", sweep_owner=dead_verify_owner
            ) as runner:
                return await runner.benchmark(model, dataset)


def _print_result(result: BenchmarkResult) -> None:
    print(f"model: {result.model}")
    print(f"competition: {result.competition}")
    print(f"content hash: {result.content_hash}")
    for step in result.steps:
        mark = "ok" if step.ok else f"FAILED ({step.reason}): {step.detail}"
        print(f"  {step.step:<9} {step.seconds:8.2f} s  {mark}")
    if result.metrics is not None:
        for metric, r in result.metrics.metrics.items():
            print(f"  {metric.value:<6} {r.average:.4f}")
    failed = result.failed
    unscored = result.unscored_files()
    if failed is None and unscored:
        print(
            f"FAILED: {len(unscored)} of {result.metrics.files if result.metrics else '?'} "
            "output files could not be scored (each scores the metric's floor):"
        )
        for name, reason in sorted(unscored.items())[:20]:
            print(f"  {name}: {reason}")
    elif failed is not None:
        print(f"FAILED at step {failed.step}: {failed.reason}: {failed.detail}")
        if failed.step == "build" and result.build_log:
            print("build log (tail):")
            print(result.build_log[-3000:])
        elif result.container_log:
            print("container log (tail):")
            print(result.container_log[-3000:])
    else:
        print("PASSED")


_SUBCOMMANDS: tuple[Callable[[SubParsers], None], ...] = (_register_check, _register_verify)
