"""The ElevenLabs adapter against a local server speaking the SDK's subset of the HTTP API."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from soundsright_async.audio.dataset import (
    DatasetSpec,
    Sources,
    SourceUnavailableError,
    SpeechAccountError,
    SyntheticNoiseSource,
    generate_dataset,
)
from soundsright_async.audio.dataset.elevenlabs import ElevenLabsSource, RetryPolicy
from soundsright_async.audio.dataset.elevenlabs_fake import FakeElevenLabs
from soundsright_async.audio.dataset.rir import SyntheticRirSource
from soundsright_async.audio.pool import ScoringPool
from soundsright_async.competitions import get_competition

FAST = RetryPolicy(max_attempts=4, backoff_base_s=0.01, backoff_max_s=0.05, request_timeout_s=5)


async def _run(
    fake: FakeElevenLabs,
    out: Path,
    *,
    count: int = 3,
    retry: RetryPolicy = FAST,
    concurrency: int = 2,
    output_format: str = "pcm_44100",
    competition: str = "DENOISING_16000HZ",
    api_key: str = "test-key",
) -> object:
    async with ScoringPool(workers=1) as pool:
        source = ElevenLabsSource(
            api_key,
            pool=pool,
            base_url=fake.base_url,
            retry=retry,
            concurrency=concurrency,
            output_format=output_format,
        )
        async with source:
            spec = DatasetSpec(get_competition(competition), count=count, seed=4, out=out)
            sources = Sources(source, SyntheticNoiseSource(), SyntheticRirSource())
            return await generate_dataset(spec, pool=pool, sources=sources)


async def test_success_lists_paged_voices_and_sends_the_model(tmp_path: Path) -> None:
    async with FakeElevenLabs(voices=["v3", "v1", "v2", "v5", "v4"], page_size=2) as fake:
        ds = await _run(fake, tmp_path / "ds", count=4)
    assert fake.voice_requests == 3  # 5 voices, 2 per page
    assert len(fake.tts_requests) == 4
    for req in fake.tts_requests:
        assert req["model_id"] == "eleven_multilingual_v2"
        assert req["format"] == "pcm_44100"
        assert req["text"].count(". ") == 3  # 4 sentences, stripped of the trailing space
    manifest = ds.manifest  # type: ignore[attr-defined]
    assert manifest.sources == {"speech": "elevenlabs", "noise": "synthetic"}
    assert {f.voice for f in manifest.files} <= {"v1", "v2", "v3", "v4", "v5"}
    assert [f.voice for f in manifest.files] == [r["voice"] for r in _by_text(fake, manifest)]
    info = sf.info(str(tmp_path / "ds" / "clean" / "0000.wav"))
    assert info.samplerate == 16000
    assert abs(info.duration - 1.0) < 0.01


def _by_text(fake: FakeElevenLabs, manifest: object) -> list[dict[str, str]]:
    by_text = {r["text"]: r for r in fake.tts_requests}
    return [by_text[f.text] for f in manifest.files]  # type: ignore[attr-defined]


async def test_429_then_success_is_retried(tmp_path: Path) -> None:
    async with FakeElevenLabs(script=[429, 503, 429]) as fake:
        ds = await _run(fake, tmp_path / "ds", concurrency=1)
    assert len(fake.tts_requests) == 3 + 3
    assert len(ds.manifest.files) == 3  # type: ignore[attr-defined]


async def test_500s_until_give_up_leave_no_dataset(tmp_path: Path) -> None:
    async with FakeElevenLabs(default=500) as fake:
        with pytest.raises(SourceUnavailableError, match="all 4 draws failed") as exc:
            await _run(fake, tmp_path / "ds", count=1, concurrency=1)
    assert not isinstance(exc.value, SpeechAccountError)
    assert exc.value.source == "elevenlabs"
    assert str(exc.value).count("gave up after 4 attempts") == 4
    assert "HTTP 500" in str(exc.value)
    # one clip: 4 attempts with each of 4 voices (the drawn one, then the next in id order)
    voices = [r["voice"] for r in fake.tts_requests]
    assert len(voices) == 16
    order = ["voice-a", "voice-b", "voice-c"]
    first = order.index(voices[0])
    assert voices == [order[(first + k // 4) % 3] for k in range(16)]
    assert _names(tmp_path) == []


async def test_a_short_or_silent_clip_is_redrawn_with_the_next_voice(tmp_path: Path) -> None:
    async with FakeElevenLabs(script=["short", "silent"]) as fake:
        ds = await _run(fake, tmp_path / "ds", count=1, concurrency=1)
    voices = [r["voice"] for r in fake.tts_requests]
    order = ["voice-a", "voice-b", "voice-c"]
    first = order.index(voices[0])
    assert voices == [order[first], order[(first + 1) % 3], order[(first + 2) % 3]]
    (entry,) = ds.manifest.files  # type: ignore[attr-defined]
    assert entry.voice == voices[2]
    assert entry.redraws == (
        f"voice {voices[0]}: clip is 0.20 s, shorter than 0.4 s",
        f"voice {voices[1]}: clip is silent",
    )
    assert {r["text"] for r in fake.tts_requests} == {entry.text}  # same prompt, next voice
    raw = (tmp_path / "ds" / "manifest.json").read_bytes()
    assert b"shorter than 0.4 s" in raw


async def test_quota_stops_the_run_with_a_clear_error(tmp_path: Path) -> None:
    async with FakeElevenLabs(script=["ok", "quota"], default="quota") as fake:
        with pytest.raises(SpeechAccountError, match="quota") as exc:
            await _run(fake, tmp_path / "ds", count=6, concurrency=1)
    assert "check the API key and the quota" in str(exc.value)
    assert len(fake.tts_requests) == 2  # not retried, and no later clip was requested
    assert _names(tmp_path) == []


async def test_bad_key_is_an_account_error(tmp_path: Path) -> None:
    async with FakeElevenLabs(api_key="right") as fake:
        with pytest.raises(SpeechAccountError, match="401"):
            await _run(fake, tmp_path / "ds", api_key="wrong")
    assert fake.voice_requests == 1
    assert _names(tmp_path) == []


async def test_mp3_output_is_decoded_without_ffmpeg(tmp_path: Path) -> None:
    async with FakeElevenLabs() as fake:
        ds = await _run(
            fake,
            tmp_path / "ds",
            output_format="mp3_44100_128",
            competition="DEREVERBERATION_48000HZ",
        )
    assert {r["format"] for r in fake.tts_requests} == {"mp3_44100_128"}
    info = sf.info(str(ds.path / "degraded" / "0002.wav"))  # type: ignore[attr-defined]
    assert info.samplerate == 48000
    assert 0.9 < info.duration < 1.2


async def test_concurrency_is_bounded(tmp_path: Path) -> None:
    async with FakeElevenLabs(latency_s=0.1) as fake:
        await _run(fake, tmp_path / "ds", count=6, concurrency=2)
    assert fake.max_in_flight == 2


async def test_timeouts_are_retried_and_the_clip_deadline_is_total(tmp_path: Path) -> None:
    quick = RetryPolicy(max_attempts=5, backoff_base_s=0.01, request_timeout_s=0.3)
    async with FakeElevenLabs(script=["hang"]) as fake:
        await _run(fake, tmp_path / "a", count=1, retry=quick)
    assert len(fake.tts_requests) == 2
    deadline = RetryPolicy(max_attempts=50, backoff_base_s=0.01, clip_deadline_s=0.5)
    async with FakeElevenLabs(default="hang") as fake:
        with pytest.raises(SourceUnavailableError, match=r"no answer within 0.5 s"):
            await _run(fake, tmp_path / "b", count=1, retry=deadline)
    assert len({r["voice"] for r in fake.tts_requests}) == 3  # every voice was tried
    assert not (tmp_path / "b").exists()


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())
