"""Narration: a book's chapters -> sentence audio -> mastered chapters -> MP3/WAV/FLAC + M4B.

The job works chapter by chapter, sentence by sentence. Every sentence's audio
is cached as a file named by a hash of (normalized text, voice, synthesis
settings), so after an edit only the changed sentences are synthesized again,
and after a cancel or crash the job resumes from what the cache already holds.

Optionally each new sentence is back-checked: the installed Whisper transcribes
it and a word error rate above ``max_wer`` gets the sentence synthesized again
with other noise; if it still fails, it is flagged for the user to listen to,
edit or accept.

Chapters are then assembled with the chosen pauses, mastered to ACX norms
(:mod:`engines.mastering`) and encoded (:mod:`engines.encode`).
"""
from __future__ import annotations

import hashlib
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import soundfile as sf

from engines import encode, mastering
from engines.text import normalize
from engines.text.scoring import word_edit_distance
from projects import books as book_store
from projects.books import BookRecord, ChapterRecord
from projects.errors import BadInput, StudioError
from projects.format import human_duration
from projects.jobs import JobContext, JobKind, register, submit
from projects.projects import get_project
from projects.records import Job, Project
from projects.store import Store, dumps, loads
from projects.voices import TtsVoice, get_voice, load_synthesizer
from projects.workspace import Workspace, atomic_path, slugify

KIND = "narrate"
NARRATION_DIR = "narration"
#: Sentences handed to the synthesizer per call (its runner spreads them over the cores/GPU).
SYNTH_BATCH = 8
#: Other noise settings tried, in turn, for a sentence that fails the back-check.
RETRY_NOISE = ((0.5, 0.6), (0.8, 1.0))
#: A sentence fails the back-check only with this many wrong words (tiny.en slips on one
#: word of a short sentence far more often than the voice does).
MIN_WRONG_WORDS = 2
#: Whisper's input rate (Hz).
ASR_RATE = 16000
#: Chapter formats besides the M4B; "none" makes the M4B only.
CHAPTER_FORMATS = ("mp3", "wav", "flac", "none")
#: Shown on the export screen and printed by the CLI.
RETAILER_NOTICE = ("Some retailers, ACX (Audible) among them, accept synthetic narration only "
                   "when authorised: check your retailer's rules before you publish.")
#: Words that mark a language, for books whose file does not say which language they are in.
_FUNCTION_WORDS = {
    "en": {"the", "and", "of", "to", "is", "was", "that", "with", "he", "she", "it", "you"},
    "fr": {"le", "la", "les", "et", "des", "est", "une", "dans", "que", "pas", "il", "elle"},
    "de": {"der", "die", "und", "das", "ist", "nicht", "ein", "eine", "ich", "mit", "sie", "zu"},
    "es": {"el", "los", "las", "y", "es", "una", "que", "por", "con", "del", "para", "muy"},
    "it": {"il", "di", "che", "non", "una", "della", "sono", "per", "gli", "anche", "ma", "nel"},
    "nl": {"de", "het", "een", "en", "niet", "dat", "ik", "zijn", "van", "op", "met", "voor"},
    "pt": {"o", "os", "as", "um", "uma", "não", "que", "com", "para", "do", "da", "em"},
}
#: A guess needs at least this many function words and this share of all hits.
GUESS_MIN_HITS, GUESS_MIN_SHARE = 8, 0.5
_WORDS = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_PHONEME_BLOCK = re.compile(r"\[\[.*?\]\]")


# --------------------------------------------------------------------------- settings

@dataclass
class NarrationSettings:
    """How a book is narrated; saved with the book and snapshotted into each job."""

    voice: str = "piper-en_US-joe-medium"
    """Key of the TTS voice (see projects.voices); chapters may override it."""
    speaker: str | None = None
    """Speaker of a multi-speaker voice; None for the default one."""
    length_scale: float = 1.0
    """Speed: above 1 is slower, below 1 faster."""
    noise_scale: float = 0.667
    """Variation of the voice (generator noise)."""
    noise_w: float = 0.8
    """Variation of the rhythm (duration noise)."""
    sentence_pause_s: float = 0.35
    """Silence after each sentence (s)."""
    paragraph_pause_s: float = 0.9
    """Silence after each paragraph (s), instead of the sentence pause."""
    chapter_pause_s: float = 3.25
    """Silence between chapters (s): room tone at the chapter's tail plus the next head."""
    back_check: bool = True
    """Transcribe every new sentence with Whisper and redo or flag the garbled ones."""
    max_wer: float = 0.34
    """Word error rate above which a sentence fails the back-check."""
    chapter_format: str = "mp3"
    """Per-chapter files: mp3 (192k CBR 44.1 kHz), wav, flac or none."""
    make_m4b: bool = True
    """Also write one M4B with chapter marks, tags and cover."""
    rvc_voice: str | None = None
    """Slot for an RVC voice applied on top of the TTS voice (comes with RVC; unused now)."""

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "NarrationSettings":
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in names})

    def validate(self) -> "NarrationSettings":
        """Raise BadInput for values narration cannot use; returns self."""
        if not 0.3 <= self.length_scale <= 3.0:
            raise BadInput("Speed (length scale) must lie between 0.3 and 3.")
        if not (0 <= self.noise_scale <= 2 and 0 <= self.noise_w <= 2):
            raise BadInput("Variation (noise scales) must lie between 0 and 2.")
        if min(self.sentence_pause_s, self.paragraph_pause_s) < 0 or \
                max(self.sentence_pause_s, self.paragraph_pause_s) > 10:
            raise BadInput("Pauses after sentences and paragraphs must lie between 0 and 10 s.")
        if self.chapter_format not in CHAPTER_FORMATS:
            raise BadInput(f"Chapter files must be one of {', '.join(CHAPTER_FORMATS)}.")
        if self.chapter_format == "none" and not self.make_m4b:
            raise BadInput("Choose chapter files, an M4B, or both.")
        if self.rvc_voice:
            raise BadInput("RVC voices on top of narration are not available yet.")
        return self

    def synthesis(self) -> dict:
        """What changes a sentence's sound (part of its cache key)."""
        return {"speaker": self.speaker, "length_scale": round(self.length_scale, 4),
                "noise_scale": round(self.noise_scale, 4), "noise_w": round(self.noise_w, 4),
                "rvc_voice": self.rvc_voice}

    def master_config(self) -> mastering.MasterConfig:
        """Mastering with room tone that adds up to the chapter pause."""
        cfg = mastering.MasterConfig()
        cfg.tail_s = min(max(self.chapter_pause_s - cfg.head_s, mastering.ACX_TAIL_MIN_S + 0.1),
                         mastering.ACX_TAIL_MAX_S - 0.5)
        return cfg


def book_settings(store: Store, book_id: int) -> NarrationSettings:
    """A book's saved narration settings (defaults when none were saved)."""
    return NarrationSettings.from_dict(book_store.get_book(store, book_id).settings)


def save_settings(store: Store, book_id: int, settings: NarrationSettings) -> NarrationSettings:
    """Validate and remember a book's narration settings."""
    book_store.save_book_settings(store, book_id, settings.validate().to_dict())
    return settings


# --------------------------------------------------------------------------- language

def _primary(language: str) -> str:
    return language.lower().replace("_", "-").split("-")[0]


def guess_language(text: str) -> str | None:
    """ISO 639-1 code of the text's language from its commonest words, or None if unsure."""
    words = [w.lower() for w in _WORDS.findall(text[:20000])]
    hits = {lang: sum(w in vocab for w in words) for lang, vocab in _FUNCTION_WORDS.items()}
    best = max(hits, key=hits.get)
    total = sum(hits.values())
    if hits[best] < GUESS_MIN_HITS or hits[best] < GUESS_MIN_SHARE * total:
        return None
    return best


def check_language(book: BookRecord, chapters: list[ChapterRecord], voice: TtsVoice) -> None:
    """BadInput when the book's language (metadata, else a guess) is not the voice's."""
    language = book.language or guess_language(" ".join(c.text for c in chapters[:3]))
    if language and _primary(language) != _primary(voice.language):
        raise BadInput(f"This book is in '{language}' but the voice '{voice.name}' speaks "
                       f"'{voice.language}'; choose a voice for the book's language.")


# --------------------------------------------------------------------------- sentence cache

class SentenceCache:
    """Sentence audio as WAV files named by a hash of what makes them sound as they do."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @staticmethod
    def key(normalized: str, voice: TtsVoice, synthesis: dict) -> str:
        """The cache key of one sentence."""
        size = voice.onnx_path.stat().st_size if voice.onnx_path.exists() else 0
        blob = dumps({"text": normalized, "voice": voice.key, "model_bytes": size, **synthesis})
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]

    def path(self, key: str) -> Path:
        """Where a sentence's WAV lives."""
        return self.folder / key[:2] / f"{key}.wav"

    def has(self, key: str) -> bool:
        """True when the sentence is already synthesized."""
        return self.path(key).is_file()

    def load(self, key: str) -> tuple[np.ndarray, int]:
        """(float32 audio, sample rate) of a cached sentence."""
        audio, sr = sf.read(self.path(key), dtype="float32")
        return audio, sr

    def save(self, key: str, audio: np.ndarray, sr: int, meta: dict | None = None) -> None:
        """Store a sentence (16-bit WAV, atomic) and its back-check record."""
        if meta is not None:
            self.save_meta(key, meta)
        with atomic_path(self.path(key)) as tmp:
            sf.write(tmp, audio, sr, subtype="PCM_16", format="WAV")

    def meta(self, key: str) -> dict:
        """The back-check record of a sentence ({} when none)."""
        path = self.path(key).with_suffix(".json")
        return loads(path.read_text(encoding="utf-8"), {}) if path.is_file() else {}

    def save_meta(self, key: str, meta: dict) -> None:
        """Replace a sentence's back-check record."""
        with atomic_path(self.path(key).with_suffix(".json")) as tmp:
            tmp.write_text(dumps(meta), encoding="utf-8")


def narration_dir(ws: Workspace, project: Project) -> Path:
    """The project's narration folder (cache, chapter audio, previews)."""
    return ws.project_dir(project.slug) / NARRATION_DIR


def project_cache(ws: Workspace, project: Project) -> SentenceCache:
    """The project's sentence cache."""
    return SentenceCache(narration_dir(ws, project) / "cache")


# --------------------------------------------------------------------------- back-check

def words_of(text: str) -> list[str]:
    """Lower-case words for comparing what was said with what was meant."""
    return re.findall(r"[a-z0-9']+", _PHONEME_BLOCK.sub(" ", text).lower().replace("-", " "))


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word-level edit distance, reference word count)."""
    ref = words_of(reference)
    return word_edit_distance(ref, words_of(hypothesis)), len(ref)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance divided by the reference's word count."""
    errors, count = word_errors(reference, hypothesis)
    return errors / count if count else 0.0


class BackChecker:
    """Transcribes sentence audio with the installed Whisper and scores it against the text."""

    def __init__(self, language: str):
        self.language = language
        self._transcriber = None

    @property
    def usable(self) -> bool:
        """tiny.en only hears English: other languages are not checked."""
        return _primary(self.language) == "en"

    def _model(self):
        if self._transcriber is None:
            from engines.asr import FasterWhisperTranscriber
            from projects.registry import Registry

            self._transcriber = FasterWhisperTranscriber(str(Registry().path("whisper-tiny.en")))
        return self._transcriber

    def heard(self, audio: np.ndarray, sr: int) -> str:
        """What Whisper hears in ``audio``."""
        import soxr

        speech = soxr.resample(audio, sr, ASR_RATE) if sr != ASR_RATE else audio
        return " ".join(s.text for s in self._model().transcribe(speech.astype(np.float32)))

    def score(self, audio: np.ndarray, sr: int, normalized: str) -> tuple[float, int, str]:
        """(word error rate, wrong words, transcript); the transcript is normalized like the text."""
        heard = self.heard(audio, sr)
        errors, count = word_errors(normalized, normalize(heard, "en-us"))
        return (errors / count if count else 0.0), errors, heard


# --------------------------------------------------------------------------- planning

@dataclass
class PlannedSentence:
    """One sentence on its way to audio."""

    paragraph: int
    text: str
    normalized: str
    ids: list[int]
    key: str


@dataclass
class ChapterPlan:
    """A chapter with its voice and its sentences."""

    number: int
    chapter: ChapterRecord
    voice: TtsVoice
    sentences: list[PlannedSentence] = field(default_factory=list)

    def chars(self) -> int:
        """Characters to speak (the unit of progress and ETA)."""
        return sum(len(s.normalized) for s in self.sentences)


def plan_chapter(number: int, chapter: ChapterRecord, voice: TtsVoice, lexicon,
                 settings: NarrationSettings) -> ChapterPlan:
    """Split a chapter into sentences with their normalized text, ids and cache keys."""
    frontend = load_synthesizer(voice).frontend
    plan = ChapterPlan(number, chapter, voice)
    synthesis = settings.synthesis()
    for p, paragraph in enumerate(chapter.paragraphs()):
        for s in frontend.sentences(paragraph, lexicon):
            plan.sentences.append(PlannedSentence(p, s.text, s.normalized, s.ids,
                                                  SentenceCache.key(s.normalized, voice, synthesis)))
    return plan


def reading_preview(store: Store, ws: Workspace, project_id: int, text: str,
                    voice_key: str | None = None) -> list[tuple[str, str]]:
    """How a paragraph will be read: (sentence as written, words as spoken) pairs."""
    if not str(text or "").strip():
        raise BadInput("Pick a paragraph (or type some text) to preview.")
    voice = get_voice(store, ws, voice_key or NarrationSettings.voice)
    frontend = load_synthesizer(voice).frontend
    lexicon = book_store.get_lexicon(store, project_id)
    return [(s.text, s.normalized) for s in frontend.sentences(text, lexicon)]


# --------------------------------------------------------------------------- synthesis

class SentenceSynth:
    """Synthesizes planned sentences into the cache, back-checking them when asked."""

    def __init__(self, cache: SentenceCache, settings: NarrationSettings,
                 checker: BackChecker | None):
        self.cache, self.settings, self.checker = cache, settings, checker
        self.synthesized = 0
        self.flagged = 0
        self.compute_s = 0.0
        self.audio_s = 0.0

    def _run(self, voice: TtsVoice, sentences: list[PlannedSentence], noise: tuple | None = None,
             should_cancel=lambda: False) -> list[np.ndarray]:
        synth = load_synthesizer(voice)
        s = self.settings
        noise_scale, noise_w = noise or (s.noise_scale, s.noise_w)
        t0 = time.perf_counter()
        out = synth.synthesize_batch([p.ids for p in sentences], s.speaker, s.length_scale,
                                     noise_scale, noise_w, should_cancel=should_cancel)
        self.compute_s += time.perf_counter() - t0
        self.audio_s += sum(len(a) for a in out) / synth.sample_rate
        return out

    def _check(self, voice: TtsVoice, sentence: PlannedSentence, audio: np.ndarray,
               sr: int) -> tuple[np.ndarray, dict]:
        """Back-check one sentence; retry with other noise; flag it if it still fails."""
        wer, errors, heard = self.checker.score(audio, sr, sentence.normalized)
        tries = iter(RETRY_NOISE)
        while wer > self.settings.max_wer and errors >= MIN_WRONG_WORDS:
            noise = next(tries, None)
            if noise is None:
                self.flagged += 1
                return audio, {"wer": wer, "heard": heard, "flagged": True}
            audio = self._run(voice, [sentence], noise)[0]
            wer, errors, heard = self.checker.score(audio, sr, sentence.normalized)
        return audio, {"wer": wer, "heard": heard, "flagged": False}

    def synthesize(self, voice: TtsVoice, sentences: list[PlannedSentence], should_cancel) -> None:
        """Synthesize ``sentences`` (none of them cached) into the cache."""
        sr = load_synthesizer(voice).sample_rate
        audios = self._run(voice, sentences, should_cancel=should_cancel)
        check = self.checker is not None and self.checker.usable
        for sentence, audio in zip(sentences, audios):
            meta = {"text": sentence.normalized}
            if check:
                audio, result = self._check(voice, sentence, audio, sr)
                meta.update(result)
            self.cache.save(sentence.key, audio, sr, meta)
            self.synthesized += 1

    @property
    def rtf(self) -> float:
        """Synthesis seconds per second of audio so far."""
        return self.compute_s / self.audio_s if self.audio_s else 0.0


def sentence_status(meta: dict) -> str:
    """ok / flagged / accepted / unchecked, from a sentence's cache record."""
    if meta.get("accepted"):
        return "accepted"
    if meta.get("flagged"):
        return "flagged"
    return "ok" if "wer" in meta else "unchecked"


def _store_sentences(store: Store, cache: SentenceCache, plan: ChapterPlan) -> None:
    rows = []
    for n, s in enumerate(plan.sentences):
        meta = cache.meta(s.key)
        rows.append({"chapter_id": plan.chapter.id, "position": n, "paragraph": s.paragraph,
                     "text": s.text, "normalized": s.normalized, "cache_key": s.key,
                     "status": sentence_status(meta), "wer": meta.get("wer"),
                     "heard": meta.get("heard")})
    with store.db.conn:
        store.db.execute("DELETE FROM sentences WHERE chapter_id = ?", [plan.chapter.id])
        store.db["sentences"].insert_all(rows)


# --------------------------------------------------------------------------- chapters

def assemble(cache: SentenceCache, plan: ChapterPlan, settings: NarrationSettings) -> tuple[np.ndarray, int]:
    """The chapter's sentences end to end with sentence and paragraph pauses."""
    pieces, sr = [], None
    for n, s in enumerate(plan.sentences):
        audio, sr = cache.load(s.key)
        pieces.append(audio)
        last = n == len(plan.sentences) - 1
        if not last:
            new_paragraph = plan.sentences[n + 1].paragraph != s.paragraph
            pause = settings.paragraph_pause_s if new_paragraph else settings.sentence_pause_s
            pieces.append(np.zeros(int(round(pause * sr)), np.float32))
    return np.concatenate(pieces), sr


def _audio_key(plan: ChapterPlan, settings: NarrationSettings) -> str:
    blob = dumps({"sentences": [(s.key, s.paragraph) for s in plan.sentences],
                  "pauses": [settings.sentence_pause_s, settings.paragraph_pause_s,
                             settings.chapter_pause_s],
                  "master": settings.master_config().to_dict()})
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def master_chapter_file(store: Store, ws: Workspace, project: Project, cache: SentenceCache,
                        plan: ChapterPlan, settings: NarrationSettings) -> dict:
    """Assemble and master a chapter into its WAV unless it is unchanged; returns its report."""
    key = _audio_key(plan, settings)
    chapter = plan.chapter
    target = narration_dir(ws, project) / "chapters" / f"{chapter.id}.wav"
    if chapter.audio_key == key and target.is_file():
        return chapter.report
    audio, sr = assemble(cache, plan, settings)
    mastered, report = mastering.master_chapter(audio, sr, settings.master_config())
    with atomic_path(target) as tmp:
        sf.write(tmp, mastered, sr, subtype="PCM_16", format="WAV")
    store.db["chapters"].update(chapter.id, {"audio_path": ws.relative(target), "audio_key": key,
                                             "report": dumps(report.to_dict())})
    return report.to_dict()


# --------------------------------------------------------------------------- export

def export_dir(ws: Workspace, project: Project, book: BookRecord) -> Path:
    """Where a book's finished files go."""
    return ws.project_dir(project.slug) / "exports" / f"book-{book.id}-{slugify(book.title)}"


def _cover(ws: Workspace, book: BookRecord) -> tuple[bytes, str] | None:
    if not book.cover_path or (book.cover_mime or "").lower() not in encode._COVER_EXT:
        return None  # ffmpeg attaches JPEG or PNG only; other covers are left out
    path = ws.resolve(book.cover_path)
    return (path.read_bytes(), book.cover_mime) if path.is_file() else None


def export_book(ws: Workspace, project: Project, book: BookRecord, chapters: list[ChapterRecord],
                settings: NarrationSettings, narrator: str, progress, should_cancel) -> dict:
    """Encode chapter files and/or the M4B from the mastered chapter WAVs."""
    folder = export_dir(ws, project, book)
    if folder.exists():
        shutil.rmtree(folder)  # renamed or dropped chapters must not leave stale files
    items = [encode.ChapterAudio(c.title, ws.resolve(c.audio_path)) for c in chapters]
    tags = encode.Tags(book.title, author=book.author, narrator=narrator,
                       comment="Narrated with a synthetic voice.")
    cover = _cover(ws, book)
    out: dict = {"files": [], "m4b": None}
    if settings.chapter_format != "none":
        paths = encode.export_chapter_files(items, folder, settings.chapter_format, tags, cover,
                                            lambda f, m: progress(0.5 * f, m), should_cancel)
        out["files"] = [ws.relative(p) for p in paths]
    if settings.make_m4b:
        m4b = folder / f"{encode.sanitize_filename(book.title) or 'Audiobook'}.m4b"
        marks = encode.build_m4b(items, m4b, tags, cover, progress=lambda f, m: progress(0.5 + 0.5 * f, m),
                                 should_cancel=should_cancel)
        out["m4b"], out["marks"] = ws.relative(m4b), marks
    return out


# --------------------------------------------------------------------------- the job

class Narration:
    """One run of the narration job: plan, synthesize, master, export."""

    #: Share of the progress bar given to synthesis; mastering and encoding share the rest.
    SYNTH_SHARE = 0.85

    def __init__(self, ctx: JobContext):
        self.ctx = ctx
        self.store, self.ws = ctx.store, ctx.workspace
        self.book = book_store.get_book(self.store, ctx.params["book_id"])
        self.project = get_project(self.store, self.book.project_id)
        self.settings = NarrationSettings.from_dict(ctx.params.get("settings")).validate()
        self.cache = project_cache(self.ws, self.project)
        self.t0 = time.monotonic()

    def plans(self) -> list[ChapterPlan]:
        """Every included chapter planned (sentences, voices, keys)."""
        chapters = [c for c in book_store.list_chapters(self.store, self.book.id) if c.included]
        if not chapters:
            raise BadInput("No chapter is included; include at least one to narrate.")
        lexicon = book_store.get_lexicon(self.store, self.project.id)
        plans = []
        for n, chapter in enumerate(chapters, start=1):
            voice = get_voice(self.store, self.ws, chapter.voice or self.settings.voice)
            plans.append(plan_chapter(n, chapter, voice, lexicon, self.settings))
            if not plans[-1].sentences:
                raise BadInput(f"Chapter '{chapter.title}' has nothing to say; exclude it.")
        check_language(self.book, chapters, plans[0].voice)
        return plans

    def _message(self, plan: ChapterPlan, total: int, sentence: int, done_chars: int,
                 todo_chars: int, synth: SentenceSynth) -> str:
        elapsed = time.monotonic() - self.t0
        rate = elapsed / done_chars if done_chars else None
        eta = human_duration(rate * (todo_chars - done_chars)) if rate else "…"
        return (f"Chapter {plan.number}/{total} '{plan.chapter.title}': sentence {sentence}/"
                f"{len(plan.sentences)} · elapsed {human_duration(elapsed)} · ETA {eta} · "
                f"RTF {synth.rtf:.2f}")

    def synthesize(self, plans: list[ChapterPlan], synth: SentenceSynth) -> int:
        """Synthesize every sentence missing from the cache; returns how many were cached."""
        todo = [[s for s in p.sentences if not self.cache.has(s.key)] for p in plans]
        todo_chars = sum(len(s.normalized) for t in todo for s in t) or 1
        done_chars, cached = 0, sum(len(p.sentences) for p in plans) - sum(map(len, todo))
        for plan, missing in zip(plans, todo):
            for start in range(0, len(missing), SYNTH_BATCH):
                self.ctx.check_cancel()
                batch = missing[start:start + SYNTH_BATCH]
                synth.synthesize(plan.voice, batch, self.ctx.should_cancel)
                done_chars += sum(len(s.normalized) for s in batch)
                position = plan.sentences.index(batch[-1]) + 1
                self.ctx.progress(self.SYNTH_SHARE * done_chars / todo_chars,
                                  self._message(plan, len(plans), position, done_chars,
                                                todo_chars, synth))
                self.ctx.metric(synth.synthesized, {"narrate/rtf": synth.rtf})
            _store_sentences(self.store, self.cache, plan)
            self.ctx.save_state(chapters_synthesized=plan.number)
        return cached

    def master(self, plans: list[ChapterPlan]) -> list[dict]:
        """Master every chapter; returns the reports in order."""
        reports = []
        for plan in plans:
            self.ctx.check_cancel()
            self.ctx.progress(self.SYNTH_SHARE + 0.05 * (plan.number - 1) / len(plans),
                              f"Mastering chapter {plan.number}/{len(plans)} '{plan.chapter.title}'")
            report = master_chapter_file(self.store, self.ws, self.project, self.cache, plan,
                                         self.settings)
            reports.append({"chapter": plan.chapter.title, **report})
        return reports

    def export(self, plans: list[ChapterPlan]) -> dict:
        """Encode the finished files."""
        chapters = [book_store.get_chapter(self.store, p.chapter.id) for p in plans]
        base = self.SYNTH_SHARE + 0.05

        def progress(fraction: float, message: str) -> None:
            self.ctx.progress(base + (1 - base) * fraction, message)

        return export_book(self.ws, self.project, self.book, chapters, self.settings,
                           plans[0].voice.name, progress, self.ctx.should_cancel)

    def run(self) -> dict:
        """The whole job; returns its result."""
        self.ctx.progress(0.0, f"Preparing the text of '{self.book.title}'")
        plans = self.plans()
        checker = BackChecker(plans[0].voice.language) if self.settings.back_check else None
        synth = SentenceSynth(self.cache, self.settings, checker)
        cached = self.synthesize(plans, synth)
        reports = self.master(plans)
        files = self.export(plans)
        flagged = self.store.one(
            "SELECT COUNT(*) AS n FROM sentences s JOIN chapters c ON c.id = s.chapter_id "
            "WHERE c.book_id = ? AND s.status = 'flagged'", [self.book.id])["n"]
        missed = sum(1 for r in reports if r.get("problems"))
        summary = (f"Narrated {len(plans)} chapters of '{self.book.title}': {synth.synthesized} "
                   f"sentences synthesized, {cached} from cache"
                   + (f", {flagged} flagged for review" if flagged else "")
                   + (f"; {missed} chapters miss an ACX norm" if missed else "; all chapters meet ACX norms"))
        return {"summary": summary, "book_id": self.book.id, "synthesized": synth.synthesized,
                "cached": cached, "flagged": flagged, "rtf": round(synth.rtf, 4),
                "audio_s": round(synth.audio_s, 2), "elapsed_s": round(time.monotonic() - self.t0, 2),
                "reports": reports, **files}


def run_narration(ctx: JobContext) -> dict:
    """Job entry point."""
    return Narration(ctx).run()


register(JobKind(KIND, run_narration, "Narrate a book", heavy=True, resumable=True))


# --------------------------------------------------------------------------- entry points

def start_narration(store: Store, ws: Workspace, book_id: int,
                    settings: NarrationSettings | None = None) -> Job:
    """Check the choices, remember them with the book and queue the narration job."""
    book = book_store.get_book(store, book_id)
    settings = (settings or book_settings(store, book_id)).validate()
    voice = get_voice(store, ws, settings.voice)
    chapters = [c for c in book_store.list_chapters(store, book.id) if c.included]
    if not chapters:
        raise BadInput("No chapter is included; include at least one to narrate.")
    check_language(book, chapters, voice)
    active = store.one("SELECT id FROM jobs WHERE kind = ? AND status IN ('queued','running') "
                       "AND json_extract(params, '$.book_id') = ?", [KIND, book.id])
    if active:
        raise StudioError(f"'{book.title}' is already being narrated (job #{active['id']}).")
    save_settings(store, book.id, settings)
    return submit(store, KIND, {"book_id": book.id, "settings": settings.to_dict()},
                  project_id=book.project_id, title=f"Narrate '{book.title}'")


def preview_paragraph(store: Store, ws: Workspace, book_id: int, text: str,
                      settings: NarrationSettings | None = None) -> tuple[Path, list[tuple[str, str]]]:
    """Narrate a paragraph now (through the cache); returns (WAV path, reading preview)."""
    book = book_store.get_book(store, book_id)
    project = get_project(store, book.project_id)
    settings = (settings or book_settings(store, book_id)).validate()
    if not str(text or "").strip():
        raise BadInput("Pick a paragraph (or type some text) to preview.")
    voice = get_voice(store, ws, settings.voice)
    lexicon = book_store.get_lexicon(store, project.id)
    chapter = ChapterRecord(0, book.id, 0, "Preview", " ".join(text.split()), True, 0.0)
    plan = plan_chapter(1, chapter, voice, lexicon, settings)
    if not plan.sentences:
        raise BadInput("This text has nothing to pronounce.")
    cache = project_cache(ws, project)
    missing = [s for s in plan.sentences if not cache.has(s.key)]
    if missing:
        SentenceSynth(cache, settings, None).synthesize(voice, missing, lambda: False)
    audio, sr = assemble(cache, plan, settings)
    digest = hashlib.sha256("".join(s.key for s in plan.sentences).encode()).hexdigest()[:16]
    target = narration_dir(ws, project) / "previews" / f"preview-{digest}.wav"
    with atomic_path(target) as tmp:
        sf.write(tmp, audio, sr, subtype="PCM_16", format="WAV")
    return target, [(s.text, s.normalized) for s in plan.sentences]


def flagged_sentences(store: Store, book_id: int) -> list[dict]:
    """Sentences the back-check flagged, with their chapter, for the user to review."""
    return store.all(
        "SELECT s.id, s.text, s.heard, s.wer, s.cache_key, c.title AS chapter, c.position "
        "FROM sentences s JOIN chapters c ON c.id = s.chapter_id "
        "WHERE c.book_id = ? AND s.status = 'flagged' ORDER BY c.position, s.position", [book_id])


def sentence_audio(store: Store, ws: Workspace, sentence_id: int) -> Path:
    """The cached WAV of a planned sentence."""
    row = store.one("SELECT s.cache_key, b.project_id FROM sentences s JOIN chapters c ON "
                    "c.id = s.chapter_id JOIN books b ON b.id = c.book_id WHERE s.id = ?",
                    [int(sentence_id)])
    if row is None:
        raise BadInput(f"No sentence #{sentence_id}.")
    path = project_cache(ws, get_project(store, row["project_id"])).path(row["cache_key"])
    if not path.is_file():
        raise BadInput("This sentence has not been narrated yet.")
    return path


def accept_sentence(store: Store, ws: Workspace, sentence_id: int) -> None:
    """Keep a flagged sentence as it is (remembered in its cache record)."""
    path = sentence_audio(store, ws, sentence_id)
    cache = SentenceCache(path.parent.parent)
    key = path.stem
    cache.save_meta(key, {**cache.meta(key), "accepted": True})
    store.db["sentences"].update(int(sentence_id), {"status": "accepted"})


def latest_result(store: Store, book_id: int) -> dict:
    """The result of the book's last finished narration ({} when none)."""
    row = store.one("SELECT result FROM jobs WHERE kind = ? AND status = 'done' AND "
                    "json_extract(params, '$.book_id') = ? ORDER BY id DESC LIMIT 1",
                    [KIND, int(book_id)])
    return loads(row["result"], {}) if row else {}


def report_rows(store: Store, book_id: int) -> list[list]:
    """Per-chapter level report rows, with ✔ / ✘ and the missed norms."""
    rows = []
    for n, c in enumerate(book_store.list_chapters(store, book_id), start=1):
        r = c.report
        if not c.included or not r:
            continue
        mark = "✔ meets ACX" if not r.get("problems") else "✘ " + "; ".join(r["problems"])
        rows.append([n, c.title, human_duration(r.get("duration_s")), r.get("rms_db"),
                     r.get("true_peak_db"), r.get("noise_floor_db"), r.get("head_room_tone_s"),
                     r.get("tail_room_tone_s"), mark])
    return rows


def settings_for_format(fmt: str, voice: str, back_check: bool = True) -> NarrationSettings:
    """Settings for the CLI's --format: m4b alone, or chapter files alone."""
    if fmt not in ("m4b", "mp3", "wav", "flac"):
        raise BadInput("--format must be m4b, mp3, wav or flac.")
    return NarrationSettings(voice=voice, back_check=back_check,
                             chapter_format="none" if fmt == "m4b" else fmt,
                             make_m4b=fmt == "m4b")


def copy_outputs(ws: Workspace, result: dict, out_dir: Path) -> list[Path]:
    """Copy a finished narration's files (chapter files, M4B) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for stored in list(result.get("files") or []) + ([result["m4b"]] if result.get("m4b") else []):
        source = ws.resolve(stored)
        target = out_dir / source.name
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        copied.append(target)
    return copied
