"""Audio I/O and measurement: probe, streaming decode, WAV files, loudness.

Decoding goes through the static ffmpeg binary shipped by ``imageio-ffmpeg``
(there is no ffprobe next to it, so :func:`probe` reads ``ffmpeg -i``'s report).
Decoded audio streams out of an ffmpeg pipe in fixed-size blocks, so a
three-hour file never sits in memory at full rate.
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from engines.errors import (BadInput, CancelFn, ProgressFn, check_cancel,
                            never_cancel, no_progress)

#: File name endings the studio accepts as audio sources (video: audio track only).
SUPPORTED_EXTENSIONS = frozenset({
    ".wav", ".wave", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".m4b",
    ".aac", ".mp4", ".mkv", ".mka", ".webm", ".mov", ".aif", ".aiff", ".wma",
})
#: Seconds of audio decoded per block when streaming.
DEFAULT_BLOCK_SECONDS = 30.0
#: Seconds decoded by :func:`probe` to prove the stream really decodes.
PROBE_DECODE_SECONDS = 1.0
#: Samples at or above this magnitude (full scale = 1.0) count as clipped.
CLIP_LEVEL = 0.999
#: Level reported for digital silence, in dB (instead of -inf).
SILENCE_DB = -120.0
#: BS.1770 gating: 400 ms blocks, 75 % overlap, so a new block every 100 ms.
GATE_BLOCK_S = 0.4
GATE_STEP_S = 0.1
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
#: BS.1770 offset between mean-square power and LUFS.
LUFS_OFFSET = -0.691
#: Seconds ffmpeg may take to report on a file before we give up on it.
PROBE_TIMEOUT_S = 60

FFMPEG: str | None = None

_LAYOUT_NAMES = {1: "mono", 2: "stereo"}
_CHANNEL_LAYOUTS = {"mono": 1, "stereo": 2, "2.1": 3, "3.0": 3, "quad": 4,
                    "4.0": 4, "5.0": 5, "5.1": 6, "6.1": 7, "7.1": 8}


@dataclass
class AudioInfo:
    """What :func:`probe` learns about a file without decoding all of it."""

    duration_s: float
    """Length in seconds (from the container; may be an estimate for some formats)."""
    sample_rate: int
    """Native sample rate of the first audio stream, in Hz."""
    channels: int
    """Channel count of the first audio stream."""
    codec: str
    """ffmpeg's name of the audio codec, e.g. ``pcm_s16le``, ``mp3``, ``aac``."""
    has_audio: bool = True
    """Whether the file holds an audio stream at all."""

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return dataclasses.asdict(self)


@dataclass
class AudioStats:
    """Measurements of a whole file, from :func:`analyse`."""

    duration_s: float
    """Decoded length in seconds (counted samples, not the container's claim)."""
    sample_rate: int
    """Native sample rate in Hz."""
    channels: int
    """Channel count of the source."""
    lufs: float
    """Integrated loudness (ITU-R BS.1770, gated), in LUFS; ``SILENCE_DB`` if silent."""
    peak_dbfs: float
    """Highest sample magnitude, in dB relative to full scale."""
    clipped_fraction: float
    """Fraction of samples at or above ``CLIP_LEVEL`` (0..1)."""
    rms_dbfs: float
    """RMS level over the whole file (all channels), in dBFS."""

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "AudioStats":
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def ffmpeg_exe() -> str:
    """Path of the bundled ffmpeg binary (looked up once)."""
    global FFMPEG
    if FFMPEG is None:
        import imageio_ffmpeg
        FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
    return FFMPEG


def to_db(value: float) -> float:
    """Amplitude (or RMS) to dB, floored at ``SILENCE_DB``."""
    if value <= 0:
        return SILENCE_DB
    return max(SILENCE_DB, 20.0 * float(np.log10(value)))


# --------------------------------------------------------------------- probe

def _check_file(path: str) -> None:
    name = os.path.basename(path)
    if not os.path.exists(path):
        raise BadInput(f"{name}: file not found")
    if os.path.isdir(path):
        raise BadInput(f"{name}: is a folder, not an audio file")
    ext = os.path.splitext(path)[1].lower()
    if ext not in SUPPORTED_EXTENSIONS:
        shown = ext or "no extension"
        raise BadInput(f"{name}: unsupported format ({shown}); use wav, flac, mp3, "
                       "ogg, opus, m4a/aac or a video's audio (mp4, mkv, webm)")
    if os.path.getsize(path) == 0:
        raise BadInput(f"{name}: file is empty (0 bytes)")


def _parse_duration(report: str) -> float | None:
    match = re.search(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)", report)
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _parse_audio_stream(report: str) -> tuple[str, int, int] | None:
    """(codec, sample_rate, channels) of the first audio stream, or None."""
    match = re.search(r"Stream #\d+:\d+.*?: Audio: ([^\n]*)", report)
    if not match:
        return None
    desc = match.group(1)
    codec = desc.split()[0].rstrip(",")
    rate = re.search(r"(\d+) Hz", desc)
    fields = [f.strip() for f in desc.split(",")]
    channels = 0
    for field in fields:
        layout = field.split("(")[0].strip()
        if layout in _CHANNEL_LAYOUTS:
            channels = _CHANNEL_LAYOUTS[layout]
            break
        count = re.match(r"(\d+) channels", field)
        if count:
            channels = int(count.group(1))
            break
    return codec, int(rate.group(1)) if rate else 0, channels or 2


def _ffmpeg_report(path: str) -> str:
    """ffmpeg's description of the input (stderr of ``ffmpeg -i``)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BadInput(f"{os.path.basename(path)}: ffmpeg timed out reading the file") from None
    return done.stderr.decode("utf-8", "replace")


def _decode_error(path: str, stderr: str) -> BadInput:
    """A one-line reason from ffmpeg's complaints about a file."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    detail = lines[-1] if lines else "unknown error"
    detail = re.sub(r"^\[[^\]]*\]\s*", "", detail)
    return BadInput(f"{os.path.basename(path)}: cannot decode audio ({detail[:160]})")


def probe(path: str | os.PathLike, require_audio: bool = True) -> AudioInfo:
    """Describe an audio (or video) file; raise :class:`BadInput` if unusable.

    Decodes the first second as well, so a file whose header parses but whose
    data does not is reported here rather than halfway through a build.
    """
    path = os.fspath(path)
    _check_file(path)
    report = _ffmpeg_report(path)
    name = os.path.basename(path)
    if "Input #0" not in report:
        raise BadInput(f"{name}: not a readable audio or video file (corrupt or unknown format)")
    stream = _parse_audio_stream(report)
    duration = _parse_duration(report)
    if stream is None:
        if require_audio:
            raise BadInput(f"{name}: contains no audio stream")
        return AudioInfo(duration or 0.0, 0, 0, "", has_audio=False)
    codec, rate, channels = stream
    head = _decode_head(path)
    if head.size == 0:
        raise BadInput(f"{name}: audio stream holds no decodable samples")
    if duration is None:
        duration = _count_duration(path)
    return AudioInfo(float(duration), rate, channels, codec, True)


def _decode_head(path: str) -> np.ndarray:
    cmd = _decode_cmd(path, None, channels=1, seconds=PROBE_DECODE_SECONDS)
    done = subprocess.run(cmd, capture_output=True, timeout=PROBE_TIMEOUT_S)
    if done.returncode != 0:
        raise _decode_error(path, done.stderr.decode("utf-8", "replace"))
    return np.frombuffer(done.stdout, dtype=np.float32)


def _count_duration(path: str) -> float:
    """Duration by decoding everything (for streams whose container has none)."""
    info_rate = 16000
    total = sum(len(block) for block in iter_blocks(path, info_rate))
    return total / info_rate


# -------------------------------------------------------------------- decode

def _decode_cmd(path: str, sample_rate: int | None, channels: int | None,
                seconds: float | None = None) -> list[str]:
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", path,
           "-map", "0:a:0", "-vn", "-sn", "-dn"]
    if seconds is not None:
        cmd += ["-t", f"{seconds:.3f}"]
    # soxr: better anti-aliasing than swresample's default. rematrix_maxval=1
    # makes a downmix average the channels instead of summing them at -3 dB.
    options = ["resampler=soxr", "rematrix_maxval=1"]
    if sample_rate is not None:
        options.insert(0, f"osr={int(sample_rate)}")
    if channels is not None:
        options.append(f"ochl={_LAYOUT_NAMES[channels]}")
    cmd += ["-af", "aresample=" + ":".join(options)]
    return cmd + ["-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]


def _read_exact(stream, nbytes: int) -> bytes:
    chunks, got = [], 0
    while got < nbytes:
        chunk = stream.read(nbytes - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _iter_raw(path: str, sample_rate: int | None, channels: int | None,
              frames_per_block: int, width: int) -> Iterator[np.ndarray]:
    """Blocks of float32 frames (``[n, width]``) from an ffmpeg pipe."""
    cmd = _decode_cmd(path, sample_rate, channels)
    # stderr to a file: a pipe could fill up and stall ffmpeg on noisy inputs.
    with tempfile.TemporaryFile() as errfile:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfile,
                                stdin=subprocess.DEVNULL)
        try:
            nbytes = frames_per_block * width * 4
            while True:
                data = _read_exact(proc.stdout, nbytes)
                usable = len(data) - len(data) % (width * 4)
                if usable:
                    yield np.frombuffer(data[:usable], np.float32).reshape(-1, width)
                if len(data) < nbytes:
                    break
            if proc.wait() != 0:
                errfile.seek(0)
                raise _decode_error(path, errfile.read().decode("utf-8", "replace"))
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait()


def iter_blocks(path: str | os.PathLike, sample_rate: int,
                block_seconds: float = DEFAULT_BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Decode a file as mono float32 at ``sample_rate``, ``block_seconds`` at a time.

    Memory stays at one block whatever the file's length. The last block is
    shorter. Raises :class:`BadInput` if ffmpeg fails partway.
    """
    path = os.fspath(path)
    _check_file(path)
    frames = max(1, int(round(block_seconds * sample_rate)))
    for block in _iter_raw(path, int(sample_rate), 1, frames, 1):
        yield block[:, 0].copy()


def load(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Whole file as mono float32 at ``sample_rate`` (for clips, not long sources)."""
    blocks = list(iter_blocks(path, sample_rate))
    if not blocks:
        return np.zeros(0, np.float32)
    return np.concatenate(blocks)


def resample(audio: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Mono float32 ``audio`` from ``sr_from`` to ``sr_to`` Hz (soxr, high quality)."""
    audio = np.asarray(audio, dtype=np.float32)
    if sr_from == sr_to or audio.size == 0:
        return audio.copy()
    return soxr.resample(audio, sr_from, sr_to, quality="HQ").astype(np.float32)


# ---------------------------------------------------------------- WAV files

def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
    """Write mono float audio as 16-bit PCM WAV, atomically (temp file + rename).

    Samples beyond full scale are clipped rather than wrapped.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    data = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".wav")
    os.close(fd)
    try:
        sf.write(tmp, data, int(sample_rate), subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a WAV (or FLAC) file as mono float32; returns ``(audio, sample_rate)``."""
    path = os.fspath(path)
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise BadInput(f"{os.path.basename(path)}: cannot read WAV ({err})") from None
    return data.mean(axis=1).astype(np.float32), int(rate)


# ------------------------------------------------------------------ loudness

def _k_weighting(sample_rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """BS.1770 K-weighting as two biquads (shelf, then high-pass) for any rate.

    Analogue prototype values from libebur128, so at 48 kHz the coefficients
    equal the ones printed in the standard.
    """
    shelf_f0, shelf_gain_db, shelf_q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    hp_f0, hp_q = 38.13547087602444, 0.5003270373238773
    k = np.tan(np.pi * shelf_f0 / sample_rate)
    vh = 10.0 ** (shelf_gain_db / 20.0)
    vb = vh ** 0.4996667741545416
    a0 = 1.0 + k / shelf_q + k * k
    shelf_b = np.array([(vh + vb * k / shelf_q + k * k) / a0,
                        2.0 * (k * k - vh) / a0,
                        (vh - vb * k / shelf_q + k * k) / a0])
    shelf_a = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / shelf_q + k * k) / a0])
    k = np.tan(np.pi * hp_f0 / sample_rate)
    denom = 1.0 + k / hp_q + k * k
    hp_b = np.array([1.0, -2.0, 1.0])
    hp_a = np.array([1.0, 2.0 * (k * k - 1.0) / denom, (1.0 - k / hp_q + k * k) / denom])
    return [(shelf_b, shelf_a), (hp_b, hp_a)]


class LoudnessMeter:
    """Streaming integrated loudness (BS.1770-4 with absolute and relative gates).

    Feed blocks of any length with :meth:`add`; filter state and the partial
    100 ms step carry across calls, so the result does not depend on how the
    audio was split. Keeps one float per 100 ms, about 1 MB for 3 hours.
    """

    def __init__(self, sample_rate: int, channels: int = 1):
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self._filters = _k_weighting(self.sample_rate)
        self._state = [np.zeros((max(len(a), len(b)) - 1, self.channels))
                       for b, a in self._filters]
        self._step = int(round(GATE_STEP_S * self.sample_rate))
        self._pending = np.zeros((0, self.channels))
        self._step_power: list[float] = []

    def add(self, frames: np.ndarray) -> None:
        """Add float frames, shape ``[n]`` (mono) or ``[n, channels]``."""
        from scipy import signal  # heavy import: only when loudness is measured

        frames = np.asarray(frames, dtype=np.float64).reshape(len(frames), -1)
        weighted = frames
        for i, (b, a) in enumerate(self._filters):
            weighted, self._state[i] = signal.lfilter(b, a, weighted, axis=0, zi=self._state[i])
        joined = np.concatenate([self._pending, weighted])
        whole = len(joined) // self._step * self._step
        if whole:
            steps = joined[:whole].reshape(-1, self._step, self.channels)
            # Sum of channel mean squares (all channel weights are 1 up to stereo).
            self._step_power.extend((steps ** 2).mean(axis=1).sum(axis=1).tolist())
        self._pending = joined[whole:]

    def integrated(self) -> float:
        """Gated integrated loudness in LUFS; ``SILENCE_DB`` if nothing passes the gates."""
        per_block = int(round(GATE_BLOCK_S / GATE_STEP_S))
        steps = np.asarray(self._step_power)
        if len(steps) < per_block:
            return SILENCE_DB
        kernel = np.ones(per_block) / per_block
        blocks = np.convolve(steps, kernel, mode="valid")
        with np.errstate(divide="ignore"):
            loud = LUFS_OFFSET + 10.0 * np.log10(blocks)
        above = blocks[loud > ABSOLUTE_GATE_LUFS]
        if above.size == 0:
            return SILENCE_DB
        relative = LUFS_OFFSET + 10.0 * np.log10(above.mean()) + RELATIVE_GATE_LU
        kept = blocks[loud > max(relative, ABSOLUTE_GATE_LUFS)]
        if kept.size == 0:
            return SILENCE_DB
        return float(LUFS_OFFSET + 10.0 * np.log10(kept.mean()))


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness of an in-memory signal (``[n]`` or ``[n, channels]``), in LUFS."""
    audio = np.asarray(audio)
    meter = LoudnessMeter(sample_rate, 1 if audio.ndim == 1 else audio.shape[1])
    meter.add(audio)
    return meter.integrated()


def analyse(path: str | os.PathLike, progress: ProgressFn = no_progress,
            should_cancel: CancelFn = never_cancel,
            block_seconds: float = DEFAULT_BLOCK_SECONDS) -> AudioStats:
    """Measure a whole file in one streaming pass at its native rate.

    Loudness is metered on up to two channels as the source has them (more
    channels are downmixed to stereo by ffmpeg). Reports progress per block
    and raises ``Cancelled`` between blocks when asked to stop.
    """
    path = os.fspath(path)
    info = probe(path)
    width = min(info.channels, 2) or 1
    rate = info.sample_rate or 48000
    meter = LoudnessMeter(rate, width)
    frames = max(1, int(round(block_seconds * rate)))
    total = peak = clipped = 0
    power = 0.0
    name = os.path.basename(path)
    for block in _iter_raw(path, rate, width, frames, width):
        check_cancel(should_cancel)
        meter.add(block)
        total += len(block)
        magnitude = np.abs(block)
        peak = max(peak, float(magnitude.max()))
        clipped += int((magnitude >= CLIP_LEVEL).sum())
        power += float(np.square(block, dtype=np.float64).sum())
        done_s = total / rate
        progress(min(1.0, done_s / info.duration_s) if info.duration_s else 0.0,
                 f"{name}: measured {done_s:.0f} of {info.duration_s:.0f} s")
    if total == 0:
        raise BadInput(f"{name}: audio stream holds no decodable samples")
    progress(1.0, f"{name}: measured")
    rms = np.sqrt(power / (total * width))
    return AudioStats(duration_s=total / rate, sample_rate=rate, channels=info.channels,
                      lufs=meter.integrated(), peak_dbfs=to_db(peak),
                      clipped_fraction=clipped / (total * width), rms_dbfs=to_db(rms))
