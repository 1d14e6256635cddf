"""Audio I/O and measurement: probe, streaming decode, WAV, loudness."""
from __future__ import annotations

import subprocess

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from engines import audio
from engines.errors import BadInput, Cancelled

RATE = 44100


def _tone(seconds: float, rate: int = RATE, freq: float = 440.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _speechlike(seconds: float, rate: int = RATE) -> np.ndarray:
    """Modulated tone plus noise with a quiet stretch, so gating matters."""
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 0.7 * t)) / 2
    x = x + 0.05 * rng.standard_normal(len(t))
    x[int(rate * 1.0):int(rate * 2.5)] *= 0.01
    return x.astype(np.float32)


def _ffmpeg(*args: str) -> None:
    subprocess.run([audio.ffmpeg_exe(), "-hide_banner", "-v", "error", "-y", *args],
                   check=True)


@pytest.fixture(scope="module")
def wav_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    audio.write_wav(path, _tone(3.0), RATE)
    return path


def test_write_read_roundtrip_is_16bit_and_atomic(tmp_path):
    x = _tone(1.0)
    out = tmp_path / "sub" / "x.wav"
    audio.write_wav(out, x * 4, RATE)  # over full scale: must clip, not wrap
    assert sf.info(str(out)).subtype == "PCM_16"
    y, sr = audio.read_wav(out)
    assert sr == RATE and y.dtype == np.float32 and len(y) == len(x)
    assert y.max() <= 1.0 and y.min() >= -1.0
    assert np.mean(np.abs(y) > 0.99) > 0.3  # a 1.2-amplitude sine clipped: 38 % at the rails
    assert [p.name for p in out.parent.iterdir()] == ["x.wav"]  # no temp left behind


def test_read_wav_downmixes_stereo(tmp_path):
    path = tmp_path / "st.wav"
    sf.write(str(path), np.stack([_tone(0.5), np.zeros(RATE // 2, np.float32)], 1), RATE)
    y, _ = audio.read_wav(path)
    assert y.ndim == 1 and abs(np.abs(y).max() - 0.15) < 0.01


def test_probe_wav(wav_path):
    info = audio.probe(wav_path)
    assert info.sample_rate == RATE and info.channels == 1
    assert info.codec == "pcm_s16le" and abs(info.duration_s - 3.0) < 0.01


@pytest.mark.parametrize("ext,args", [
    (".mp3", ["-ac", "2", "-c:a", "libmp3lame"]),
    (".ogg", ["-c:a", "libvorbis"]),
    (".opus", ["-c:a", "libopus"]),
    (".m4a", ["-c:a", "aac"]),
    (".flac", []),
])
def test_compressed_formats_decode(tmp_path, wav_path, ext, args):
    out = tmp_path / f"clip{ext}"
    _ffmpeg("-i", str(wav_path), *args, str(out))
    info = audio.probe(out)
    assert abs(info.duration_s - 3.0) < 0.1
    x = audio.load(out, 16000)
    assert abs(len(x) / 16000 - 3.0) < 0.1
    # The 440 Hz tone survives the codec: dominant FFT bin.
    spectrum = np.abs(np.fft.rfft(x[4000:20000]))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 440) < 5


def test_video_audio_track_and_video_without_audio(tmp_path, wav_path):
    with_audio = tmp_path / "movie.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=d=3:s=64x64", "-i", str(wav_path),
            "-shortest", "-c:a", "aac", str(with_audio))
    assert audio.probe(with_audio).codec == "aac"
    assert abs(len(audio.load(with_audio, 8000)) / 8000 - 3.0) < 0.15
    silent_film = tmp_path / "film.webm"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=d=1:s=64x64", "-c:v", "libvpx", str(silent_film))
    with pytest.raises(BadInput, match="no audio stream"):
        audio.probe(silent_film)


@pytest.mark.parametrize("name,content,reason", [
    ("empty.wav", b"", "empty"),
    ("garbage.wav", b"this is not audio at all" * 40, "not a readable"),
    ("random.mp3", bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8)),
     "mp3"),
    ("notes.txt", b"hello", "unsupported format"),
])
def test_bad_inputs_have_one_line_reasons(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadInput) as err:
        audio.probe(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(name)
    if reason != "mp3":
        assert reason in message
    with pytest.raises(BadInput):
        list(audio.iter_blocks(path, 16000))


def test_missing_file(tmp_path):
    with pytest.raises(BadInput, match="not found"):
        audio.probe(tmp_path / "nope.wav")


def test_non_ascii_file_name(tmp_path):
    path = tmp_path / "Ève — 録音 ñ.wav"
    audio.write_wav(path, _tone(1.0), RATE)
    assert audio.probe(path).duration_s == pytest.approx(1.0, abs=0.01)
    assert len(audio.load(path, 16000)) == 16000


def test_iter_blocks_streams_in_fixed_blocks(wav_path):
    blocks = list(audio.iter_blocks(wav_path, 16000, block_seconds=0.5))
    assert [len(b) for b in blocks[:-1]] == [8000] * (len(blocks) - 1)
    assert sum(len(b) for b in blocks) == 48000
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)


def test_iter_blocks_downmixes_and_resamples(tmp_path):
    path = tmp_path / "st48.wav"
    sf.write(str(path), np.stack([_tone(1.0, 48000), _tone(1.0, 48000)], 1), 48000)
    x = audio.load(path, 16000)
    assert len(x) == 16000 and abs(np.abs(x).max() - 0.3) < 0.02


def test_resample_keeps_tone():
    y = audio.resample(_tone(1.0, 48000, 1000.0), 48000, 16000)
    assert len(y) == 16000 and y.dtype == np.float32
    assert np.argmax(np.abs(np.fft.rfft(y))) == 1000


@pytest.mark.parametrize("channels", [1, 2])
def test_streaming_lufs_matches_pyloudnorm(tmp_path, channels):
    x = _speechlike(8.0)
    data = x if channels == 1 else np.stack([x, 0.5 * x], 1)
    path = tmp_path / f"s{channels}.wav"
    sf.write(str(path), data, RATE, subtype="PCM_16")
    reference = pyloudnorm.Meter(RATE).integrated_loudness(sf.read(str(path))[0])
    stats = audio.analyse(path, block_seconds=0.37)  # odd block size: state must carry
    assert abs(stats.lufs - reference) < 0.3
    assert stats.channels == channels and stats.duration_s == pytest.approx(8.0, abs=1e-3)


def test_lufs_independent_of_block_split():
    x = _speechlike(5.0)
    whole = audio.integrated_loudness(x, RATE)
    meter = audio.LoudnessMeter(RATE)
    for start in range(0, len(x), 12345):
        meter.add(x[start:start + 12345])
    assert meter.integrated() == pytest.approx(whole, abs=1e-6)
    # Louder by 6 dB reads 6 LU louder.
    assert audio.integrated_loudness(2 * x, RATE) == pytest.approx(whole + 6.02, abs=0.05)


def test_analyse_peak_clipping_rms(tmp_path):
    x = _tone(2.0, amp=0.5)
    x[:RATE // 10] = 1.0  # 5 % of the file hard at full scale
    path = tmp_path / "clip.wav"
    audio.write_wav(path, x, RATE)
    reports = []
    stats = audio.analyse(path, progress=lambda f, m: reports.append(f), block_seconds=0.5)
    assert stats.peak_dbfs > -0.1
    assert 0.04 < stats.clipped_fraction < 0.06
    assert -10 < stats.rms_dbfs < -7
    assert reports[-1] == 1.0 and len(reports) >= 4
    assert audio.AudioStats.from_dict(stats.to_dict()) == stats


def test_silent_file_is_quiet_not_an_error(tmp_path):
    path = tmp_path / "silence.wav"
    audio.write_wav(path, np.zeros(RATE, np.float32), RATE)
    stats = audio.analyse(path)
    assert stats.lufs == audio.SILENCE_DB and stats.peak_dbfs == audio.SILENCE_DB


def test_analyse_cancels(wav_path):
    calls = []
    with pytest.raises(Cancelled):
        audio.analyse(wav_path, should_cancel=lambda: bool(calls.append(1)) or len(calls) > 2,
                      block_seconds=0.5)
    assert len(calls) == 3
