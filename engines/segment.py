"""Cut recognised speech into dataset clips, only between words.

Input: Whisper's words with times on the source's time line, and (optionally)
the audio around them. Every gap between two words is a candidate cut; with
audio the cut goes at the middle of the longest quiet run inside the gap, so
it falls in real silence even when Whisper's word edges touch. Clips grow
word by word and end at the best-scoring gap once they are at least
``min_seconds`` long, before they pass ``max_seconds``; a long pause always
ends a clip (it is where one speaker usually hands over to another).
Finally leading and trailing silence is trimmed down to ``pad_seconds``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from engines.asr import Word
from engines.errors import BadInput

#: Energy frames for finding silence, in seconds.
ENERGY_FRAME_S = 0.01
#: How far a cut may look past Whisper's word edges, which are often late or early.
EDGE_SLACK_S = 0.12
#: A silence this long is a pause between words, never a stop consonant's closure.
REAL_PAUSE_S = 0.25
#: A frame is silent when this far (dB) below the loudest frame of the region.
SILENCE_BELOW_PEAK_DB = 35.0
#: ...or below this absolute level, whichever is higher (dBFS).
SILENCE_FLOOR_DBFS = -55.0
#: Score bonus for cutting after a sentence end (in seconds of pause).
SENTENCE_BONUS_S = 0.25
#: Score per dB of level dip at a cut, in seconds of pause (35 dB ~ 0.18 s).
DEPTH_WEIGHT_S_PER_DB = 0.005
SENTENCE_END = (".", "!", "?", "…", ";", ":")


@dataclass
class SegmentConfig:
    """How recognised speech becomes clips."""

    min_seconds: float = 1.5
    """Clips shorter than this are dropped (or kept when ``keep_short``)."""
    max_seconds: float = 12.0
    """No clip is longer than this (a single longer word run is split at its best gap)."""
    pad_seconds: float = 0.15
    """Silence kept before the first and after the last word."""
    force_pause_s: float = 0.6
    """A pause at least this long always ends a clip."""
    keep_short: bool = False
    """Keep clips shorter than ``min_seconds`` (they will be flagged ``too_short``)."""

    def validate(self) -> None:
        """Raise BadInput for inconsistent settings."""
        if self.min_seconds <= 0 or self.max_seconds <= self.min_seconds:
            raise BadInput(f"need 0 < min_seconds < max_seconds, got {self.min_seconds} "
                           f"and {self.max_seconds}")
        if self.pad_seconds < 0:
            raise BadInput("pad_seconds cannot be negative")

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SegmentConfig":
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class ClipSpec:
    """One clip to cut: source times, transcript, words relative to the clip start."""

    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.end - self.start

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ClipSpec":
        """Inverse of :meth:`to_dict`."""
        return cls(data["start"], data["end"], data["text"],
                   [Word(**w) for w in data.get("words", [])])


@dataclass
class _Gap:
    """The candidate cut between word ``i`` and word ``i + 1``."""

    cut: float
    pause: float
    sentence_end: bool
    depth_db: float = 0.0
    """How far the level at the cut lies below the speech around it."""


class _Energy:
    """Frame levels (dBFS) of the audio around the words, for finding silence."""

    def __init__(self, audio: np.ndarray | None, rate: int | None, offset_s: float):
        self.audio, self.rate, self.offset = audio, rate, offset_s

    def quiet_run(self, lo: float, hi: float) -> tuple[float, float] | None:
        """Longest silent run in [lo, hi] as (start_s, end_s), or None without audio."""
        if self.audio is None or hi <= lo:
            return None
        hop = max(1, int(ENERGY_FRAME_S * self.rate))
        a = max(0, int((lo - self.offset) * self.rate))
        b = min(len(self.audio), int((hi - self.offset) * self.rate))
        if b - a < hop:
            return None
        levels = frame_levels(self.audio[a:b], hop)
        quiet = levels < max(SILENCE_FLOOR_DBFS, self.reference_db(lo, hi) - SILENCE_BELOW_PEAK_DB)
        start, length = _longest_true_run(quiet)
        if not length:
            dip = int(np.argmin(levels))
            t = lo + (dip + 0.5) * hop / self.rate
            return t, t
        t0 = (a + start * hop) / self.rate + self.offset
        return t0, t0 + length * hop / self.rate

    def sound_span(self, lo: float, hi: float) -> tuple[float, float] | None:
        """First and last non-silent moments in [lo, hi], or None (no audio, all quiet)."""
        if self.audio is None or hi <= lo:
            return None
        hop = max(1, int(ENERGY_FRAME_S * self.rate))
        a = max(0, int((lo - self.offset) * self.rate))
        b = min(len(self.audio), int((hi - self.offset) * self.rate))
        levels = frame_levels(self.audio[a:b], hop)
        loud = np.flatnonzero(
            levels >= max(SILENCE_FLOOR_DBFS, self.reference_db(lo, hi) - SILENCE_BELOW_PEAK_DB))
        if not len(loud):
            return None
        t0 = (a / self.rate) + self.offset
        return t0 + loud[0] * hop / self.rate, t0 + (loud[-1] + 1) * hop / self.rate

    def depth_at(self, t: float) -> float:
        """dB between the loudest frame within a second of ``t`` and the frame at ``t``."""
        if self.audio is None:
            return 0.0
        hop = max(1, int(ENERGY_FRAME_S * self.rate))
        a = max(0, int((t - self.offset) * self.rate) - hop // 2)
        level = frame_levels(self.audio[a:a + hop], hop)
        if not len(level):
            return 0.0
        return max(0.0, self.reference_db(t, t) - float(level[0]))

    def reference_db(self, lo: float, hi: float) -> float:
        """Loudest frame level near [lo, hi] (one second either side)."""
        a = max(0, int((lo - 1.0 - self.offset) * self.rate))
        b = min(len(self.audio), int((hi + 1.0 - self.offset) * self.rate))
        hop = max(1, int(ENERGY_FRAME_S * self.rate))
        levels = frame_levels(self.audio[a:b], hop)
        return float(levels.max()) if len(levels) else SILENCE_FLOOR_DBFS


def frame_levels(audio: np.ndarray, hop: int) -> np.ndarray:
    """RMS level in dBFS of consecutive ``hop``-sample frames."""
    n = len(audio) // hop
    if n == 0:
        return np.zeros(0)
    frames = np.asarray(audio[:n * hop], np.float64).reshape(n, hop)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-6))


def _longest_true_run(mask: np.ndarray) -> tuple[int, int]:
    best_start, best_len, start = 0, 0, None
    for i, flag in enumerate(list(mask) + [False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            if i - start > best_len:
                best_start, best_len = start, i - start
            start = None
    return best_start, best_len


def _gaps(words: list[Word], energy: _Energy) -> list[_Gap]:
    gaps = []
    for left, right in zip(words, words[1:]):
        # Look a little into each word (Whisper edges drift) but never past its middle.
        lo = max(left.end - EDGE_SLACK_S, (left.start + left.end) / 2)
        hi = min(right.start + EDGE_SLACK_S, (right.start + right.end) / 2)
        run = energy.quiet_run(lo, hi) if hi > lo else None
        # Whisper often stretches a word over the pause after it (or before it);
        # a long silence anywhere between the two words' onsets/ends is a real pause.
        wide = energy.quiet_run(left.start + EDGE_SLACK_S / 2, right.end - EDGE_SLACK_S / 2)
        if wide is not None and wide[1] - wide[0] >= REAL_PAUSE_S and \
                (run is None or wide[1] - wide[0] > run[1] - run[0]):
            run = wide
        if run is None:
            pause = max(0.0, right.start - left.end)
            cut = (left.end + right.start) / 2 if hi > lo else left.end
        else:
            pause = max(run[1] - run[0], right.start - left.end if energy.audio is None else 0)
            cut = (run[0] + run[1]) / 2
        gaps.append(_Gap(cut, pause, left.text.rstrip('"\')').endswith(SENTENCE_END),
                         energy.depth_at(cut)))
    return gaps


def _choose_end(words: list[Word], gaps: list[_Gap], first: int,
                config: SegmentConfig) -> int:
    """Index of the last word of the clip starting at word ``first``."""
    best, best_score = None, -1.0
    for last in range(first, len(words)):
        span = words[last].end - words[first].start + 2 * config.pad_seconds
        if span > config.max_seconds and last > first:
            break
        if last == len(words) - 1:
            return last
        gap = gaps[last]
        if gap.pause >= config.force_pause_s:
            return last
        length = gap.cut - words[first].start
        if length >= config.min_seconds:
            # Prefer long pauses, sentence ends, then the deepest dip in level.
            score = (min(gap.pause, 1.0) + SENTENCE_BONUS_S * gap.sentence_end
                     + DEPTH_WEIGHT_S_PER_DB * min(gap.depth_db, SILENCE_BELOW_PEAK_DB)
                     + 0.01 * length)
            if score > best_score:
                best, best_score = last, score
    if best is not None:
        return best
    # No gap long enough yet: cut at the last word that still fits.
    return max(first, last - 1)


def _trim(start: float, end: float, energy: _Energy, pad: float) -> tuple[float, float]:
    """Shrink [start, end] to its first and last non-silent frames plus ``pad``.

    Only silence at the edges goes, so no sound inside the clip is ever lost,
    even where Whisper stretched a word over the pause that follows it.
    """
    span = energy.sound_span(start, end)
    if span is None:
        return start, end
    return max(start, span[0] - pad), min(end, span[1] + pad)


def _bounds(words: list[Word], gaps: list[_Gap], first: int, last: int, energy: _Energy,
            config: SegmentConfig) -> tuple[float, float]:
    """Clip edges: the cuts in the neighbouring gaps, trimmed to the sound plus padding."""
    pad = config.pad_seconds
    if energy.audio is None:
        start = gaps[first - 1].cut if first else words[first].start - pad
        end = gaps[last].cut if last < len(gaps) else words[last].end + pad
        start, end = max(start, words[first].start - pad, 0.0), min(end, words[last].end + pad)
        return _fit(start, end, words[first].start, words[last].end, config.max_seconds)
    audio_end = energy.offset + len(energy.audio) / energy.rate
    # Outer edges: search up to a second beyond Whisper's times, which drift.
    start = gaps[first - 1].cut if first else max(energy.offset, words[first].start - 1.0)
    end = gaps[last].cut if last < len(gaps) else min(audio_end, words[last].end + 1.0)
    start, end = _trim(start, end, energy, pad)
    return _fit(start, end, words[first].start, words[last].end, config.max_seconds)


def _fit(start: float, end: float, first_start: float, last_end: float,
         longest: float) -> tuple[float, float]:
    """Shave the silent margins of [start, end] evenly until it fits ``longest``."""
    excess = (end - start) - longest
    if excess <= 0:
        return start, end
    lead, tail = max(0.0, first_start - start), max(0.0, end - last_end)
    take_lead = min(lead, max(excess / 2, excess - tail))
    take_tail = min(tail, excess - take_lead)
    return start + take_lead, end - take_tail


def _make_clip(words: list[Word], start: float, end: float) -> ClipSpec:
    """Clip with word times relative to its start, clamped into the clip (Whisper's
    edges can overhang the silence that trimming removed)."""
    start, end = round(start, 3), round(end, 3)
    length = end - start
    inside = [Word(min(max(w.start - start, 0.0), length), min(max(w.end - start, 0.0), length),
                   w.text, w.probability) for w in words]
    text = " ".join(w.text for w in words).strip()
    return ClipSpec(start, end, text, inside)


def plan_clips(words: list[Word], config: SegmentConfig | None = None,
               audio: np.ndarray | None = None, sample_rate: int | None = None,
               audio_offset_s: float = 0.0) -> list[ClipSpec]:
    """Clips covering ``words`` (source times), cut only in gaps between words.

    ``audio`` (optional, any rate) is the source signal starting at
    ``audio_offset_s``; with it cuts land in measured silence and edges are
    trimmed, without it the word times alone decide.
    """
    config = config or SegmentConfig()
    config.validate()
    words = sorted((w for w in words if w.text.strip()), key=lambda w: w.start)
    if not words:
        return []
    if audio is not None and not sample_rate:
        raise BadInput("plan_clips: sample_rate is needed with audio")
    energy = _Energy(audio, sample_rate, audio_offset_s)
    gaps = _gaps(words, energy)
    clips, first = [], 0
    while first < len(words):
        last = _choose_end(words, gaps, first, config)
        start, end = _bounds(words, gaps, first, last, energy, config)
        clip = _make_clip(words[first:last + 1], start, end)
        if clip.duration >= config.min_seconds or config.keep_short:
            clips.append(clip)
        first = last + 1
    return clips


def cut(audio: np.ndarray, sample_rate: int, clip: ClipSpec,
        audio_offset_s: float = 0.0) -> np.ndarray:
    """The samples of ``clip`` from ``audio`` (which starts at ``audio_offset_s``)."""
    a = max(0, int(round((clip.start - audio_offset_s) * sample_rate)))
    b = min(len(audio), int(round((clip.end - audio_offset_s) * sample_rate)))
    return np.asarray(audio[a:b], np.float32)
