"""Mastering to audiobook norms, with real speech from the bundled Piper voice."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from engines.errors import BadInput
from engines.mastering import (ACX_NOISE_FLOOR_MAX_DB, ACX_TRUE_PEAK_MAX_DB, LevelReport,
                               MasterConfig, db, master_chapter, measure, true_peak)

SENTENCES = "The old lighthouse stood alone on the cliff. Every night its lamp swept the dark sea."


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    """Two sentences spoken by the bundled Piper voice (tests/speech.py, speaker 0)."""
    from tests.speech import speak

    audio, sr = speak(SENTENCES, 0)
    return audio.astype(np.float32), sr


def _rms_db(x: np.ndarray) -> float:
    return db(float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))))


def _scaled_to(x: np.ndarray, rms_db: float) -> np.ndarray:
    return (x * 10 ** ((rms_db - _rms_db(x)) / 20)).astype(np.float32)


def _inputs(audio: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    loud = np.clip(_scaled_to(audio, -8.0), -1.0, 1.0)            # hot and clipped
    quiet = _scaled_to(audio, -42.0)                               # far too low
    hum = 0.02 * np.sin(2 * np.pi * 50 * np.arange(len(audio)) / sr)
    noisy = _scaled_to(audio, -26.0) + rng.normal(0, 10 ** (-58 / 20), len(audio)) + hum
    padded = np.concatenate([np.zeros(3 * sr), _scaled_to(audio, -30.0), np.zeros(8 * sr)])
    return {"loud": loud, "quiet": quiet, "noisy": noisy.astype(np.float32),
            "long pauses": padded.astype(np.float32)}


@pytest.mark.parametrize("case", ["loud", "quiet", "noisy", "long pauses"])
def test_mastered_speech_meets_every_norm(speech, case):
    audio, sr = speech
    mastered, report = master_chapter(_inputs(audio, sr)[case], sr)
    again = measure(mastered, sr)  # the returned report is the file's own measurement
    assert report.problems == [] and again.to_dict() == report.to_dict()
    assert -23.0 <= report.rms_db <= -18.0 and abs(report.rms_db - -20.0) < 1.0
    assert report.true_peak_db <= ACX_TRUE_PEAK_MAX_DB
    assert report.noise_floor_db < ACX_NOISE_FLOOR_MAX_DB
    assert 0.5 <= report.head_room_tone_s <= 1.0 and 1.0 <= report.tail_room_tone_s <= 5.0
    head = mastered[: int(0.4 * sr)]
    assert -90.0 < _rms_db(head) < -60.0  # a real noise bed, not digital silence
    # the speech is still there: its length is kept (room tone aside)
    assert abs(len(mastered) / sr - report.head_room_tone_s - report.tail_room_tone_s
               - len(audio) / sr) < 0.6


def test_measure_flags_a_clipped_file(speech):
    audio, sr = speech
    clipped = np.clip(audio * 6.0, -1.0, 1.0)
    report = measure(clipped, sr)
    assert not report.ok
    text = " ".join(report.problems)
    assert "true peak" in text and "clipping" in text and "RMS" in text
    assert report.clipped_runs > 10 and report.true_peak_db >= 0.0


def test_measure_flags_digital_silence_and_missing_room_tone(speech):
    audio, sr = speech
    mastered, _ = master_chapter(audio, sr)
    body = mastered[int(0.75 * sr): len(mastered) - int(2.5 * sr)]
    silent_ends = np.concatenate([np.zeros(int(0.7 * sr)), body, np.zeros(2 * sr)])
    problems = measure(silent_ends.astype(np.float32), sr).problems
    assert any("head is digital silence" in p for p in problems)
    assert any("tail is digital silence" in p for p in problems)
    assert any("head room tone" in p for p in measure(body, sr).problems)


def test_true_peak_sees_peaks_between_samples():
    sr = 48000
    n = np.arange(sr)
    # A sine at a quarter of the sample rate, sampled 45 degrees off its crest:
    # every sample sits 3 dB under the waveform's real peak.
    x = (0.5 * np.sin(2 * np.pi * n / 4 + np.pi / 4)).astype(np.float32)
    sample_peak, real_peak = db(float(np.abs(x).max())), db(0.5)
    assert abs(db(float(true_peak(x)[64:-64].max())) - real_peak) < 0.5
    assert sample_peak < real_peak - 2.5


def test_config_and_report_round_trip():
    cfg = MasterConfig(target_rms_db=-19.0, tail_s=3.0)
    assert MasterConfig.from_dict(cfg.to_dict()) == cfg
    report = LevelReport(1.0, -20.0, -4.0, -3.5, -70.0, 0.7, 2.0, 0, [])
    assert LevelReport.from_dict(report.to_dict()) == report


def test_silent_or_stereo_input_is_refused():
    with pytest.raises(BadInput, match="silent"):
        master_chapter(np.zeros(22050, np.float32), 22050)
    with pytest.raises(BadInput, match="mono"):
        master_chapter(np.zeros((100, 2), np.float32), 22050)


def test_norms_survive_mp3_encoding(speech, tmp_path):
    """The limiter leaves headroom for the codec: the published MP3 still passes."""
    import soundfile as sf

    from engines.encode import ChapterAudio, Tags, export_chapter_files, ffmpeg_exe

    audio, sr = speech
    mastered, _ = master_chapter(np.clip(audio * 3.0, -1.0, 1.0), sr)
    sf.write(tmp_path / "m.wav", mastered, sr, subtype="PCM_16")
    [mp3] = export_chapter_files([ChapterAudio("One", tmp_path / "m.wav")], tmp_path, "mp3",
                                 Tags("Book"))
    decoded = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(mp3), "-f", "f32le", "-"],
                             capture_output=True, check=True).stdout
    report = measure(np.frombuffer(decoded, dtype="<f4"), 44100)
    assert report.problems == [], report.problems
