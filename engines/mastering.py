"""Mastering narration to audiobook norms (ACX) and measuring how a file meets them.

The norms: RMS between -23 and -18 dBFS, true peak at most -3 dBTP, noise floor
below -60 dBFS, 0.5-1 s of room tone at the head and 1-5 s at the tail, and
room tone that is a real low noise bed rather than digital silence.

:func:`master_chapter` gets there in a fixed chain: high-pass, a gentle
downward expander in the pauses, trim to the speech, gain and a look-ahead
true-peak limiter (iterated so the RMS lands on target after limiting), then a
shaped noise bed under the whole chapter with room tone at both ends.
:func:`measure` reports the figures and names every norm a file misses.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np
from scipy import ndimage, signal

from engines.errors import BadInput

# --- the norms (ACX audio submission requirements) ---
ACX_RMS_MIN_DB = -23.0
ACX_RMS_MAX_DB = -18.0
ACX_TRUE_PEAK_MAX_DB = -3.0
ACX_NOISE_FLOOR_MAX_DB = -60.0
ACX_HEAD_MIN_S, ACX_HEAD_MAX_S = 0.5, 1.0
ACX_TAIL_MIN_S, ACX_TAIL_MAX_S = 1.0, 5.0

# --- measurement ---
#: Oversampling factor for true-peak measurement (ITU-R BS.1770 uses 4x).
TRUE_PEAK_OVERSAMPLE = 4
#: Noise floor: RMS of the quietest window of this length (s), sliding by NOISE_HOP_S.
NOISE_WINDOW_S = 0.5
NOISE_HOP_S = 0.05
#: Frame length (s) for finding where speech starts and ends.
FRAME_S = 0.01
#: Speech starts where a frame rises this far (dB) above the noise floor ...
ONSET_ABOVE_FLOOR_DB = 20.0
#: ... and no lower than this far (dB) under the file's RMS.
ONSET_BELOW_RMS_DB = 25.0
#: ... but never closer than this (dB) to the RMS.
ONSET_MAX_BELOW_RMS_DB = 10.0
#: Below this level (dBFS) a stretch counts as digital silence.
DIGITAL_SILENCE_DB = -100.0
#: Room tone must not hold a window this long (s) of digital silence.
SILENCE_WINDOW_S = 0.1
#: Level reported for a stretch of exact zeros (log of 0 is -inf; JSON has no inf).
FLOOR_DB = -150.0
#: A sample this close to full scale counts towards clipping ...
CLIP_LEVEL = 0.999
#: ... when at least this many such samples follow each other.
CLIP_RUN = 3
#: Length of the oversampling filter (taps) and its passband as a fraction of Nyquist.
TRUE_PEAK_TAPS = 48
TRUE_PEAK_PASSBAND = 0.9

# --- processing ---
#: Limiter: gain reduction holds this long (s) and is smoothed over LIMITER_SMOOTH_S.
LIMITER_HOLD_S = 0.05
LIMITER_SMOOTH_S = 0.01
#: Gain/limit passes; each corrects the RMS lost to limiting in the previous one.
GAIN_PASSES = 5
#: The passes stop once the RMS is this close (dB) to target.
RMS_TOLERANCE_DB = 0.1
#: Expander: frames quieter than the speech level by this much (dB) are pauses ...
EXPANDER_RANGE_DB = 45.0
#: ... or than the noise estimate plus this margin (dB), whichever is higher.
EXPANDER_NOISE_MARGIN_DB = 6.0
#: Expander opens fully this many dB above its threshold.
EXPANDER_KNEE_DB = 6.0
#: Expander stays open this long (s) around speech so word edges keep their tails.
EXPANDER_HOLD_S = 0.15
#: Speech kept around the detected start and end when trimming (s).
TRIM_MARGIN_HEAD_S = 0.02
TRIM_MARGIN_TAIL_S = 0.12
# Paul Kellet's economy pink-noise filter (-3 dB/octave), for the room-tone bed.
_PINK_B = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
_PINK_A = [1.0, -2.494956002, 2.017265875, -0.522189400]


def db(value: float) -> float:
    """Amplitude ratio -> dB, with exact zero reported as FLOOR_DB."""
    return 20.0 * math.log10(value) if value > 10 ** (FLOOR_DB / 20) else FLOOR_DB


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


@dataclass
class MasterConfig:
    """How a chapter is mastered."""

    highpass_hz: float = 80.0
    """High-pass corner (Hz): removes rumble and DC that eat headroom."""
    target_rms_db: float = -20.0
    """RMS level (dBFS) of the finished file; ACX allows -23..-18."""
    true_peak_ceiling_db: float = -3.5
    """Limiter ceiling (dBTP); below ACX's -3 to leave room for MP3/AAC overshoot."""
    room_tone_db: float = -70.0
    """RMS level (dBFS) of the noise bed used as room tone."""
    head_s: float = 0.75
    """Room tone before the first word (s); ACX: 0.5-1."""
    tail_s: float = 2.5
    """Room tone after the last word (s); ACX: 1-5."""
    expander: bool = True
    """Push noise in pauses down (downward expander) before adding the bed."""
    expander_depth_db: float = 30.0
    """How far the expander lowers pauses (dB)."""
    seed: int = 0
    """Seed of the room-tone noise, so a chapter masters the same way twice."""

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MasterConfig":
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class LevelReport:
    """Measured levels of one chapter file and the norms it misses."""

    duration_s: float
    """Length of the audio (s)."""
    rms_db: float
    """RMS of the whole file (dBFS)."""
    peak_db: float
    """Highest sample (dBFS)."""
    true_peak_db: float
    """Highest 4x-oversampled peak (dBTP)."""
    noise_floor_db: float
    """RMS of the quietest 0.5 s (dBFS)."""
    head_room_tone_s: float
    """Room tone before speech starts (s)."""
    tail_room_tone_s: float
    """Room tone after speech ends (s)."""
    clipped_runs: int = 0
    """Runs of consecutive full-scale samples (clipping)."""
    problems: list[str] = field(default_factory=list)
    """One line per norm the file misses; empty when it meets them all."""

    @property
    def ok(self) -> bool:
        """True when the file meets every norm."""
        return not self.problems

    def to_dict(self) -> dict:
        """JSON-ready dict (figures rounded to what a person reads)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round(value, 2)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "LevelReport":
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# --------------------------------------------------------------------------- measuring


def _oversampling_phases() -> list[np.ndarray]:
    """Polyphase branches of a 48-tap low-pass for 4x oversampling (as in BS.1770)."""
    taps = signal.firwin(TRUE_PEAK_TAPS, TRUE_PEAK_PASSBAND / TRUE_PEAK_OVERSAMPLE,
                         window=("kaiser", 8.0)) * TRUE_PEAK_OVERSAMPLE
    return [taps[k::TRUE_PEAK_OVERSAMPLE].astype(np.float32) for k in range(TRUE_PEAK_OVERSAMPLE)]


_PHASES = _oversampling_phases()


def true_peak(x: np.ndarray) -> np.ndarray:
    """Per-sample envelope of |x| after 4x oversampling (catches inter-sample peaks).

    Each polyphase branch is one short convolution, so this costs a few passes
    over the signal and no 4x-long array.
    """
    x = np.asarray(x, dtype=np.float32)
    delay = (len(_PHASES[0]) - 1) // 2
    out = np.abs(x)
    for phase in _PHASES:
        branch = np.convolve(x, phase, mode="full")[delay: delay + len(x)]
        np.maximum(out, np.abs(branch), out=out)
    return out


def frame_levels_db(x: np.ndarray, sr: int, frame_s: float = FRAME_S) -> np.ndarray:
    """RMS in dBFS of consecutive frames of ``frame_s`` seconds."""
    n = max(1, int(round(frame_s * sr)))
    frames = len(x) // n
    if frames == 0:
        return np.array([db(_rms(x))])
    power = np.mean(np.square(x[: frames * n].reshape(frames, n), dtype=np.float64), axis=1)
    return 10.0 * np.log10(np.maximum(power, 10 ** (FLOOR_DB / 10)))


def noise_floor_db(x: np.ndarray, sr: int) -> float:
    """RMS (dBFS) of the quietest NOISE_WINDOW_S window."""
    win, hop = int(NOISE_WINDOW_S * sr), max(1, int(NOISE_HOP_S * sr))
    if len(x) <= win:
        return db(_rms(x))
    csum = np.concatenate([[0.0], np.cumsum(np.square(x, dtype=np.float64))])
    starts = np.arange(0, len(x) - win + 1, hop)
    power = (csum[starts + win] - csum[starts]) / win
    return db(math.sqrt(max(float(power.min()), 0.0)))


def count_clipped_runs(x: np.ndarray) -> int:
    """Number of runs of at least CLIP_RUN consecutive samples at full scale."""
    hot = np.abs(x) >= CLIP_LEVEL
    if not hot.any():
        return 0
    edges = np.diff(np.concatenate([[0], hot.astype(np.int8), [0]]))
    lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    return int(np.sum(lengths >= CLIP_RUN))


def speech_bounds(x: np.ndarray, sr: int) -> tuple[float, float] | None:
    """(start, end) in seconds of the speech in ``x``; None if nothing rises above the floor."""
    levels = frame_levels_db(x, sr)
    rms = db(_rms(x))
    threshold = max(noise_floor_db(x, sr) + ONSET_ABOVE_FLOOR_DB, rms - ONSET_BELOW_RMS_DB)
    # Speech without a half-second pause has a "floor" inside the words: cap the threshold.
    threshold = min(threshold, rms - ONSET_MAX_BELOW_RMS_DB)
    loud = np.flatnonzero(levels > threshold)
    if loud.size == 0:
        return None
    return loud[0] * FRAME_S, min((loud[-1] + 1) * FRAME_S, len(x) / sr)


def _room_tone_problems(x: np.ndarray, sr: int, head: float, tail: float) -> list[str]:
    problems = []
    for name, seconds, part in (("head", head, x[: int(head * sr)]),
                                ("tail", tail, x[len(x) - int(tail * sr):])):
        if part.size and frame_levels_db(part, sr, SILENCE_WINDOW_S).min() < DIGITAL_SILENCE_DB:
            problems.append(f"room tone at the {name} is digital silence, not a noise bed")
    return problems


def _problems(r: LevelReport, x: np.ndarray, sr: int) -> list[str]:
    problems = []
    if not ACX_RMS_MIN_DB <= r.rms_db <= ACX_RMS_MAX_DB:
        problems.append(f"RMS {r.rms_db:.1f} dB is outside "
                        f"{ACX_RMS_MIN_DB:g} to {ACX_RMS_MAX_DB:g} dB")
    if r.true_peak_db > ACX_TRUE_PEAK_MAX_DB:
        problems.append(f"true peak {r.true_peak_db:.1f} dBTP is above "
                        f"{ACX_TRUE_PEAK_MAX_DB:g} dBTP")
    if r.clipped_runs:
        problems.append(f"clipping: {r.clipped_runs} runs of full-scale samples")
    if r.noise_floor_db > ACX_NOISE_FLOOR_MAX_DB:
        problems.append(f"noise floor {r.noise_floor_db:.1f} dB is above "
                        f"{ACX_NOISE_FLOOR_MAX_DB:g} dB")
    if not ACX_HEAD_MIN_S <= r.head_room_tone_s <= ACX_HEAD_MAX_S:
        problems.append(f"head room tone {r.head_room_tone_s:.2f} s is outside "
                        f"{ACX_HEAD_MIN_S:g}-{ACX_HEAD_MAX_S:g} s")
    if not ACX_TAIL_MIN_S <= r.tail_room_tone_s <= ACX_TAIL_MAX_S:
        problems.append(f"tail room tone {r.tail_room_tone_s:.2f} s is outside "
                        f"{ACX_TAIL_MIN_S:g}-{ACX_TAIL_MAX_S:g} s")
    return problems + _room_tone_problems(x, sr, r.head_room_tone_s, r.tail_room_tone_s)


def measure(audio: np.ndarray, sr: int) -> LevelReport:
    """Measure a chapter against the audiobook norms."""
    x = _check_audio(audio, sr)
    duration = len(x) / sr
    bounds = speech_bounds(x, sr)
    head, tail = (bounds[0], duration - bounds[1]) if bounds else (duration, duration)
    report = LevelReport(
        duration_s=duration, rms_db=db(_rms(x)), peak_db=db(float(np.max(np.abs(x)))),
        true_peak_db=db(float(true_peak(x).max())), noise_floor_db=noise_floor_db(x, sr),
        head_room_tone_s=float(head), tail_room_tone_s=float(tail),
        clipped_runs=count_clipped_runs(x))
    report.problems = _problems(report, x, sr)
    if bounds is None:
        report.problems.append("no speech found")
    return report


# --------------------------------------------------------------------------- processing


def _check_audio(audio: np.ndarray, sr: int) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise BadInput("Mastering needs mono audio (one channel).")
    if x.size == 0 or sr <= 0:
        raise BadInput("The chapter audio is empty.")
    if not np.all(np.isfinite(x)):
        raise BadInput("The chapter audio contains invalid samples (NaN or infinity).")
    return x


def highpass(x: np.ndarray, sr: int, cutoff_hz: float) -> np.ndarray:
    """4th-order Butterworth high-pass."""
    if cutoff_hz <= 0:
        return x
    sos = signal.butter(4, cutoff_hz, btype="highpass", fs=sr, output="sos")
    return signal.sosfilt(sos, x).astype(np.float32)


def expand_pauses(x: np.ndarray, sr: int, depth_db: float) -> np.ndarray:
    """Downward expander: frames well below the speech level are lowered by ``depth_db``."""
    levels = frame_levels_db(x, sr)
    speech, noise = np.percentile(levels, 95), np.percentile(levels, 10)
    threshold = max(speech - EXPANDER_RANGE_DB, noise + EXPANDER_NOISE_MARGIN_DB)
    threshold = min(threshold, speech - 2 * EXPANDER_KNEE_DB)
    openness = np.clip((levels - threshold) / EXPANDER_KNEE_DB, 0.0, 1.0)
    openness = ndimage.maximum_filter1d(openness, size=max(1, int(EXPANDER_HOLD_S / FRAME_S)))
    gain_db = -depth_db * (1.0 - openness)
    n = int(round(FRAME_S * sr))
    gain = np.repeat(10 ** (gain_db / 20), n)
    gain = np.concatenate([gain, np.full(len(x) - len(gain), gain[-1])])[: len(x)]
    gain = ndimage.uniform_filter1d(gain, size=n * 2)
    return (x * gain).astype(np.float32)


def limit_true_peak(x: np.ndarray, sr: int, ceiling_db: float,
                    peaks: np.ndarray | None = None) -> np.ndarray:
    """Look-ahead limiter keeping the 4x-oversampled peak under ``ceiling_db``.

    ``peaks`` is ``true_peak(x)`` when the caller has it. The needed gain is
    min-filtered over LIMITER_HOLD_S, then averaged over the shorter
    LIMITER_SMOOTH_S: every average is of minima whose windows cover the
    sample, so the smooth gain never exceeds what the sample needs.
    """
    ceiling = 10 ** (ceiling_db / 20)
    peaks = true_peak(x) if peaks is None else peaks
    need = np.minimum(np.float32(1.0), np.float32(ceiling) / np.maximum(peaks, np.float32(1e-12)))
    if need.min() >= 1.0:
        return x
    hold = max(3, int(LIMITER_HOLD_S * sr)) | 1
    smooth = max(3, int(LIMITER_SMOOTH_S * sr)) | 1
    gain = ndimage.minimum_filter1d(need, size=hold, mode="nearest")
    gain = ndimage.uniform_filter1d(gain, size=smooth, mode="nearest")
    return (x * gain).astype(np.float32)


def room_tone(n: int, sr: int, level_db: float, highpass_hz: float, seed: int) -> np.ndarray:
    """``n`` samples of pink noise at ``level_db`` RMS, high-passed like the speech."""
    rng = np.random.default_rng(seed)
    noise = signal.lfilter(_PINK_B, _PINK_A, rng.standard_normal(n + sr // 10))[sr // 10:]
    noise = highpass(noise.astype(np.float32), sr, highpass_hz)
    return (noise * (10 ** (level_db / 20) / max(_rms(noise), 1e-12))).astype(np.float32)


def trim_to_speech(x: np.ndarray, sr: int) -> np.ndarray:
    """Cut leading and trailing pauses, keeping a short margin around the speech."""
    bounds = speech_bounds(x, sr)
    if bounds is None:
        raise BadInput("The chapter audio has no speech in it (it is silence or noise).")
    start = max(0, int((bounds[0] - TRIM_MARGIN_HEAD_S) * sr))
    stop = min(len(x), int((bounds[1] + TRIM_MARGIN_TAIL_S) * sr))
    return x[start:stop]


def _level_body(body: np.ndarray, sr: int, cfg: MasterConfig, total_len: int) -> np.ndarray:
    """Gain and limit the speech so the finished file (with room tone) hits the RMS target."""
    target_body_db = cfg.target_rms_db + 10 * math.log10(total_len / len(body))
    peaks = true_peak(body)  # linear: the peaks of g*body are g*peaks
    gain_db = target_body_db - db(_rms(body))
    out = body
    for _ in range(GAIN_PASSES):
        gain = np.float32(10 ** (gain_db / 20))
        out = limit_true_peak(body * gain, sr, cfg.true_peak_ceiling_db, peaks * gain)
        error = target_body_db - db(_rms(out))
        if abs(error) < RMS_TOLERANCE_DB:
            break
        gain_db += error
    return out


def master_chapter(audio: np.ndarray, sr: int,
                   cfg: MasterConfig | None = None) -> tuple[np.ndarray, LevelReport]:
    """Master one chapter's narration to audiobook norms.

    Returns the mastered float32 audio (same sample rate) and its measured
    :class:`LevelReport`; ``report.problems`` lists any norm still missed.
    """
    cfg = cfg or MasterConfig()
    x = _check_audio(audio, sr)
    if float(np.max(np.abs(x))) < 1e-6:
        raise BadInput("The chapter audio is silent.")
    x = highpass(x - np.float32(np.mean(x)), sr, cfg.highpass_hz)
    if cfg.expander:
        x = expand_pauses(x, sr, cfg.expander_depth_db)
    body = trim_to_speech(x, sr)
    head, tail = int(round(cfg.head_s * sr)), int(round(cfg.tail_s * sr))
    total = head + len(body) + tail
    body = _level_body(body, sr, cfg, total)
    out = np.concatenate([np.zeros(head, np.float32), body, np.zeros(tail, np.float32)])
    out += room_tone(total, sr, cfg.room_tone_db, cfg.highpass_hz, cfg.seed)
    return out, measure(out, sr)
