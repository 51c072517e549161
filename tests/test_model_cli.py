"""``soundsright model check`` end to end: local directories, a local git hub, a local HF hub."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_sandbox_support import GitHub, HubServer, Link, serve_hub

from soundsright_async.cli import main
from soundsright_async.sandbox import content_hash

FILES = {"Dockerfile": b"FROM base\n", "w/model.ckpt": b"w", "app/run.py": b"print(1)\n"}
HASH = content_hash(FILES.items())
CKPT_W = "50e721e49c013f00c62cf59f2163542a9d8df02464efeb615d31051b0fddc326"
EXPECTED = {"content_hash": HASH, "checkpoint_hashes": [CKPT_W], "bytes": 20, "files": 3}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["model", "check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def make(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_path_json_and_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make(tmp_path / "m", FILES)
    code, out, _ = run(capsys, "--path", str(root), "--json")
    assert (code, json.loads(out)) == (0, EXPECTED)
    code, out, _ = run(capsys, "--path", str(root))
    assert code == 0
    assert out == (
        f"content hash: {HASH}\nfiles: 3\nbytes: 20\ncheckpoint hashes: 1\n"
        f"  {CKPT_W}  w/model.ckpt\n"
    )


def test_path_rejection_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make(tmp_path / "m", FILES)
    os.symlink("/dev/zero", root / "zero")
    code, out, _ = run(capsys, "--path", str(root), "--json")
    assert (code, json.loads(out)) == (
        1,
        {"rejected": "symlink", "detail": "zero is a symbolic link (to '/dev/zero')"},
    )
    code, out, _ = run(capsys, "--path", str(make(tmp_path / "n", {"x": b""})))
    assert (code, out) == (
        1,
        "rejected: no_dockerfile: there is no regular file named Dockerfile at the repository "
        "root\n",
    )


def test_git_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub = GitHub(tmp_path / "git")
    commit = hub.commit("ns/model", FILES)
    evil = hub.commit("ns/evil", FILES | {"x": Link("/etc/passwd")})
    base = ["--source", "git", "--git-base-url", str(hub.hub), "--json"]
    code, out, _ = run(capsys, "--repo", "ns/model", "--revision", commit, *base)
    assert (code, json.loads(out)) == (0, EXPECTED)
    code, out, _ = run(capsys, "--repo", "ns/evil", "--revision", evil, *base)
    assert (code, json.loads(out)) == (1, {"rejected": "symlink", "detail": "x is a symbolic link"})
    code, out, _ = run(capsys, "--repo", "ns/model", "--revision", "main", *base)
    assert code == 1
    assert json.loads(out)["rejected"] == "revision_not_hex"
    code, out, _ = run(capsys, "--repo", "ns/model", "--revision", "0" * 40, *base)
    assert (code, json.loads(out)["rejected"]) == (1, "revision_not_found")
    # the source from a config file ([models]), --git-base-url alone implies --source git
    config = tmp_path / "validator.toml"
    config.write_text(f'[models]\nsource = "git"\ngit_base_url = "file://{hub.hub}"\n')
    code, out, _ = run(capsys, "--repo", "ns/model", "--revision", commit, "--config", str(config))
    assert code == 0
    assert out.splitlines()[0] == f"content hash: {HASH}"
    code, out, _ = run(
        capsys, "--repo", "ns/model", "--revision", commit, "--git-base-url", str(hub.hub)
    )
    assert (code, out.splitlines()[0]) == (0, f"content hash: {HASH}")


def test_huggingface_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit = "c" * 40
    with serve_hub(HubServer(repos={"ns/model": {commit: FILES}})) as hub:
        args = ["--repo", "ns/model", "--hf-endpoint", hub.url, "--json"]
        code, out, _ = run(capsys, *args, "--revision", commit)
        assert (code, json.loads(out)) == (0, EXPECTED)
        code, out, _ = run(capsys, *args, "--revision", "d" * 40)
        assert (code, json.loads(out)) == (
            1,
            {"rejected": "revision_not_found", "detail": f"no commit {'d' * 40} in ns/model"},
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "one of the arguments --path --repo is required"),
        (["--path", "P", "--repo", "a/b"], "not allowed with argument"),
        (["--repo", "a/b"], "--repo needs --revision"),
        (["--path", "P", "--revision", "0" * 40], "--revision goes with --repo"),
        (["--repo", "ab", "--revision", "0" * 40], "--repo must be NAMESPACE/NAME"),
        (["--path", "/nonexistent/dir"], "no such directory"),
        (["--repo", "a/b", "--revision", "0" * 40, "--source", "git"], "--source git needs"),
        (["--repo", "a/b", "--revision", "0" * 40, "--hf-endpoint", "ftp://x"], "http(s)://"),
        (["--repo", "a/b", "--revision", "0" * 40, "--timeout", "0"], "greater than 0"),
    ],
)
def test_bad_arguments_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(tmp_path) if a == "P" else a for a in args]
    with pytest.raises(SystemExit) as info:
        main(["model", "check", *args])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "v.toml"
    config.write_text('[models]\nsource = "git"\n')
    code, _, err = run(capsys, "--path", str(tmp_path), "--config", str(config))
    assert code == 2
    assert err == f'soundsright: error: {config}: models: source = "git" needs git_base_url\n'
