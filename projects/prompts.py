"""Recording studio: read a prompt list aloud, one take per prompt, into a speaker's clips.

A session pairs a prompt list with a speaker. Each saved take is trimmed of
leading and trailing silence (silero VAD), measured (level, clipping), given a
speaker embedding when the encoder is available, and stored as an ordinary
clip whose transcript is the prompt. Sessions live in SQLite, so recording
resumes at the first prompt without a take, after a reload or a restart.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engines import audio as audio_io
from engines import vad
from engines.quality import QualityConfig, assess
from projects import review
from projects.errors import BadInput, NotFound, StudioError
from projects.records import Clip, Project
from projects.store import Store, dumps, loads, now
from projects.workspace import Workspace, check_display_name

log = logging.getLogger("voice_studio.prompts")

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "assets" / "prompts"
#: Seconds of room tone kept before and after the speech of a take.
TAKE_PAD_S = 0.15
#: A take quieter than this integrated loudness gets a "too quiet" warning (LUFS).
TAKE_MIN_LUFS = -30.0
#: More samples than this fraction at full scale gets a "clipped" warning.
TAKE_MAX_CLIPPED = 0.0005
#: Longest prompt accepted from an uploaded file, in characters.
MAX_PROMPT_CHARS = 400
#: Rate of the VAD and the speaker encoder, in Hz.
ANALYSIS_RATE = 16000

_WARNINGS = {
    "too_quiet": "The take is quiet: move closer to the microphone or raise its gain.",
    "clipped": "The take is clipped (too loud): lower the microphone gain and record again.",
}


@dataclass(frozen=True)
class Session:
    """A prompt list being recorded by one speaker."""

    id: int
    project_id: int
    speaker_id: int | None
    name: str
    prompts: list[str]
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class SessionProgress:
    """How far a session has come."""

    done: int
    total: int
    minutes: float
    next_index: int | None
    """First prompt without a take, or None when every prompt is recorded."""


@dataclass
class TakeResult:
    """A saved take: its clip and any warnings to show."""

    clip: Clip
    warnings: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ prompt lists

def shipped_sets() -> dict[str, Path]:
    """The prompt lists shipped in ``assets/prompts`` by name (file stem)."""
    return {p.stem: p for p in sorted(PROMPTS_DIR.glob("*.txt"))}


def parse_prompts(text: str) -> list[str]:
    """One prompt per line; blank lines and ``#`` comments are skipped."""
    prompts = []
    for line in text.splitlines():
        line = " ".join(line.split())
        if not line or line.startswith("#"):
            continue
        if len(line) > MAX_PROMPT_CHARS:
            raise BadInput(f"A prompt is longer than {MAX_PROMPT_CHARS} characters: "
                           f"'{line[:40]}...'. Use one sentence per line.")
        prompts.append(line)
    if not prompts:
        raise BadInput("The prompt file holds no prompts (one prompt per line).")
    return prompts


def load_prompt_file(path: Path | str) -> list[str]:
    """Prompts from a UTF-8 text file."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise BadInput(f"{Path(path).name}: not UTF-8 text.") from None
    return parse_prompts(text)


# ---------------------------------------------------------------------- sessions

def _session(row: dict | None) -> Session:
    if row is None:
        raise NotFound("No such recording session.")
    return Session(row["id"], row["project_id"], row["speaker_id"], row["name"],
                   loads(row["prompts"], []), row["created_at"], row["updated_at"])


def get_session(store: Store, session_id: int) -> Session:
    """A session by id."""
    return _session(store.one("SELECT * FROM prompt_sessions WHERE id = ?", [int(session_id)]))


def list_sessions(store: Store, project_id: int) -> list[Session]:
    """The project's sessions, most recently used first."""
    rows = store.all("SELECT * FROM prompt_sessions WHERE project_id = ? "
                     "ORDER BY updated_at DESC, id DESC", [project_id])
    return [_session(r) for r in rows]


def _speaker_for(store: Store, project: Project, speaker: str) -> int:
    name = check_display_name(speaker, "Speaker name")
    try:
        return review.find_speaker(store, project.id, name)["id"]
    except NotFound:
        return review.create_speaker(store, project.id, name)


def start_session(store: Store, project: Project, speaker: str, prompts: list[str],
                  name: str) -> Session:
    """Open a session: the speaker (by name) is created when missing.

    The same speaker and prompt-list name resume the existing session.
    """
    if not prompts:
        raise BadInput("Choose a prompt list first.")
    speaker_id = _speaker_for(store, project, speaker)
    row = store.one("SELECT * FROM prompt_sessions WHERE project_id = ? AND speaker_id = ? "
                    "AND name = ?", [project.id, speaker_id, name])
    if row is not None:
        return _session(row)
    new_id = store.db["prompt_sessions"].insert({
        "project_id": project.id, "speaker_id": speaker_id, "name": name,
        "prompts": dumps(list(prompts)), "created_at": now(), "updated_at": now()}).last_pk
    return get_session(store, new_id)


def takes(store: Store, session_id: int) -> dict[int, Clip]:
    """The saved take of each recorded prompt, by prompt index."""
    rows = store.all("SELECT t.prompt_index, c.* FROM prompt_takes t JOIN clips c "
                     "ON c.id = t.clip_id WHERE t.session_id = ?", [session_id])
    return {r.pop("prompt_index"): review.get_clip(store, r["id"]) for r in rows}


def session_progress(store: Store, session_id: int) -> SessionProgress:
    """Prompts done of total, minutes recorded, and where to go on."""
    session = get_session(store, session_id)
    done = takes(store, session_id)
    todo = [i for i in range(len(session.prompts)) if i not in done]
    return SessionProgress(len(done), len(session.prompts),
                           sum(c.duration_s for c in done.values()) / 60.0,
                           todo[0] if todo else None)


def next_prompt(store: Store, session_id: int, after: int | None = None) -> int | None:
    """The first unrecorded prompt after ``after`` (wrapping), or None when all are done."""
    session = get_session(store, session_id)
    done = takes(store, session_id)
    count = len(session.prompts)
    start = 0 if after is None else after + 1
    for step in range(count):
        index = (start + step) % count
        if index not in done:
            return index
    return None


# ------------------------------------------------------------------------ takes

def _speech_span(audio16: np.ndarray) -> tuple[float, float]:
    regions = vad.detect_speech(audio16, ANALYSIS_RATE)
    if not regions:
        raise BadInput("No speech heard in this take: check the microphone and record again.")
    total = len(audio16) / ANALYSIS_RATE
    return max(0.0, regions[0][0] - TAKE_PAD_S), min(total, regions[-1][1] + TAKE_PAD_S)


def prepare_take(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, dict, list[str]]:
    """Trim a take to its speech and measure it: ``(audio, quality, warnings)``."""
    audio = np.asarray(audio, np.float32)
    if audio.size < sample_rate * 0.2:
        raise BadInput("The take is empty or too short; record again.")
    audio16 = audio_io.resample(audio, sample_rate, ANALYSIS_RATE)
    start, end = _speech_span(audio16)
    kept = audio[int(start * sample_rate):int(end * sample_rate)]
    config = QualityConfig(min_lufs=TAKE_MIN_LUFS, max_clipped_fraction=TAKE_MAX_CLIPPED)
    quality = assess(kept, sample_rate, None, config)
    quality.flags = [f for f in quality.flags if f != "no_words"]
    warnings = [_WARNINGS[f] for f in quality.flags if f in _WARNINGS]
    return kept, quality.to_dict(), warnings


def _embedding(audio: np.ndarray, sample_rate: int) -> bytes | None:
    try:
        from engines.speaker import embed_clips
        vec = embed_clips([audio_io.resample(audio, sample_rate, ANALYSIS_RATE)], ANALYSIS_RATE)[0]
    except (StudioError, ImportError, OSError) as err:
        log.warning("no speaker embedding for a take: %s", err)
        return None
    return np.asarray(vec, "<f4").tobytes()


def _take_path(ws: Workspace, project: Project, session: Session, index: int) -> Path:
    folder = ws.project_dir(project.slug) / "clips" / "prompts"
    n = 1
    while (folder / f"s{session.id}-{index + 1:04d}-{n}.wav").exists():
        n += 1
    return folder / f"s{session.id}-{index + 1:04d}-{n}.wav"


def save_take(store: Store, ws: Workspace, project: Project, session_id: int, index: int,
              recording: Path | str, embed: bool = True) -> TakeResult:
    """Store a microphone recording (any format ffmpeg reads) as prompt ``index``'s take.

    Re-recording a prompt replaces its earlier take.
    """
    session = get_session(store, session_id)
    if not 0 <= int(index) < len(session.prompts):
        raise BadInput("That prompt is not in this session.")
    if session.speaker_id is None:
        raise BadInput("This session's speaker was deleted; start a new session.")
    rate = project.sample_rate
    kept, quality, warnings = prepare_take(audio_io.load(recording, rate), rate)
    path = _take_path(ws, project, session, int(index))
    audio_io.write_wav(path, kept, rate)
    old = store.one("SELECT clip_id FROM prompt_takes WHERE session_id = ? AND prompt_index = ?",
                    [session.id, int(index)])
    clip_id = store.db["clips"].insert({
        "project_id": project.id, "source_id": None, "speaker_id": session.speaker_id,
        "path": ws.relative(path), "duration_s": len(kept) / rate,
        "text": session.prompts[int(index)], "words": "[]", "quality": dumps(quality),
        "flags": dumps(quality["flags"]), "review": "unreviewed", "created_at": now(),
        "embedding": _embedding(kept, rate) if embed else None}).last_pk
    with store.db.conn:
        store.db.execute("INSERT OR REPLACE INTO prompt_takes (session_id, prompt_index, "
                         "clip_id, created_at) VALUES (?, ?, ?, ?)",
                         [session.id, int(index), clip_id, now()])
        store.db.execute("UPDATE prompt_sessions SET updated_at = ? WHERE id = ?",
                         [now(), session.id])
        if old:
            old_path = store.one("SELECT path FROM clips WHERE id = ?", [old["clip_id"]])
            store.db.execute("DELETE FROM clips WHERE id = ?", [old["clip_id"]])
    if old and old_path:
        ws.resolve(old_path["path"]).unlink(missing_ok=True)
    return TakeResult(review.get_clip(store, clip_id), warnings)
