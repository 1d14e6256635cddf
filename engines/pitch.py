"""Fundamental frequency (F0) of speech clips: YIN in vectorised numpy.

Cheap enough to run on every clip of a dataset (no librosa import cost, no
model): a few milliseconds per second of audio. Used for a speaker's pitch
range in the dataset summary.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: Pitch search range, in Hz (covers bass voices to children).
FMIN_HZ = 60.0
FMAX_HZ = 500.0
#: Analysis frames: 64 ms windows every 10 ms.
FRAME_S = 0.064
HOP_S = 0.010
#: YIN's threshold on the cumulative mean normalised difference.
YIN_THRESHOLD = 0.2
#: Frames quieter than this fraction of the loudest frame's RMS are unvoiced.
ENERGY_GATE = 0.05


@dataclass
class PitchStats:
    """Summary of a clip's F0 over its voiced frames (Hz; NaN when none)."""

    median_hz: float
    p5_hz: float
    p95_hz: float
    voiced_fraction: float
    """Share of analysed frames with a confident pitch (0..1)."""

    def to_dict(self) -> dict:
        """Plain dict for JSON (NaN becomes None)."""
        return {k: (None if isinstance(v, float) and np.isnan(v) else v)
                for k, v in asdict(self).items()}


def _frames(audio: np.ndarray, size: int, hop: int) -> np.ndarray:
    if len(audio) < size:
        audio = np.pad(audio, (0, size - len(audio)))
    return np.lib.stride_tricks.sliding_window_view(audio, size)[::hop]


def _cmnd(frames: np.ndarray, max_lag: int) -> np.ndarray:
    """YIN's cumulative mean normalised difference ``[frames, max_lag + 1]``."""
    size = frames.shape[1]
    width = size - max_lag
    nfft = 1 << int(np.ceil(np.log2(2 * size)))
    spec_all = np.fft.rfft(frames, nfft, axis=1)
    spec_head = np.fft.rfft(frames[:, :width], nfft, axis=1)
    corr = np.fft.irfft(np.conj(spec_head) * spec_all, nfft, axis=1)[:, :max_lag + 1]
    squares = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames ** 2, axis=1)], axis=1)
    lags = np.arange(max_lag + 1)
    energy_lag = squares[:, lags + width] - squares[:, lags]
    diff = np.maximum(squares[:, [width]] + energy_lag - 2 * corr, 0.0)
    running = np.cumsum(diff[:, 1:], axis=1) / lags[1:]
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] / np.where(running > 0, running, 1.0)
    return cmnd


def _pick_lags(cmnd: np.ndarray, min_lag: int) -> np.ndarray:
    """First dip below the threshold per frame, refined by parabola; NaN if none."""
    body = cmnd[:, min_lag:-1]
    is_dip = (body < YIN_THRESHOLD) & (body <= cmnd[:, min_lag + 1:]) & \
             (body <= cmnd[:, min_lag - 1:-2])
    found = is_dip.any(axis=1)
    lag = np.argmax(is_dip, axis=1) + min_lag
    rows = np.arange(len(cmnd))
    inner = np.clip(lag, 1, cmnd.shape[1] - 2)
    left, mid, right = cmnd[rows, inner - 1], cmnd[rows, inner], cmnd[rows, inner + 1]
    denom = left - 2 * mid + right
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (left - right) / np.where(denom == 0, 1, denom), 0)
    return np.where(found, inner + np.clip(shift, -1, 1), np.nan)


def f0_track(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """F0 per 10 ms frame in Hz, NaN where unvoiced or too quiet."""
    audio = np.asarray(audio, np.float64)
    size, hop = int(FRAME_S * sample_rate), int(HOP_S * sample_rate)
    max_lag = min(int(sample_rate / FMIN_HZ), size // 2)
    min_lag = max(2, int(sample_rate / FMAX_HZ))
    frames = _frames(audio, size, hop)
    if not len(frames):
        return np.zeros(0)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    loud = rms >= ENERGY_GATE * (rms.max() or 1.0)
    lags = _pick_lags(_cmnd(frames, max_lag), min_lag)
    f0 = sample_rate / lags
    return np.where(loud & (rms > 0), f0, np.nan)


def pitch_stats(audio: np.ndarray, sample_rate: int) -> PitchStats:
    """Median F0 and its 5-95 % range over the voiced frames of a clip."""
    f0 = f0_track(audio, sample_rate)
    voiced = f0[~np.isnan(f0)]
    if not len(voiced):
        return PitchStats(float("nan"), float("nan"), float("nan"), 0.0)
    p5, median, p95 = np.percentile(voiced, [5, 50, 95])
    return PitchStats(float(median), float(p5), float(p95), len(voiced) / len(f0))


def pooled_stats(tracks: list[np.ndarray]) -> PitchStats:
    """One summary over many clips' F0 tracks (for a speaker's range)."""
    joined = np.concatenate([np.asarray(t) for t in tracks]) if tracks else np.zeros(0)
    voiced = joined[~np.isnan(joined)]
    if not len(voiced):
        return PitchStats(float("nan"), float("nan"), float("nan"), 0.0)
    p5, median, p95 = np.percentile(voiced, [5, 50, 95])
    return PitchStats(float(median), float(p5), float(p95), len(voiced) / len(joined))
