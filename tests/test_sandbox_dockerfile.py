"""The Dockerfile preflight (what is refused before anything is built, and why) and the
builder container's spec."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from soundsright_async.sandbox.engine import BuildFailed, BuildLimits
from soundsright_async.sandbox.engine.buildspec import (
    STORE,
    build_command,
    builder_libpod_spec,
)
from soundsright_async.sandbox.engine.dockerfile import (
    check_dockerfile,
    normalise_image,
    parse_dockerfile,
)
from soundsright_async.sandbox.engine.sandboxbuild import _docker_archive, _stale_archives

BASE = "localhost/soundsright-base:latest"
ALLOWED = [BASE]


def refused(text: str) -> str:
    with pytest.raises(BuildFailed) as exc:
        check_dockerfile(text, ALLOWED)
    assert exc.value.reason == "build_refused"
    assert "\n" not in exc.value.detail
    return exc.value.detail


def test_parser_joins_continuations_and_drops_comments_inside() -> None:
    text = "# escape=\\\nfrom x\nRUN a \\\n  # comment\n\n  b \\\n c\ncopy  . /app\n"
    assert [(i.line, i.keyword, i.args) for i in parse_dockerfile(text)] == [
        (2, "FROM", "x"),
        (3, "RUN", "a   b  c"),
        (8, "COPY", ". /app"),
    ]


def test_parser_escape_directive_backtick() -> None:
    text = "# escape=`\nFROM x\nRUN a `\n b \\\nCOPY . /\n"
    assert [(i.keyword, i.args) for i in parse_dockerfile(text)] == [
        ("FROM", "x"),
        ("RUN", "a  b \\"),
        ("COPY", ". /"),
    ]


def test_a_comment_line_ends_the_directives() -> None:
    # "# escape=`" after a comment is an ordinary comment, so \ still continues lines
    text = "# hello\n# escape=`\nFROM x\nRUN a \\\n b\n"
    assert [i.args for i in parse_dockerfile(text)] == ["x", "a  b"]


@pytest.mark.parametrize(
    "ref", [BASE, "localhost/soundsright-base", "LOCALHOST/soundsright-base:latest".lower()]
)
def test_allowed_base_passes(ref: str) -> None:
    text = (
        f"FROM {ref} AS build\nRUN echo\nFROM build\nCOPY --from=build /a /b\nCOPY --from=0 /a /c\n"
    )
    assert check_dockerfile(text, ALLOWED) == [BASE]


def test_arg_substituted_from() -> None:
    ok = "ARG BASE=localhost/soundsright-base\nARG TAG=latest\nFROM ${BASE}:$TAG\n"
    assert check_dockerfile(ok, ALLOWED) == [BASE]
    assert check_dockerfile("ARG T\nFROM localhost/soundsright-base:${T:-latest}\n", ALLOWED)
    assert "build argument" in refused("ARG B\nFROM $B\n")
    assert "not an allowed image" in refused("ARG B=docker.io/library/python:3.11\nFROM ${B}\n")
    # an ARG declared inside a stage is not visible to the next FROM
    assert "build argument" in refused(f"FROM {BASE}\nARG B={BASE}\nFROM $B\n")


@pytest.mark.parametrize(
    "line",
    [
        "FROM python:3.11",
        "FROM docker.io/library/debian:bookworm",
        "FROM 127.0.0.1:5000/evil",
        "from   localhost:5000/soundsright-base:latest",
        "FROM --platform=linux/amd64 quay.io/x/y",
        "FROM localhost/soundsright-base@sha256:" + "0" * 64,
    ],
)
def test_foreign_from_is_refused(line: str) -> None:
    detail = refused(f"{line}\nRUN true\n")
    assert detail.startswith("Dockerfile line 1: FROM")
    assert "not an allowed image" in detail


@pytest.mark.parametrize(
    "step",
    [
        "ADD http://127.0.0.1:8080/x /x",
        "add https://example.invalid/a.tgz /",
        'ADD ["http://10.0.0.1/x", "/x"]',
        "ADD --chmod=644 \\\n  ftp://h/x /x",
        "COPY http://h/x /x",
        "ADD git@github.com:a/b.git /src",
        "ONBUILD ADD http://h/x /x",
    ],
)
def test_url_sources_are_refused(step: str) -> None:
    detail = refused(f"FROM {BASE}\n{step}\n")
    assert detail.startswith("Dockerfile line 2:")
    assert "from a URL" in detail


def test_url_through_arg_is_refused() -> None:
    assert "from a URL" in refused(f"FROM {BASE}\nARG U=http://h/x\nADD $U /x\n")


@pytest.mark.parametrize(
    "step",
    [
        "COPY --from=docker.io/library/busybox /bin/sh /sh",
        "COPY --from=2 /a /b",
        "RUN --mount=type=bind,from=alpine,source=/,target=/mnt true",
        "RUN --mount=type=cache,target=/c,FROM=evil:1 true",
    ],
)
def test_foreign_from_flags_are_refused(step: str) -> None:
    assert "not an allowed image" in refused(f"FROM {BASE} AS a\n{step}\n")


def test_cve_2024_1753_shape_passes_the_preflight() -> None:
    # the symlink-stage bind mount names an earlier stage: allowed here, contained by the builder
    text = (
        f"FROM {BASE} AS s1\nRUN ln -s / /rootlink\n"
        f"FROM {BASE}\nRUN --mount=type=bind,from=s1,source=/rootlink,target=/mnt cat /mnt/x\n"
    )
    assert check_dockerfile(text, ALLOWED) == [BASE]


def test_scratch_and_no_from() -> None:
    assert check_dockerfile("FROM scratch\nCOPY . /\n", ALLOWED) == []
    assert "no FROM" in refused("# only a comment\n")
    assert "before the first FROM" in refused("RUN true\nFROM scratch\n")


def test_normalise_image() -> None:
    assert normalise_image("a/b") == "a/b:latest"
    assert normalise_image("host:5000/b") == "host:5000/b:latest"
    assert normalise_image("a/b:1") == "a/b:1"
    assert normalise_image("a@sha256:00") == "a@sha256:00"


# -- the builder container's spec (pure) ------------------------------------------------------


def test_builder_spec_is_locked_down() -> None:
    limits = BuildLimits(memory_bytes=2 * 1024**3, disk_bytes=3 * 1024**3, cpus=1.5, pids=200)
    spec = builder_libpod_spec(
        name="b",
        image="localhost/soundsright-builder:latest",
        labels={"soundsright.owner": "o"},
        limits=limits,
        in_dir="/w/in",
        images_dir="/w/images",
        uid_offset=3,
        network=None,
    )
    assert spec["netns"] == {"nsmode": "none"}
    assert "Networks" not in spec
    host_uid = 1_000_000_000 + 3 * 65536
    assert spec["idmappings"]["UIDMap"] == [{"container_id": 0, "host_id": host_uid, "size": 65536}]
    assert spec["idmappings"]["GIDMap"] == spec["idmappings"]["UIDMap"]
    assert spec["userns"] == {"nsmode": "private"}
    assert spec["cap_add"] == ["SYS_ADMIN"]
    assert spec["no_new_privileges"] is True
    assert spec["privileged"] is False
    binds = [m for m in spec["mounts"] if m["type"] == "bind"]
    assert [(m["source"], m["destination"]) for m in binds] == [
        ("/w/in", "/in"),
        ("/w/images", "/images"),
    ]
    assert all("ro" in m["options"] for m in binds)
    tmpfs = {m["destination"]: m for m in spec["mounts"] if m["type"] == "tmpfs"}
    assert sorted(tmpfs) == sorted([STORE, "/run", "/tmp", "/var/tmp"])
    assert f"size={3 * 1024**3}" in tmpfs[STORE]["options"]
    assert all(f"size={64 * 1024**2}" in tmpfs[p]["options"] for p in ("/run", "/tmp", "/var/tmp"))
    # the builder's own root filesystem (and the base image store in it) is read-only
    assert spec["read_only_filesystem"] is True
    assert spec["resource_limits"] == {
        "memory": {"limit": 5 * 1024**3, "swap": 5 * 1024**3},
        "pids": {"limit": 200},
        "cpu": {"quota": 150_000, "period": 100_000},
    }


def test_builder_spec_egress_network_and_dns() -> None:
    spec = builder_libpod_spec(
        name="b",
        image="i",
        labels={},
        limits=BuildLimits(),
        in_dir="/a",
        images_dir="/b",
        uid_offset=0,
        network="soundsright-build-x",
        dns=["9.9.9.9"],
    )
    assert spec["netns"] == {"nsmode": "bridge"}
    assert spec["Networks"] == {"soundsright-build-x": {}}
    assert spec["dns_server"] == ["9.9.9.9"]


def test_build_command_and_limits() -> None:
    argv = build_command("t:1", {"abc.tar": BASE}, {"soundsright.owner": "o"})
    assert argv[:2] == ["sh", "-c"]
    assert argv[3:] == ["sh", "t:1", "abc.tar", BASE, "--", "--label", "soundsright.owner=o"]
    with pytest.raises(ValueError, match="pids"):
        BuildLimits(pids=4)
    with pytest.raises(ValueError, match="64 MiB"):
        BuildLimits(disk_bytes=1024)


def test_stale_base_archives_are_dropped(tmp_path: Path) -> None:
    old, other, new = tmp_path / "old.tar", tmp_path / "other.tar", tmp_path / "new.tar"
    for path in (old, other, new):
        path.write_bytes(b"x")
    old.with_suffix(".name").write_text(BASE)
    other.with_suffix(".name").write_text("localhost/other:latest")
    assert _stale_archives(tmp_path, new, BASE) == ["old.tar"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "new.name",
        "new.tar",
        "other.name",
        "other.tar",
    ]


# -- the archive the engine loads, from the builder's OCI layout (pure) --------------------------


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layout(path: Path, layers: list[tuple[str, bytes | None]], tag_in_index: str = "x") -> None:
    """An ``oci/`` layout as the archive endpoint returns it: ``layers`` are (diff id, blob or
    None for no blob file)."""
    blobs: dict[str, bytes] = {}
    config = json.dumps(
        {"rootfs": {"type": "layers", "diff_ids": [d for d, _ in layers]}, "config": {}}
    ).encode()
    blobs[_digest(config)] = config
    entries = []
    for diff_id, data in layers:
        if data is None:
            entries.append({"digest": diff_id, "size": 0})
        else:
            blobs[_digest(data)] = data
            entries.append({"digest": _digest(data), "size": len(data)})
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"digest": _digest(config), "size": len(config)},
            "layers": entries,
        }
    ).encode()
    blobs[_digest(manifest)] = manifest
    index = json.dumps(
        {
            "manifests": [
                {
                    "digest": _digest(manifest),
                    "annotations": {"org.opencontainers.image.ref.name": tag_in_index},
                }
            ]
        }
    ).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in [("oci/index.json", index)] + [
            (f"oci/blobs/sha256/{d.split(':')[1]}", b) for d, b in blobs.items()
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _load_as_tar(path: Path, members: list) -> dict[str, bytes]:  # type: ignore[type-arg]
    """The docker-archive ``_docker_archive`` describes, read back as a tar."""
    raw = path.read_bytes()
    buf = io.BytesIO()
    for info, data in members:
        buf.write(info.tobuf(format=tarfile.PAX_FORMAT))
        body = data if isinstance(data, bytes) else raw[data[0] : data[0] + data[1]]
        buf.write(body + b"\0" * (-len(body) % 512))
    buf.write(b"\0" * 1024)
    buf.seek(0)
    with tarfile.open(fileobj=buf, mode="r:") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def test_docker_archive_names_only_the_tag_and_stubs_only_base_layers(tmp_path: Path) -> None:
    base = _digest(b"base layer")
    own = b"the build's own layer"
    outer = tmp_path / "out.tar"
    _layout(outer, [(base, None), (_digest(own), own)], tag_in_index="localhost/soundsright-base")
    files = _load_as_tar(outer, _docker_archive(outer, "t:1", frozenset({base})))
    (top,) = json.loads(files["manifest.json"])
    assert top["RepoTags"] == ["t:1"]  # never what the builder wrote in its index
    assert files[top["Layers"][0]] == b""  # the base layer: a placeholder, reused by the engine
    assert files[top["Layers"][1]] == own
    config = json.loads(files[top["Config"]])
    assert config["rootfs"]["diff_ids"] == [base, _digest(own)]


def test_docker_archive_refuses_a_missing_layer_that_is_not_a_base_layer(tmp_path: Path) -> None:
    outer = tmp_path / "out.tar"
    other = _digest(b"a layer of some other image on the engine")
    _layout(outer, [(other, None)])
    with pytest.raises(BuildFailed, match="lacks its layer"):
        _docker_archive(outer, "t:1", frozenset({_digest(b"base layer")}))


@pytest.mark.parametrize("junk", [b"", b"not a tar", b"\0" * 1024])
def test_docker_archive_refuses_junk(tmp_path: Path, junk: bytes) -> None:
    outer = tmp_path / "out.tar"
    outer.write_bytes(junk)
    with pytest.raises(BuildFailed):
        _docker_archive(outer, "t:1", frozenset())
