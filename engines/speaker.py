"""Speaker embeddings with resemblyzer's ``VoiceEncoder`` (a 3-layer LSTM, d-vectors).

Each clip is cut into 1.6 s partial windows; the partials of many clips go
through the network together in batches, and each clip's embedding is the
L2-normalised mean of its partials. Output: ``float32 [n_clips, 256]``, unit rows,
so a dot product is the cosine similarity.
"""
from __future__ import annotations

import functools

import numpy as np

from engines.errors import (BadInput, CancelFn, ModelMissing, NoGPU, ProgressFn, check_cancel,
                            never_cancel, no_progress)

#: Rate the encoder expects, in Hz.
EMBED_RATE = 16000
EMBED_DIM = 256
#: Partial windows per forward pass; bounds memory (160 frames x 40 mels each).
BATCH_PARTIALS = 128
#: Partials per second of audio (resemblyzer's default overlap).
PARTIAL_RATE = 1.3
#: Keep a last, zero-padded partial if it covers at least this much of a window.
MIN_COVERAGE = 0.75
#: Shortest clip worth embedding, in seconds; shorter ones are zero-padded.
MIN_CLIP_S = 0.5
#: resemblyzer's mel front end: 25 ms windows every 10 ms, 40 Slaney mel bands.
N_FFT = 400
HOP = 160
N_MELS = 40
#: Level clips are raised to before embedding (as resemblyzer does), in dBFS.
TARGET_DBFS = -30.0


def _device(device: str) -> str:
    import torch
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise NoGPU("speaker embeddings were asked to run on CUDA, but no GPU is available")
    return device


class SpeakerEncoder:
    """Batched d-vector embeddings of many clips."""

    def __init__(self, device: str = "auto"):
        try:
            from resemblyzer import VoiceEncoder
        except ImportError as err:
            raise ModelMissing(f"speaker encoder unavailable: resemblyzer ({err})") from None
        self.device = _device(device)
        self.encoder = VoiceEncoder(self.device, verbose=False)
        self.encoder.eval()

    def _partials(self, clip: np.ndarray) -> np.ndarray:
        """Mel partials ``[k, 160, 40]`` of one clip (volume normalised as in training)."""
        clip = np.asarray(clip, np.float32)
        if len(clip) < MIN_CLIP_S * EMBED_RATE:
            clip = np.pad(clip, (0, int(MIN_CLIP_S * EMBED_RATE) - len(clip)))
        clip = _raise_volume(clip, TARGET_DBFS)
        wav_slices, mel_slices = self.encoder.compute_partial_slices(
            len(clip), PARTIAL_RATE, MIN_COVERAGE)
        needed = wav_slices[-1].stop
        if needed >= len(clip):
            clip = np.pad(clip, (0, needed - len(clip)))
        mel = mel_spectrogram(clip)
        return np.stack([mel[s] for s in mel_slices]).astype(np.float32)

    def embed(self, clips: list[np.ndarray], sample_rate: int = EMBED_RATE,
              progress: ProgressFn = no_progress,
              should_cancel: CancelFn = never_cancel) -> np.ndarray:
        """Embeddings ``float32 [len(clips), 256]``, rows L2-normalised.

        ``clips`` are mono float32 at ``sample_rate`` (resampled to 16 kHz here).
        Progress is reported per forward batch; cancel is checked between batches.
        """
        import torch
        from engines.audio import resample
        if not clips:
            return np.zeros((0, EMBED_DIM), np.float32)
        partials, owner = [], []
        for i, clip in enumerate(clips):
            check_cancel(should_cancel)
            if sample_rate != EMBED_RATE:
                clip = resample(clip, sample_rate, EMBED_RATE)
            mels = self._partials(clip)
            partials.append(mels)
            owner += [i] * len(mels)
        stacked = np.concatenate(partials)
        owner_ix = np.asarray(owner)
        outputs = []
        with torch.no_grad():
            for first in range(0, len(stacked), BATCH_PARTIALS):
                check_cancel(should_cancel)
                batch = torch.from_numpy(stacked[first:first + BATCH_PARTIALS]).to(self.device)
                outputs.append(self.encoder(batch).cpu().numpy())
                done = min(len(stacked), first + BATCH_PARTIALS)
                progress(done / len(stacked), f"speaker embeddings: {done}/{len(stacked)} windows")
        return _mean_per_clip(np.concatenate(outputs), owner_ix, len(clips))


def _raise_volume(clip: np.ndarray, target_dbfs: float) -> np.ndarray:
    """Scale up (never down) so the RMS level reaches ``target_dbfs``."""
    rms = float(np.sqrt(np.mean(np.square(clip, dtype=np.float64))))
    if rms <= 0:
        return clip
    gain_db = target_dbfs - 20 * np.log10(rms)
    return clip * np.float32(10 ** (gain_db / 20)) if gain_db > 0 else clip


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)),
                    mel * (200.0 / 3))


@functools.lru_cache(maxsize=4)
def _mel_filters(rate: int = EMBED_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """Slaney-normalised triangular filters ``[n_mels, n_fft // 2 + 1]`` (librosa's default)."""
    bins_hz = np.linspace(0, rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(rate / 2), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - bins_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    filters = np.maximum(0, np.minimum(lower, upper))
    return filters * (2.0 / (edges[2:] - edges[:-2]))[:, None]


def mel_spectrogram(clip: np.ndarray) -> np.ndarray:
    """Power mel spectrogram ``[frames, 40]`` as resemblyzer computes it (via librosa),
    in plain numpy: librosa's first call costs seconds of lazy imports."""
    padded = np.pad(np.asarray(clip, np.float32), N_FFT // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    window = np.hanning(N_FFT + 1)[:-1]  # periodic Hann, as scipy's fftbins=True
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    return (power @ _mel_filters().T).astype(np.float32)


def _mean_per_clip(partial_embeds: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    sums = np.zeros((n, partial_embeds.shape[1]), np.float64)
    np.add.at(sums, owner, partial_embeds)
    return normalise_rows(sums)


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, np.float64)
    if vectors.ndim != 2:
        raise BadInput("embeddings must be a 2-D array [n, dim]")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


_ENCODERS: dict[str, SpeakerEncoder] = {}


def get_encoder(device: str = "auto") -> SpeakerEncoder:
    """A shared encoder per device (loading takes about a second)."""
    if device not in _ENCODERS:
        _ENCODERS[device] = SpeakerEncoder(device)
    return _ENCODERS[device]


def embed_clips(clips: list[np.ndarray], sample_rate: int = EMBED_RATE, device: str = "auto",
                progress: ProgressFn = no_progress,
                should_cancel: CancelFn = never_cancel) -> np.ndarray:
    """Convenience: :meth:`SpeakerEncoder.embed` with a shared encoder."""
    return get_encoder(device).embed(clips, sample_rate, progress, should_cancel)
