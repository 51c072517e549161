"""``soundsright judge``: the JSON contract, the summary, one clear error per malformed field."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from soundsright_async.cli import main

BIN = Path(sys.executable).parent

# Reference scenario A5 plus a copy of hk1's model (same hash) from hk4, a validator-permit uid 0,
# an enriched record (seed, CI) and a previous winner for ESTOI.
EPOCH: dict[str, Any] = {
    "hotkeys": ["hk0", "hk1", "hk2", "hk3", "hk4"],
    "validator_permits": [True, False, False, False, False],
    "baseline": {"DENOISING_16000HZ": {"PESQ": 2.2, "ESTOI": 0.82}},
    "previous_winners": {
        "DENOISING_16000HZ": {"ESTOI": {"hotkey": "hk3", "block": 10, "average": 0.79}}
    },
    "results": {
        "DENOISING_16000HZ": [
            {
                "hotkey": "hk1",
                "block": 100,
                "model_hash": "h1",
                "metrics": {"PESQ": 2.5, "ESTOI": 0.85},
            },
            {
                "hotkey": "hk2",
                "block": 90,
                "seed": 777,
                "metrics": {
                    "PESQ": {"average": 2.4, "confidence_interval": [2.3, 2.5]},
                    "ESTOI": 0.88,
                },
            },
            {
                "hotkey": "hk3",
                "block": 80,
                "ckpt_hashes": ["c3"],
                "metrics": {"PESQ": 2.0, "ESTOI": 0.80},
            },
            {
                "hotkey": "hk4",
                "block": 120,
                "model_hash": "h1",
                "metrics": {"PESQ": 2.6, "ESTOI": 0.9},
            },
        ]
    },
}


def write(tmp_path: Path, obj: object, name: str = "epoch.json") -> Path:
    path = tmp_path / name
    path.write_bytes(obj if isinstance(obj, bytes) else orjson.dumps(obj))
    return path


def run_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], obj: object) -> dict[str, Any]:
    code = main(["judge", "--input", str(write(tmp_path, obj)), "--json"])
    assert code == 0
    out: dict[str, Any] = orjson.loads(capsys.readouterr().out)
    return out


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_json(tmp_path, capsys, EPOCH)
    assert list(out) == [
        "competition_scores",
        "scores",
        "weights",
        "fallback_used",
        "weights_rule",
        "winners",
        "decisions",
        "dropped",
    ]
    d16 = [
        0.0,
        6.0 + 1.2 * 0.85 / 1.65,
        4.0 + 1.8 * 2.4 / 4.4,
        1.8 * 2.0 / 4.4 + 1.2 * 0.8 / 1.65,
        0.0,
    ]
    assert out["competition_scores"]["DENOISING_16000HZ"] == pytest.approx(d16, rel=1e-12)
    assert out["competition_scores"]["DENOISING_48000HZ"] == [0.0] * 5
    assert out["scores"] == pytest.approx(d16, rel=1e-12)
    assert out["weights"] == pytest.approx([s / 13.0 for s in d16], rel=1e-12)
    assert out["fallback_used"] is False
    assert out["winners"] == {
        "DENOISING_16000HZ": {
            "PESQ": {"hotkey": "hk1", "block": 100, "average": 2.5},
            "ESTOI": {"hotkey": "hk2", "block": 90, "average": 0.88},
        },
        "DEREVERBERATION_16000HZ": {},
        "DENOISING_48000HZ": {},
        "DEREVERBERATION_48000HZ": {},
    }
    assert out["dropped"] == [
        {
            "competition": "DENOISING_16000HZ",
            "hotkey": "hk4",
            "uid": 4,
            "reason": "same_model_hash",
            "kept": "hk1",
            "kept_competition": "DENOISING_16000HZ",
        }
    ]
    assert len(out["decisions"]) == 10
    estoi = out["decisions"][1]
    assert estoi == {
        "competition": "DENOISING_16000HZ",
        "metric": "ESTOI",
        "rule": "challenger_surpassed",
        "best": {"hotkey": "hk2", "uid": 2, "block": 90, "average": 0.88},
        "incumbent": {"hotkey": "hk3", "uid": 3, "block": 80, "average": 0.8},
        "previous": {"hotkey": "hk3", "block": 10, "average": 0.79},
        "threshold": pytest.approx(0.0035 - 10 / 50400 * 0.002, rel=1e-12),
        "target": pytest.approx(0.8 * (1 + 0.0035 - 10 / 50400 * 0.002), rel=1e-12),
        "winner": {"hotkey": "hk2", "block": 90, "average": 0.88, "uid": 2},
        "winner_share": 4.0,
        "remainder": [
            {"hotkey": "hk1", "uid": 1, "average": 0.85, "ratio": pytest.approx(0.85 / 0.88),
             "share": pytest.approx(1.2 * 0.85 / 1.65)},
            {"hotkey": "hk3", "uid": 3, "average": 0.8, "ratio": pytest.approx(0.8 / 0.88),
             "share": pytest.approx(1.2 * 0.8 / 1.65)},
        ],
        "remainder_unpaid": 0.0,
        "excluded": [],
    }  # fmt: skip
    assert out["decisions"][2]["rule"] == "no_candidate"
    assert out["decisions"][2]["remainder_unpaid"] == 1.2


def test_winners_feed_the_next_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = run_json(tmp_path, capsys, EPOCH)
    nxt = {"hotkeys": EPOCH["hotkeys"], "previous_winners": first["winners"]}
    out = run_json(tmp_path, capsys, nxt)
    # Nobody submitted: each previous winner keeps its winner share, no remainder.
    assert out["competition_scores"]["DENOISING_16000HZ"] == [0.0, 6.0, 4.0, 0.0, 0.0]
    assert out["winners"] == first["winners"]
    assert [d["rule"] for d in out["decisions"][:2]] == ["previous_kept", "previous_kept"]


def test_fallback_and_null_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    epoch = {
        "hotkeys": ["v", "a", "b"],
        "validator_permits": [True, False, False],
        "baseline": None,
        "results": {
            "DENOISING_16000HZ": [{"hotkey": "a", "block": None, "metrics": {"PESQ": None}}]
        },
        "fallback": [2],
    }
    out = run_json(tmp_path, capsys, epoch)
    assert (out["scores"], out["weights"], out["fallback_used"]) == ([0.0] * 3, [0, 0, 1.0], True)
    assert out["decisions"][0]["excluded"] == [{"hotkey": "a", "uid": 1, "reason": "no_average"}]


def test_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["judge", "--input", str(write(tmp_path, EPOCH))]) == 0
    out = capsys.readouterr().out
    assert "challenger_surpassed" in out
    assert "DEREVERBERATION_48000HZ: no candidates, nothing paid" in out
    assert "dropped DENOISING_16000HZ hk4: same_model_hash, keeps hk1" in out
    assert "6.618182" in out  # hk1's score
    assert "0.509091" in out  # hk1's weight (6.618182 / 13)


def _mutate(path: str, value: object) -> dict[str, Any]:
    """Copy EPOCH with the value at a dotted path (list indices as numbers) replaced or removed."""
    epoch = copy.deepcopy(EPOCH)
    *parents, last = path.split(".")
    node: Any = epoch
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[int(last) if isinstance(node, list) else last] = value
    return epoch


_DELETE = object()
R0 = "results.DENOISING_16000HZ.0"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("hotkeys", _DELETE, "hotkeys: required field is missing"),
        ("hotkeys", "hk0", "hotkeys: expected a list, got str 'hk0'"),
        ("hotkeys.2", "hk1", "hotkeys[2]: 'hk1' is already uid 1"),
        ("hotkeys.0", "", "hotkeys[0]: expected a non-empty string"),
        ("validator_permits", [True], "validator_permits: has 1 flags for 5 hotkeys"),
        ("validator_permits.1", 1, "validator_permits[1]: expected true or false, got int 1"),
        ("baselines", {}, "baselines: unknown field"),
        ("results.DENOISING_16KHZ", [], "results.DENOISING_16KHZ: unknown competition"),
        ("baseline.DENOISING_16000HZ.SI_SDR", 1.0, "baseline.DENOISING_16000HZ.SI_SDR: "
         "DENOISING_16000HZ has no such metric (expected PESQ, ESTOI)"),
        (f"{R0}.block", "100", "results.DENOISING_16000HZ[0].block: expected a non-negative "
         "integer, got str '100'"),
        (f"{R0}.block", 100.5, "results.DENOISING_16000HZ[0].block: expected a non-negative"),
        (f"{R0}.block", True, "results.DENOISING_16000HZ[0].block: expected a non-negative"),
        (f"{R0}.block", -1, "results.DENOISING_16000HZ[0].block: expected a non-negative"),
        (f"{R0}.hotkey", _DELETE, "results.DENOISING_16000HZ[0].hotkey: required field is missing"),
        (f"{R0}.hotkey", "hk2", "results.DENOISING_16000HZ[1].hotkey: 'hk2' already has a result "
         "at results.DENOISING_16000HZ[0]"),
        (f"{R0}.metrics", _DELETE, "results.DENOISING_16000HZ[0].metrics: required field"),
        (f"{R0}.metrics.PESQ", "2.5", "results.DENOISING_16000HZ[0].metrics.PESQ: expected a "
         "number, got str '2.5'"),
        (f"{R0}.model_hash", 5, "results.DENOISING_16000HZ[0].model_hash: expected a non-empty"),
        (f"{R0}.ckpt_hashes", "c1", "results.DENOISING_16000HZ[0].ckpt_hashes: expected a list"),
        ("results.DENOISING_16000HZ", {}, "results.DENOISING_16000HZ: expected a list, got dict"),
        ("previous_winners.DENOISING_16000HZ.ESTOI.average", _DELETE,
         "previous_winners.DENOISING_16000HZ.ESTOI.average: required field is missing"),
        ("fallback", "everyone", 'fallback: expected "miners", "none" or a list of uids'),
        ("fallback", [0], "fallback[0]: uid 0 holds a validator permit"),
        ("fallback", [9], "fallback[0]: uid 9 is not registered"),
        (f"{R0}.metrics.PESQ", 27.3, "results.DENOISING_16000HZ[0].metrics.PESQ: 27.3 is outside "
         "PESQ's range [-0.5, 4.644]"),
        (f"{R0}.metrics.ESTOI", {"average": -1.5}, "results.DENOISING_16000HZ[0].metrics.ESTOI: "
         "-1.5 is outside ESTOI's range [-1, 1]"),
        ("baseline.DENOISING_16000HZ.PESQ", -0.51, "baseline.DENOISING_16000HZ.PESQ: -0.51 is "
         "outside PESQ's range [-0.5, 4.644]"),
        ("previous_winners.DENOISING_16000HZ.ESTOI.average", 1.01,
         "previous_winners.DENOISING_16000HZ.ESTOI.average: 1.01 is outside ESTOI's range [-1, 1]"),
        ("unprocessed", {"DENOISING_48000HZ": {"SI_SDR": 1e308}}, "unprocessed.DENOISING_48000HZ."
         "SI_SDR: 1e+308 is outside SI_SDR's range [-100, 100]"),
        ("unprocessed", {"DENOISING_48000HZ": {"ESTOI": 0.6}}, "unprocessed.DENOISING_48000HZ."
         "SI_SDR: required field is missing (the competition's gate metric"),
        ("unprocessed", {"DENOISING_16000HZ": {"PESQ": None}}, "unprocessed.DENOISING_16000HZ."
         "PESQ: required field is missing"),
        ("unprocessed", {"DENOISING_16000HZ": {"SI_SDR": 3.0}}, "unprocessed.DENOISING_16000HZ."
         "SI_SDR: DENOISING_16000HZ has no such metric"),
        ("burn_uid", 5, "burn_uid: uid 5 is not registered"),
        ("burn_uid", "0", "burn_uid: expected a non-negative integer, got str '0'"),
    ],
)  # fmt: skip
def test_malformed_input_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], path: str, value: object, message: str
) -> None:
    file = write(tmp_path, _mutate(path, value))
    assert main(["judge", "--input", str(file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"soundsright: error: {file}: {message}")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "input: expected an object, got list"),
        (b'{"hotkeys": [], "x": NaN}', "not valid JSON"),
    ],
)
def test_unreadable_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    file = write(tmp_path, content)
    assert main(["judge", "--input", str(file)]) == 2
    assert message in capsys.readouterr().err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["judge", "--input", str(tmp_path / "nope.json")]) == 2
    assert (
        capsys.readouterr().err == f"soundsright: error: {tmp_path / 'nope.json'}: no such file\n"
    )


def test_console_script_reads_stdin() -> None:
    proc = subprocess.run(
        [str(BIN / "soundsright"), "judge", "--input", "-", "--json"],
        input=orjson.dumps(EPOCH),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert orjson.loads(proc.stdout)["winners"]["DENOISING_16000HZ"]["PESQ"]["hotkey"] == "hk1"
    bad = subprocess.run(
        [str(BIN / "soundsright"), "judge", "--input", "-"],
        input=b'{"hotkeys": "x"}',
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr == b"soundsright: error: <stdin>: hotkeys: expected a list, got str 'x'\n"


def test_docs_example_matches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "judging.md").read_text()
    blocks = [b.split("```", 1)[0] for b in doc.split("```json\n")[1:]]
    example, documented = orjson.loads(blocks[0]), orjson.loads(blocks[1])
    out = run_json(tmp_path, capsys, example)
    assert out["decisions"][1] == documented["decisions"][0]  # DENOISING_16000HZ ESTOI
    del out["decisions"], documented["decisions"]
    assert out == documented


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"hotkeys": ["a"], "hotkeys": ["a", "b"]}', "hotkeys: key given twice in one object"),
        (
            b'{"hotkeys": ["a"], "results": {"DENOISING_16000HZ": [{"hotkey": "a", "block": 1,'
            b' "metrics": {"PESQ": 4.0, "ESTOI": 0.9, "PESQ": 1.0}}]}}',
            "results.DENOISING_16000HZ[0].metrics.PESQ: key given twice in one object",
        ),
    ],
)
def test_duplicate_keys_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    file = write(tmp_path, content)
    assert main(["judge", "--input", str(file)]) == 2
    assert capsys.readouterr().err == f"soundsright: error: {file}: {message}\n"


# --------------------------------------------------------------------------- issue 14 scenarios

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "judge"


def summary(capsys: pytest.CaptureFixture[str], source: Path) -> str:
    assert main(["judge", "--input", str(source)]) == 0
    return "\n".join(line.rstrip() for line in capsys.readouterr().out.splitlines())


@pytest.fixture(autouse=True)
def _columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # rich lays the summary out for this width


PASSTHROUGH_SUMMARY = """\
DENOISING_16000HZ: no candidates, nothing paid
DEREVERBERATION_16000HZ: no candidates, nothing paid
DENOISING_48000HZ

  metric   winner    average   rule                share   remainder
 ────────────────────────────────────────────────────────────────────
  ESTOI    2 5Gate    0.6148   incumbent_is_best      18    2 unpaid
  SI_SDR   2 5Gate    5.8796   incumbent_is_best       9    1 unpaid
  SI_SIR   2 5Gate     7.186   incumbent_is_best       9    1 unpaid
  SI_SAR   2 5Gate   12.3089   no_incumbent            9    1 unpaid

DEREVERBERATION_48000HZ: no candidates, nothing paid
scores and weights

  uid   hotkey       score     weight
 ─────────────────────────────────────
    2   5Gate    45.000000   1.000000

excluded DENOISING_48000HZ 5Pass: no_improvement"""


def test_passthrough_incumbent_loses_si_sar_to_a_real_denoiser(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Measured numbers: DENOISING_48000HZ, --count 4 --seed 7; the passthrough's averages are
    the unprocessed input's, the spectral gate's are its own (docs/judging.md §3)."""
    source = EXAMPLES / "passthrough_incumbent.json"
    assert summary(capsys, source) == PASSTHROUGH_SUMMARY
    epoch = orjson.loads(source.read_bytes())
    out = run_json(tmp_path, capsys, epoch)
    assert (out["weights"], out["weights_rule"]) == ([0.0, 0.0, 1.0], "scores")
    sar = out["decisions"][7]
    assert (sar["metric"], sar["rule"], sar["incumbent"]) == ("SI_SAR", "no_incumbent", None)
    assert sar["previous"] == {"hotkey": "5Pass", "block": 1000, "average": 100.0}
    assert sar["winner"] == {"hotkey": "5Gate", "block": 2000, "average": 12.3089, "uid": 2}
    for d in out["decisions"][4:8]:
        assert d["excluded"] == [{"hotkey": "5Pass", "uid": 1, "reason": "no_improvement"}]
    # Without the unprocessed input the passthrough keeps SI_SAR at the ceiling for ever and
    # takes the ESTOI, SI_SDR and SI_SIR remainder pools (2 + 1 + 1) as the only other candidate.
    del epoch["unprocessed"]
    out = run_json(tmp_path, capsys, epoch)
    assert out["winners"]["DENOISING_48000HZ"]["SI_SAR"]["hotkey"] == "5Pass"
    assert out["scores"] == [0.0, 9.0 + 4.0, 36.0 + 1.0]


SIBLING_TAIL = """\
scores and weights

  uid   hotkey       score     weight
 ─────────────────────────────────────
    0   5Ann     10.000000   0.500000
    3   5Dan     10.000000   0.500000

dropped DEREVERBERATION_16000HZ 5Bob: same_model_hash, keeps 5Ann in DENOISING_16000HZ
dropped DEREVERBERATION_48000HZ 5Cat: shared_checkpoint, keeps 5Ann in DENOISING_16000HZ"""


def test_a_copy_in_a_sibling_competition_is_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = EXAMPLES / "sibling_copy.json"
    assert summary(capsys, source).endswith(SIBLING_TAIL)
    out = run_json(tmp_path, capsys, orjson.loads(source.read_bytes()))
    assert out["dropped"] == [
        {"competition": "DEREVERBERATION_16000HZ", "hotkey": "5Bob", "uid": 1,
         "reason": "same_model_hash", "kept": "5Ann", "kept_competition": "DENOISING_16000HZ"},
        {"competition": "DEREVERBERATION_48000HZ", "hotkey": "5Cat", "uid": 2,
         "reason": "shared_checkpoint", "kept": "5Ann", "kept_competition": "DENOISING_16000HZ"},
    ]  # fmt: skip
    assert out["winners"]["DEREVERBERATION_16000HZ"]["PESQ"]["hotkey"] == "5Dan"
    assert out["scores"] == [10.0, 0.0, 0.0, 10.0]


PERMIT_SUMMARY = """\
DENOISING_16000HZ

  metric   winner   average   rule           share     remainder
 ────────────────────────────────────────────────────────────────
  PESQ     1 5Ann       2.5   no_incumbent       6   1.8000 to 1
  ESTOI    1 5Ann      0.87   no_incumbent       4   1.2000 to 1

DEREVERBERATION_16000HZ: no candidates, nothing paid
DENOISING_48000HZ: no candidates, nothing paid
DEREVERBERATION_48000HZ: no candidates, nothing paid
scores and weights

  uid   hotkey       score     weight
 ─────────────────────────────────────
    1   5Ann     10.000000   0.769231
    2   5Bob      3.000000   0.230769

excluded DENOISING_16000HZ 5Val: validator_permit"""


def test_a_permit_holder_with_the_best_result_is_not_the_winner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = EXAMPLES / "permit_holder.json"
    assert summary(capsys, source) == PERMIT_SUMMARY
    out = run_json(tmp_path, capsys, orjson.loads(source.read_bytes()))
    estoi = out["decisions"][1]
    assert (estoi["rule"], estoi["previous"]["hotkey"], estoi["winner"]["hotkey"]) == (
        "no_incumbent",
        "5Val",
        "5Ann",
    )
    assert estoi["excluded"] == [{"hotkey": "5Val", "uid": 0, "reason": "validator_permit"}]
    assert out["scores"] == [0.0, 10.0, 3.0]


def test_no_payable_uid_sets_no_weights_or_burns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    epoch: dict[str, Any] = {
        "hotkeys": ["v0", "v1"],
        "validator_permits": [True, True],
        "results": {"DENOISING_16000HZ": [{"hotkey": "v1", "block": 1, "metrics": {"PESQ": 3}}]},
    }
    out = run_json(tmp_path, capsys, epoch)
    assert (out["scores"], out["weights"], out["weights_rule"]) == (
        [0.0, 0.0],
        [],
        "no_payable_uid",
    )
    assert out["fallback_used"] is True
    assert summary(capsys, write(tmp_path, epoch)).endswith(
        "no uid can be paid: set no weights this epoch\nexcluded DENOISING_16000HZ v1: "
        "validator_permit"
    )
    out = run_json(tmp_path, capsys, {**epoch, "burn_uid": 0})
    assert (out["weights"], out["weights_rule"]) == ([1.0, 0.0], "burn_uid")
    assert "no uid can be paid: all weight to burn uid 0" in summary(
        capsys, write(tmp_path, {**epoch, "burn_uid": 0})
    )
    out = run_json(tmp_path, capsys, {"hotkeys": []})
    assert (out["weights"], out["weights_rule"]) == ([], "no_payable_uid")
