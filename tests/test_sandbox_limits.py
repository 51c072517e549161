"""Container limits fitted to the engine's host, and the seccomp profile that denies user
namespaces (pure; the container tests prove ``unshare -r`` fails in a real container)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soundsright_async._exceptions import ConfigError
from soundsright_async.sandbox.engine import SandboxLimits, container_config
from soundsright_async.sandbox.engine.seccomp import deny_namespaces
from soundsright_async.sandbox.resources import Fitted, fit_limits

GiB, MiB = 1024**3, 1024**2
HOST = 23.6 * GiB  # the review's host: 23.6 GiB, 2 cores


def test_unset_limits_are_sized_from_the_host() -> None:
    fitted = fit_limits(
        slots=2,
        host_memory=int(HOST),
        host_cpus=2,
        memory_bytes=None,
        cpus=None,
        tmpfs_bytes=4096 * MiB,
    )
    # 80% of 23.6 GiB = 18.88 GiB; per slot 9.44 GiB, minus 4 GiB of tmpfs
    assert fitted == Fitted(memory_bytes=int(HOST * 0.8) // 2 - 4096 * MiB, cpus=1.0)
    assert 2 * (fitted.memory_bytes + 4096 * MiB) <= HOST * 0.8
    big = fit_limits(
        slots=1,
        host_memory=512 * GiB,
        host_cpus=64,
        memory_bytes=None,
        cpus=None,
        tmpfs_bytes=GiB,
    )
    assert big == Fitted(memory_bytes=16 * GiB, cpus=64.0)


def test_the_old_defaults_do_not_fit_two_slots_on_the_review_host() -> None:
    with pytest.raises(ConfigError) as exc:
        fit_limits(
            slots=2,
            host_memory=int(HOST),
            host_cpus=2,
            memory_bytes=16 * GiB,
            cpus=None,
            tmpfs_bytes=4 * GiB,
        )
    assert str(exc.value) == (
        "sandbox: 2 run slots x (memory_mb 16384 + tmpfs_mb 4096) = 40960 MiB is over 80% of "
        "the engine host's 24166 MiB; lower memory_mb, tmpfs_mb or run_slots (or leave "
        "memory_mb unset to size it from the host)"
    )
    with pytest.raises(ConfigError) as exc:
        fit_limits(
            slots=1,
            host_memory=int(HOST),
            host_cpus=2,
            memory_bytes=GiB,
            cpus=4.0,
            tmpfs_bytes=GiB,
        )
    assert str(exc.value) == (
        "sandbox: 1 run slots x cpus 4 is more than the engine host's 2 CPUs (such a limit "
        "limits nothing); lower cpus or run_slots (or leave cpus unset)"
    )


def test_exact_fit_is_accepted_and_one_byte_over_is_not() -> None:
    budget = int(10 * GiB * 0.8)
    ok = fit_limits(
        slots=2,
        host_memory=10 * GiB,
        host_cpus=2,
        memory_bytes=budget // 2 - GiB,
        cpus=1.0,
        tmpfs_bytes=GiB,
    )
    assert ok == Fitted(budget // 2 - GiB, 1.0)
    with pytest.raises(ConfigError):
        fit_limits(
            slots=2,
            host_memory=10 * GiB,
            host_cpus=2,
            memory_bytes=budget // 2 - GiB + 1,
            cpus=1.0,
            tmpfs_bytes=GiB,
        )


def test_a_host_too_small_for_the_slots_is_refused() -> None:
    with pytest.raises(ConfigError, match="leave under 256 MiB per model"):
        fit_limits(
            slots=4,
            host_memory=4 * GiB,
            host_cpus=4,
            memory_bytes=None,
            cpus=None,
            tmpfs_bytes=GiB,
        )


PROFILE = Path("/usr/share/containers/seccomp.json")


def _base() -> dict:  # type: ignore[type-arg]
    if PROFILE.exists():
        return json.loads(PROFILE.read_text())  # type: ignore[no-any-return]
    # the shape of containers-common's default (what matters here: the unconditional allow)
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["read", "clone", "clone3", "unshare", "setns"], "action": "SCMP_ACT_ALLOW"},
            {
                "names": ["setns"],
                "action": "SCMP_ACT_ALLOW",
                "includes": {"caps": ["CAP_SYS_ADMIN"]},
            },
        ],
    }


def test_profile_denies_namespaces_and_keeps_the_rest() -> None:
    base = _base()
    out = deny_namespaces(base)
    ns = {"clone", "clone3", "unshare", "setns"}
    rules_for = lambda name: [r for r in out["syscalls"] if name in r["names"]]  # noqa: E731
    assert (
        rules_for("clone")
        == rules_for("unshare")
        == [
            {
                "names": ["clone", "unshare"],
                "action": "SCMP_ACT_ALLOW",
                "args": [
                    {"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
                ],
            },
            {
                "names": ["clone", "unshare"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 1,
                "args": [
                    {
                        "index": 0,
                        "value": 0x10000000,
                        "valueTwo": 0x10000000,
                        "op": "SCMP_CMP_MASKED_EQ",
                    }
                ],
            },
        ]
    )
    assert rules_for("clone3") == [
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    ]
    assert rules_for("setns") == [{"names": ["setns"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    # every other syscall keeps exactly its rules, and the default action is unchanged
    kept = [
        {**r, "names": [n for n in r["names"] if n not in ns]}
        for r in base["syscalls"]
        if set(r["names"]) - ns
    ]
    assert out["syscalls"][: len(kept)] == kept
    assert out["defaultAction"] == base["defaultAction"]
    assert base == _base()  # the input is not modified
    with pytest.raises(ValueError, match="not a seccomp profile"):
        deny_namespaces({"syscalls": []})


def test_container_config_carries_the_profile() -> None:
    cfg = container_config(
        image="i",
        network="n",
        labels={},
        limits=SandboxLimits(),
        tmpfs=["/tmp"],
        engine_kind="podman",
        seccomp="/run/x/model.json",
    )
    assert cfg["HostConfig"]["SecurityOpt"] == ["no-new-privileges", "seccomp=/run/x/model.json"]
