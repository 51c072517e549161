"""Refuse a Dockerfile before anything is built (pure; ``tests/test_sandbox_dockerfile.py``).

A model is built offline from the configured base image(s) only, so a Dockerfile is refused
when it names anything else: ``ADD``/``COPY`` of a URL (``http://``, ``git@``...), a ``FROM``,
``COPY --from=`` or ``RUN --mount=...,from=`` naming an image that is neither an allowed image
nor an earlier stage of the same file (``ARG`` defaults are substituted first; a reference that
still holds a variable is refused). The parser follows the Dockerfile rules that matter for
this: parser directives (``# escape=``), line continuations (with comment lines inside them
dropped), case-insensitive keywords, JSON and shell forms, ``ONBUILD`` bodies.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass

from .errors import BuildFailed

__all__ = ["Instruction", "check_dockerfile", "normalise_image", "parse_dockerfile"]

_DIRECTIVE = re.compile(r"^#\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(.*?)\s*$")
_URL = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://|git@)")
_VAR = re.compile(
    r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))"
)
_MAX_INSTRUCTIONS = 2000


@dataclass(frozen=True, slots=True)
class Instruction:
    line: int
    """1-based line where the instruction starts."""
    keyword: str
    """Upper-case keyword (``FROM``, ``RUN``...)."""
    args: str
    """Everything after the keyword, continuation lines joined."""


def _refuse(line: int, why: str) -> BuildFailed:
    return BuildFailed("build_refused", f"Dockerfile line {line}: {why}")


def parse_dockerfile(text: str) -> list[Instruction]:
    """The instructions of ``text`` in order (raises ``BuildFailed`` for an unknown directive
    value or too many instructions)."""
    lines = text.splitlines()
    escape = "\\"
    i = 0
    # parser directives: only at the very top, before any comment, blank line or instruction
    seen: set[str] = set()
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i])
        if m is None or m.group(1).lower() in seen:
            break
        name, value = m.group(1).lower(), m.group(2)
        seen.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise _refuse(i + 1, f"escape directive {value!r} is not \\ or `")
            escape = value
        i += 1
    out: list[Instruction] = []
    while i < len(lines):
        raw = lines[i]
        stripped = raw.strip()
        i += 1
        if not stripped or stripped.startswith("#"):
            continue
        start, parts = i, []
        current = raw.lstrip()
        while True:
            body = current.rstrip()
            if body.endswith(escape) and i <= len(lines):
                parts.append(body[: -len(escape)])
                # continuation: following comment and empty lines are dropped
                while i < len(lines) and (
                    not lines[i].strip() or lines[i].lstrip().startswith("#")
                ):
                    i += 1
                if i >= len(lines):
                    break
                current = lines[i]
                i += 1
                continue
            parts.append(current)
            break
        joined = "".join(parts).strip()
        keyword, _, args = joined.partition(" ")
        if "\t" in keyword:
            keyword, _, rest = keyword.partition("\t")
            args = f"{rest} {args}"
        out.append(Instruction(start, keyword.upper(), args.strip()))
        if len(out) > _MAX_INSTRUCTIONS:
            raise _refuse(start, f"more than {_MAX_INSTRUCTIONS} instructions")
    return out


def normalise_image(ref: str) -> str:
    """``name`` -> ``name:latest`` (a digest or tag is kept); lower-cased repository."""
    ref = ref.strip()
    if "@" in ref:
        return ref
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last else f"{ref}:latest"


def _substitute(value: str, env: Mapping[str, str]) -> str | None:
    """``$X``, ``${X}``, ``${X:-d}``, ``${X:+v}`` with ``env``; None when a variable is unset."""
    missing = False

    def one(m: re.Match[str]) -> str:
        nonlocal missing
        name = m.group(1) or m.group(4)
        op, word = m.group(2), m.group(3) or ""
        val = env.get(name)
        if op in (":-", "-"):
            return val if val else word
        if op in (":+", "+"):
            return word if val else ""
        if val is None:
            missing = True
            return ""
        return val

    result = _VAR.sub(one, value)
    return None if missing or "$" in result else result


def _words(args: str) -> list[str]:
    """Arguments of a shell-form or JSON-form instruction."""
    if args.startswith("["):
        try:
            parsed = json.loads(args)
        except ValueError:
            pass
        else:
            if isinstance(parsed, list) and all(isinstance(p, str) for p in parsed):
                return parsed
    try:
        return shlex.split(args, posix=True)
    except ValueError:
        return args.split()


def _flags(words: list[str]) -> Iterator[tuple[str, str]]:
    for w in words:
        if not w.startswith("--"):
            break
        name, _, value = w[2:].partition("=")
        yield name.lower(), value


def _arg(args: str, env: dict[str, str]) -> None:
    for word in _words(args):
        name, eq, value = word.partition("=")
        if eq:
            env[name] = value  # without a default it stays unset: we pass no --build-arg


def check_dockerfile(text: str, allowed: Collection[str]) -> list[str]:
    """Raise ``BuildFailed("build_refused", ...)`` when the Dockerfile ``text`` would fetch
    anything: a URL in ``ADD``/``COPY``, or an image not in ``allowed`` and not an earlier
    stage. Returns the base image of each stage (normalised), for the builder to provide."""
    allowed_norm = {normalise_image(a) for a in allowed}
    instructions = parse_dockerfile(text)
    global_env: dict[str, str] = {}  # ARGs before the first FROM: the only ones FROM sees
    env: dict[str, str] = {}
    stages: list[str] = []  # stage names ("" for unnamed) in order
    bases: list[str] = []

    def source(line: int, what: str, ref: str, *, stage_ok: bool) -> str:
        resolved = _substitute(ref, global_env if what == "FROM" else env)
        if resolved is None:
            raise _refuse(line, f"{what} {ref!r} uses a build argument with no default value")
        if stage_ok and (
            resolved.lower() in {s for s in stages if s}
            or (resolved.isdigit() and int(resolved) < len(stages))
        ):
            return ""
        if what == "FROM" and resolved.lower() == "scratch":
            return ""
        norm = normalise_image(resolved)
        if norm not in allowed_norm:
            allowed_text = ", ".join(sorted(allowed_norm)) or "none"
            raise _refuse(
                line,
                f"{what} {resolved!r} is not an allowed image (allowed: {allowed_text}, or an "
                "earlier stage); models build offline from the validator's base image",
            )
        return norm

    def check(ins: Instruction) -> None:
        if ins.keyword == "ONBUILD":
            inner = parse_dockerfile(ins.args)
            for sub in inner:
                check(Instruction(ins.line, sub.keyword, sub.args))
            return
        if ins.keyword == "ARG":
            _arg(ins.args, env if stages else global_env)
            return
        if ins.keyword == "FROM":
            words = [w for w in _words(ins.args) if not w.startswith("--")]
            if not words:
                raise _refuse(ins.line, "FROM without an image")
            base = source(ins.line, "FROM", words[0], stage_ok=True)
            if base:
                bases.append(base)
            name = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else ""
            stages.append(name)
            env.clear()
            env.update(global_env)
            return
        if not stages:
            raise _refuse(ins.line, f"{ins.keyword} before the first FROM")
        words = _words(ins.args)
        for flag, value in _flags(words):
            if flag == "from" and ins.keyword in ("COPY", "ADD"):
                source(ins.line, f"{ins.keyword} --from", value, stage_ok=True)
            elif flag == "mount" and ins.keyword == "RUN":
                for opt in value.split(","):
                    key, _, val = opt.partition("=")
                    if key.strip().lower() == "from":
                        source(ins.line, "RUN --mount from", val.strip(), stage_ok=True)
        if ins.keyword in ("ADD", "COPY"):
            for word in (w for w in words if not w.startswith("--")):
                if _URL.match(word) or _URL.match(_substitute(word, env) or word):
                    raise _refuse(
                        ins.line,
                        f"{ins.keyword} from a URL ({word}) is not allowed; put the file in the "
                        "repository",
                    )

    for ins in instructions:
        check(ins)
    if not stages:
        raise BuildFailed("build_refused", "Dockerfile has no FROM instruction")
    return sorted(set(bases))
