"""Voice activity detection with the silero VAD bundled in the ``silero-vad`` package.

Runs silero's "sequence" ONNX export through onnxruntime: one call scores a
whole block of 32 ms frames, and the LSTM state and frame context carry over
between blocks, so a long file streams through :class:`VadStream` block by
block and gives the same probabilities as one pass over the whole signal.
Torch is not needed.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass

import numpy as np

from engines.errors import BadInput, ModelMissing

#: Sample rate silero works at, in Hz.
VAD_RATE = 16000
#: Samples per scored frame (32 ms) and the previous samples each frame sees.
FRAME = 512
CONTEXT = 64
FRAME_S = FRAME / VAD_RATE
#: Frames per ONNX call: 512 frames is about 16 s of audio.
FRAMES_PER_CALL = 512
MODEL_FILE = "silero_vad_16k_sequence.onnx"
LSTM_SIZE = 128


@dataclass
class VadConfig:
    """How speech probabilities become speech regions."""

    speech_prob: float = 0.5
    """Frames scoring at or above this (0..1) start speech."""
    hysteresis: float = 0.15
    """Speech continues until the score falls below ``speech_prob - hysteresis``."""
    min_speech_s: float = 0.25
    """Regions shorter than this are dropped (clicks, breaths)."""
    min_silence_s: float = 0.3
    """Gaps shorter than this do not split a region."""
    pad_s: float = 0.1
    """Seconds added before and after each region (within the signal)."""

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "VadConfig":
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def model_path() -> str:
    """Path of the bundled silero sequence model (without importing the package,
    whose ``__init__`` pulls in torch)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissing("silero VAD is not installed (pip package silero-vad)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", MODEL_FILE)
    if not os.path.exists(path):
        raise ModelMissing(f"silero VAD model file missing: {path}")
    return path


_SESSIONS: dict[str, object] = {}


def _session():
    import onnxruntime as ort
    path = model_path()
    if path not in _SESSIONS:
        options = ort.SessionOptions()
        # Single-threaded: the model is tiny and other stages share the cores.
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        _SESSIONS[path] = ort.InferenceSession(path, sess_options=options,
                                               providers=["CPUExecutionProvider"])
    return _SESSIONS[path]


class VadStream:
    """Speech probability per 32 ms frame, fed block by block.

    ``feed`` accepts any number of 16 kHz samples; leftovers shorter than a
    frame wait for the next call. ``finish`` scores the zero-padded tail.
    """

    def __init__(self):
        self._session = _session()
        self._hidden = np.zeros((1, 1, LSTM_SIZE), np.float32)
        self._cell = np.zeros((1, 1, LSTM_SIZE), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)
        self.samples_seen = 0
        self.probs: list[np.ndarray] = []

    def feed(self, audio: np.ndarray) -> np.ndarray:
        """Score whole frames of ``audio``; returns the new frames' probabilities."""
        audio = np.asarray(audio, np.float32).reshape(-1)
        self.samples_seen += len(audio)
        joined = np.concatenate([self._pending, audio])
        whole = len(joined) // FRAME * FRAME
        self._pending = joined[whole:]
        return self._score(joined[:whole])

    def finish(self) -> np.ndarray:
        """Score the last partial frame (zero-padded); returns all probabilities."""
        if len(self._pending):
            tail = np.zeros(FRAME, np.float32)
            tail[:len(self._pending)] = self._pending
            self._pending = np.zeros(0, np.float32)
            self._score(tail)
        return self.all_probs()

    def all_probs(self) -> np.ndarray:
        """Every probability so far, one per frame."""
        return np.concatenate(self.probs) if self.probs else np.zeros(0, np.float32)

    def _score(self, samples: np.ndarray) -> np.ndarray:
        if not len(samples):
            return np.zeros(0, np.float32)
        frames = samples.reshape(-1, FRAME)
        out = []
        for first in range(0, len(frames), FRAMES_PER_CALL):
            block = frames[first:first + FRAMES_PER_CALL]
            contexts = np.empty((len(block), CONTEXT), np.float32)
            contexts[0] = self._context
            contexts[1:] = block[:-1, -CONTEXT:]
            self._context = block[-1, -CONTEXT:].copy()
            values, self._hidden, self._cell = self._session.run(
                ["speech_probs", "hn", "cn"],
                {"input": np.concatenate([contexts, block], axis=1),
                 "h": self._hidden, "c": self._cell})
            out.append(np.asarray(values, np.float32).reshape(-1))
        probs = np.concatenate(out)
        self.probs.append(probs)
        return probs


def speech_probabilities(audio: np.ndarray, sample_rate: int = VAD_RATE) -> np.ndarray:
    """Per-frame (32 ms) speech probability of a whole in-memory 16 kHz signal."""
    if sample_rate != VAD_RATE:
        raise BadInput(f"VAD needs {VAD_RATE} Hz audio, got {sample_rate} Hz")
    stream = VadStream()
    stream.feed(audio)
    return stream.finish()


def _raw_regions(probs: np.ndarray, on: float, off: float) -> list[list[int]]:
    """Frame index spans [start, end) with hysteresis between ``on`` and ``off``."""
    regions, start = [], None
    for i, p in enumerate(probs):
        if start is None and p >= on:
            start = i
        elif start is not None and p < off:
            regions.append([start, i])
            start = None
    if start is not None:
        regions.append([start, len(probs)])
    return regions


def regions_from_probs(probs: np.ndarray, config: VadConfig | None = None,
                       duration_s: float | None = None) -> list[tuple[float, float]]:
    """Speech regions ``(start_s, end_s)`` from frame probabilities.

    Gaps shorter than ``min_silence_s`` are bridged first, then regions shorter
    than ``min_speech_s`` dropped, then each is padded by ``pad_s`` (clamped to
    the signal and to its neighbours so regions never overlap).
    """
    config = config or VadConfig()
    if not 0.0 <= config.speech_prob <= 1.0:
        raise BadInput(f"speech_prob must be between 0 and 1, got {config.speech_prob}")
    off = max(0.0, config.speech_prob - config.hysteresis)
    merged: list[list[int]] = []
    for start, end in _raw_regions(np.asarray(probs), config.speech_prob, off):
        if merged and (start - merged[-1][1]) * FRAME_S < config.min_silence_s:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    spans = [(s * FRAME_S, e * FRAME_S) for s, e in merged
             if (e - s) * FRAME_S >= config.min_speech_s]
    total = duration_s if duration_s is not None else len(probs) * FRAME_S
    return _pad(spans, config.pad_s, total)


def _pad(spans: list[tuple[float, float]], pad: float, total: float) -> list[tuple[float, float]]:
    padded = []
    for i, (start, end) in enumerate(spans):
        lo = max(0.0, start - pad, padded[-1][1] if padded else 0.0)
        hi = min(total, end + pad)
        if i + 1 < len(spans):
            hi = min(hi, (end + spans[i + 1][0]) / 2)
        padded.append((round(lo, 3), round(hi, 3)))
    return padded


def detect_speech(audio: np.ndarray, sample_rate: int = VAD_RATE,
                  config: VadConfig | None = None) -> list[tuple[float, float]]:
    """Speech regions ``(start_s, end_s)`` of an in-memory 16 kHz signal."""
    probs = speech_probabilities(audio, sample_rate)
    return regions_from_probs(probs, config, len(audio) / sample_rate)


def speech_ratio(audio: np.ndarray, sample_rate: int = VAD_RATE,
                 threshold: float = 0.5) -> float:
    """Fraction of 32 ms frames scored as speech (0..1); 0 for empty audio."""
    probs = speech_probabilities(audio, sample_rate)
    return float((probs >= threshold).mean()) if len(probs) else 0.0
