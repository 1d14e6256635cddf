"""Per-clip quality measures and flags for clips a user will likely reject.

Measures: duration, integrated loudness, peak and clipping, an SNR estimate
(loud frames against quiet frames), the share of speech frames (silero VAD)
and Whisper's confidence (mean word probability). Each flag is a short string
so the UI can filter on it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from engines.asr import Word
from engines.audio import CLIP_LEVEL, SILENCE_DB, integrated_loudness, resample, to_db
from engines.segment import frame_levels

#: Frame length for the SNR estimate, in seconds.
SNR_FRAME_S = 0.02
#: Percentiles of frame energy taken as "speech" and "noise floor".
SPEECH_PERCENTILE = 90
NOISE_PERCENTILE = 10
#: SNR reported for a clean digital-silence floor, in dB.
MAX_SNR_DB = 60.0
VAD_RATE = 16000


@dataclass
class QualityConfig:
    """Thresholds that raise flags."""

    min_seconds: float = 1.5
    """Shorter clips get ``too_short``."""
    max_seconds: float = 15.0
    """Longer clips get ``too_long``."""
    max_clipped_fraction: float = 0.001
    """More samples than this at full scale give ``clipped``."""
    min_snr_db: float = 15.0
    """A lower SNR estimate gives ``low_snr``."""
    min_confidence: float = 0.6
    """A lower mean word probability gives ``low_confidence``."""
    min_lufs: float = -40.0
    """Quieter clips get ``too_quiet``."""
    min_speech_ratio: float = 0.5
    """A smaller share of speech frames gives ``little_speech``."""

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "QualityConfig":
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class ClipQuality:
    """Measures of one clip and the flags they raise."""

    duration_s: float
    lufs: float
    peak_dbfs: float
    clipped_fraction: float
    snr_db: float
    speech_ratio: float
    confidence: float
    """Mean Whisper word probability (0..1); NaN without words."""
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain dict for JSON (NaN becomes None)."""
        return {k: (None if isinstance(v, float) and np.isnan(v) else v)
                for k, v in asdict(self).items()}


def snr_estimate(audio: np.ndarray, sample_rate: int) -> float:
    """SNR in dB from the spread of frame energies (speech frames vs the floor).

    Works on a clip alone, no reference needed: the 90th percentile of 20 ms
    frame power is taken as speech plus noise, the 10th as noise.
    """
    hop = max(1, int(SNR_FRAME_S * sample_rate))
    levels = frame_levels(audio, hop)
    if len(levels) < 2:
        return 0.0
    power = 10 ** (levels / 10)
    loud, floor = np.percentile(power, [SPEECH_PERCENTILE, NOISE_PERCENTILE])
    if floor <= 1e-12:
        return MAX_SNR_DB
    return float(np.clip(10 * np.log10(max(loud - floor, 1e-12) / floor), 0.0, MAX_SNR_DB))


def confidence(words: list[Word]) -> float:
    """Mean word probability, NaN when there are no words."""
    return float(np.mean([w.probability for w in words])) if words else float("nan")


def speech_ratio(audio: np.ndarray, sample_rate: int, threshold: float = 0.5) -> float:
    """Share of 32 ms frames silero scores as speech."""
    from engines import vad
    audio16 = resample(audio, sample_rate, VAD_RATE)
    return vad.speech_ratio(audio16, VAD_RATE, threshold)


def flags_for(q: ClipQuality, config: QualityConfig) -> list[str]:
    """Short flag strings for the measures that fall outside ``config``."""
    checks = [
        ("too_short", q.duration_s < config.min_seconds),
        ("too_long", q.duration_s > config.max_seconds),
        ("clipped", q.clipped_fraction > config.max_clipped_fraction),
        ("low_snr", q.snr_db < config.min_snr_db),
        ("low_confidence", not np.isnan(q.confidence) and q.confidence < config.min_confidence),
        ("no_words", np.isnan(q.confidence)),
        ("too_quiet", q.lufs < config.min_lufs),
        ("little_speech", q.speech_ratio < config.min_speech_ratio),
    ]
    return [name for name, bad in checks if bad]


def assess(audio: np.ndarray, sample_rate: int, words: list[Word] | None = None,
           config: QualityConfig | None = None,
           speech_ratio_value: float | None = None) -> ClipQuality:
    """Measure one clip and flag it.

    ``speech_ratio_value`` may be passed when the caller already has VAD
    scores for the clip's span; otherwise silero runs on the clip.
    """
    config = config or QualityConfig()
    audio = np.asarray(audio, np.float32)
    magnitude = np.abs(audio)
    ratio = speech_ratio_value
    if ratio is None:
        ratio = speech_ratio(audio, sample_rate) if len(audio) else 0.0
    quality = ClipQuality(
        duration_s=len(audio) / sample_rate,
        lufs=integrated_loudness(audio, sample_rate) if len(audio) else SILENCE_DB,
        peak_dbfs=to_db(float(magnitude.max())) if len(audio) else SILENCE_DB,
        clipped_fraction=float((magnitude >= CLIP_LEVEL).mean()) if len(audio) else 0.0,
        snr_db=snr_estimate(audio, sample_rate),
        speech_ratio=float(ratio),
        confidence=confidence(words or []),
    )
    quality.flags = flags_for(quality, config)
    return quality
