"""Review: fix what clustering and transcription got wrong, one undoable edit at a time.

Cluster actions (name, merge, split, move clips, mark for training) and clip
actions (review state, transcript, trim, split at a word, bulk accept/reject)
all go through :class:`_Edit`: it snapshots the rows and columns an action is
about to change, applies the change in one transaction, and stores the
snapshot in the ``edits`` table so :func:`undo` can put everything back.
Edits that cut audio write new files and never touch the old ones, so an
undo only has to restore the row's path.
"""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines import audio as audio_io
from engines import cluster as clustering
from engines.quality import QualityConfig
from projects.errors import BadInput, Conflict, NotFound
from projects.records import Clip, from_row
from projects.store import Store, dumps, loads, now
from projects.workspace import Workspace, check_display_name

#: Review states a clip can be in.
REVIEW_STATES = ("unreviewed", "accepted", "rejected")
#: Undo levels kept per project (older edits are forgotten).
UNDO_LEVELS = 50
#: A split re-clusters at the default threshold plus this much (stricter).
SPLIT_STRICTER_BY = 0.10
#: Shortest clip a trim or split may leave, in seconds.
MIN_CLIP_S = 0.2
#: Clip filters and sort orders offered by :func:`list_clips`.
CLIP_FILTERS = ("all", "unreviewed", "flagged", "accepted", "rejected")
CLIP_SORTS = ("order", "shortest", "longest", "lowest confidence")
#: Pseudo speaker id for clips no speaker owns.
UNASSIGNED = 0

_CLIP_COLUMNS = ("project_id", "source_id", "speaker_id", "path", "start_s", "end_s",
                 "duration_s", "text", "words", "quality", "flags", "embedding", "review",
                 "created_at")
_SPEAKER_COLUMNS = ("project_id", "name", "cluster_label", "use_for_training", "origin",
                    "created_at")


@dataclass(frozen=True)
class SpeakerSummary:
    """One row of the cluster overview."""

    id: int
    name: str
    origin: str
    use_for_training: bool
    clips: int
    accepted: int
    minutes: float
    mean_snr_db: float | None
    mean_confidence: float | None
    flagged: int
    representative_clip_id: int | None
    """The clip nearest to the speaker's mean embedding (playable sample)."""


@dataclass(frozen=True)
class EditInfo:
    """An undoable edit as listed in the history."""

    id: int
    action: str
    created_at: float


# --------------------------------------------------------------------- undo log

def _encode(value):
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()}
    return value


def _decode(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    return value


class _Edit:
    """Snapshot-then-change for one undoable action, inside one transaction.

    Call :meth:`keep_clips` / :meth:`keep_speakers` before changing rows,
    :meth:`created` after inserting rows or writing files.
    """

    def __init__(self, store: Store, project_id: int, action: str):
        self.store, self.project_id, self.action = store, project_id, action
        self.before: dict[str, dict[int, dict]] = {"clips": {}, "speakers": {}}
        self.made: dict[str, list] = {"clips": [], "speakers": [], "files": []}

    def __enter__(self) -> "_Edit":
        self.conn = self.store.db.conn
        if self.conn.in_transaction:
            self.conn.commit()
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.conn.rollback()
            return
        payload = {"before": {t: {str(k): v for k, v in rows.items()}
                              for t, rows in self.before.items()}, "made": self.made}
        self.conn.execute("INSERT INTO edits (project_id, action, payload, created_at) "
                          "VALUES (?, ?, ?, ?)",
                          [self.project_id, self.action, dumps(payload), now()])
        self.conn.execute("DELETE FROM edits WHERE project_id = ? AND id NOT IN (SELECT id "
                          "FROM edits WHERE project_id = ? ORDER BY id DESC LIMIT ?)",
                          [self.project_id, self.project_id, UNDO_LEVELS])
        self.conn.commit()

    def _keep(self, table: str, ids: list[int], columns: tuple[str, ...]) -> None:
        ids = [i for i in ids if i not in self.before[table]]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            cur = self.conn.execute(f"SELECT id, {', '.join(columns)} FROM {table} "
                                    f"WHERE id IN ({marks})", chunk)
            for row in cur.fetchall():
                self.before[table][row[0]] = {c: _encode(v) for c, v in zip(columns, row[1:])}

    def keep_clips(self, ids: list[int], columns: tuple[str, ...] = _CLIP_COLUMNS) -> None:
        """Remember ``columns`` of these clips as they are now."""
        self._keep("clips", list(ids), columns)

    def keep_speakers(self, ids: list[int]) -> None:
        """Remember these speakers' whole rows (they may be deleted)."""
        self._keep("speakers", list(ids), _SPEAKER_COLUMNS)

    def created(self, table: str, item) -> None:
        """Note a row id (``clips``/``speakers``) or a file (``files``) this edit made."""
        self.made[table].append(item)

    def execute(self, sql: str, params=()) -> int:
        """Run a statement in the edit's transaction; returns lastrowid."""
        return self.conn.execute(sql, list(params)).lastrowid


def _restore(conn, table: str, rows: dict) -> None:
    for key, cols in rows.items():
        cols = {c: _decode(v) for c, v in cols.items()}
        exists = conn.execute(f"SELECT 1 FROM {table} WHERE id = ?", [int(key)]).fetchone()
        if exists:
            sets = ", ".join(f"{c} = ?" for c in cols)
            conn.execute(f"UPDATE {table} SET {sets} WHERE id = ?", [*cols.values(), int(key)])
        else:
            names = ["id", *cols]
            conn.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES "
                         f"({', '.join('?' * len(names))})", [int(key), *cols.values()])


def undo(store: Store, ws: Workspace, project_id: int) -> str | None:
    """Revert the project's latest edit; returns its action name, or None if none is left."""
    row = store.one("SELECT * FROM edits WHERE project_id = ? ORDER BY id DESC LIMIT 1",
                    [project_id])
    if row is None:
        return None
    payload = loads(row["payload"], {})
    conn = store.db.conn
    if conn.in_transaction:
        conn.commit()
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Speakers first: restored clips may point at a speaker the edit deleted.
        _restore(conn, "speakers", payload["before"]["speakers"])
        _restore(conn, "clips", payload["before"]["clips"])
        for clip_id in payload["made"]["clips"]:
            conn.execute("DELETE FROM clips WHERE id = ?", [clip_id])
        for speaker_id in payload["made"]["speakers"]:
            conn.execute("DELETE FROM speakers WHERE id = ?", [speaker_id])
        conn.execute("DELETE FROM edits WHERE id = ?", [row["id"]])
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    _remove_unused_files(store, ws, payload["made"]["files"])
    return row["action"]


def _remove_unused_files(store: Store, ws: Workspace, stored_paths: list[str]) -> None:
    for stored in stored_paths:
        if store.one("SELECT 1 FROM clips WHERE path = ?", [stored]) is None:
            ws.resolve(stored).unlink(missing_ok=True)


def history(store: Store, project_id: int, limit: int = 10) -> list[EditInfo]:
    """The latest undoable edits, newest first."""
    rows = store.all("SELECT id, action, created_at FROM edits WHERE project_id = ? "
                     "ORDER BY id DESC LIMIT ?", [project_id, limit])
    return [EditInfo(**r) for r in rows]


# --------------------------------------------------------------------- reading

def get_clip(store: Store, clip_id: int) -> Clip:
    """A clip by id; NotFound otherwise."""
    clip = from_row(Clip, store.one("SELECT * FROM clips WHERE id = ?", [int(clip_id)]))
    if clip is None:
        raise NotFound(f"No clip #{clip_id}.")
    return clip


def get_speaker(store: Store, speaker_id: int) -> dict:
    """A speaker row as a dict; NotFound otherwise."""
    row = store.one("SELECT * FROM speakers WHERE id = ?", [int(speaker_id)])
    if row is None:
        raise NotFound(f"No speaker #{speaker_id}.")
    return row


def find_speaker(store: Store, project_id: int, name_or_id: str | int) -> dict:
    """A speaker of the project by id or name (case-insensitive)."""
    text = str(name_or_id).strip()
    row = store.one("SELECT * FROM speakers WHERE project_id = ? AND name = ? COLLATE NOCASE",
                    [project_id, text])
    if row is None and text.isdigit():
        row = store.one("SELECT * FROM speakers WHERE project_id = ? AND id = ?",
                        [project_id, int(text)])
    if row is None:
        raise NotFound(f"No speaker called '{name_or_id}' in this project.")
    return row


def list_speakers(store: Store, project_id: int) -> list[dict]:
    """The project's speakers (rows as dicts), by id."""
    return store.all("SELECT * FROM speakers WHERE project_id = ? ORDER BY id", [project_id])


def _speaker_clause(speaker_id: int | None) -> tuple[str, list]:
    if speaker_id is None:
        return "", []
    if int(speaker_id) == UNASSIGNED:
        return " AND speaker_id IS NULL", []
    return " AND speaker_id = ?", [int(speaker_id)]


def _clips(store: Store, project_id: int, speaker_id: int | None = None) -> list[Clip]:
    where, params = _speaker_clause(speaker_id)
    rows = store.all(f"SELECT * FROM clips WHERE project_id = ?{where} ORDER BY id",
                     [project_id, *params])
    return [from_row(Clip, r) for r in rows]


def confidence_of(clip: Clip) -> float:
    """Whisper's mean word probability for a clip (1.0 when unknown)."""
    value = clip.quality.get("confidence")
    return 1.0 if value is None else float(value)


_SORT_KEYS = {
    "order": lambda c: c.id,
    "shortest": lambda c: c.duration_s,
    "longest": lambda c: -c.duration_s,
    "lowest confidence": confidence_of,
}
_FILTERS = {
    "all": lambda c: True,
    "unreviewed": lambda c: c.review == "unreviewed",
    "flagged": lambda c: bool(c.flags),
    "accepted": lambda c: c.review == "accepted",
    "rejected": lambda c: c.review == "rejected",
}


def list_clips(store: Store, project_id: int, speaker_id: int | None = None,
               filter: str = "all", sort: str = "order") -> list[Clip]:
    """Clips of a speaker (``UNASSIGNED`` = none, None = all), filtered and sorted."""
    if filter not in _FILTERS:
        raise BadInput(f"Unknown filter '{filter}'; use one of {', '.join(CLIP_FILTERS)}.")
    if sort not in _SORT_KEYS:
        raise BadInput(f"Unknown sort '{sort}'; use one of {', '.join(CLIP_SORTS)}.")
    chosen = [c for c in _clips(store, project_id, speaker_id) if _FILTERS[filter](c)]
    return sorted(chosen, key=_SORT_KEYS[sort])


def embedding_of(clip: Clip) -> np.ndarray | None:
    """The clip's stored speaker embedding, or None."""
    if not clip.embedding:
        return None
    return np.frombuffer(clip.embedding, dtype="<f4").astype(np.float32)


def _stack(clips: list[Clip]) -> tuple[list[Clip], np.ndarray]:
    pairs = [(c, embedding_of(c)) for c in clips]
    pairs = [(c, e) for c, e in pairs if e is not None]
    if not pairs:
        return [], np.zeros((0, 0), np.float32)
    return [c for c, _ in pairs], np.stack([e for _, e in pairs])


def _mean_of(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _representative(clips: list[Clip]) -> int | None:
    with_emb, matrix = _stack(clips)
    if not with_emb:
        return clips[0].id if clips else None
    centre = matrix.mean(axis=0)
    return with_emb[int(np.argmax(matrix @ centre))].id


def _summary(speaker: dict, clips: list[Clip]) -> SpeakerSummary:
    return SpeakerSummary(
        id=speaker["id"], name=speaker["name"], origin=speaker.get("origin", "cluster"),
        use_for_training=bool(speaker.get("use_for_training")), clips=len(clips),
        accepted=sum(c.review == "accepted" for c in clips),
        minutes=sum(c.duration_s for c in clips) / 60.0,
        mean_snr_db=_mean_of([c.quality.get("snr_db") for c in clips]),
        mean_confidence=_mean_of([c.quality.get("confidence") for c in clips]),
        flagged=sum(bool(c.flags) for c in clips),
        representative_clip_id=_representative(clips))


def overview(store: Store, project_id: int) -> list[SpeakerSummary]:
    """One summary per speaker, plus an "Unassigned" row (id 0) when clips lack one."""
    out = [_summary(s, _clips(store, project_id, s["id"]))
           for s in list_speakers(store, project_id)]
    loose = _clips(store, project_id, UNASSIGNED)
    if loose:
        out.append(_summary({"id": UNASSIGNED, "name": "Unassigned", "origin": "none"}, loose))
    return out


def embedding_map(store: Store, project_id: int) -> list[dict]:
    """2-D PCA projection of every clip embedding: ``{clip_id, x, y, speaker_id, speaker}``."""
    clips, matrix = _stack(_clips(store, project_id))
    if not clips:
        return []
    centred = matrix - matrix.mean(axis=0)
    if len(clips) >= 2:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        coords = centred @ vt[:2].T
        if coords.shape[1] < 2:
            coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    else:
        coords = np.zeros((1, 2))
    names = {s["id"]: s["name"] for s in list_speakers(store, project_id)}
    return [{"clip_id": c.id, "x": float(x), "y": float(y), "speaker_id": c.speaker_id or 0,
             "speaker": names.get(c.speaker_id, "Unassigned")}
            for c, (x, y) in zip(clips, coords)]


def find_similar(store: Store, project_id: int, clip_ids: list[int],
                 limit: int = 50) -> list[tuple[Clip, float]]:
    """Clips across all sources ranked by cosine similarity to the mean of ``clip_ids``.

    The chosen clips themselves are left out of the ranking.
    """
    chosen = [embedding_of(get_clip(store, i)) for i in clip_ids]
    chosen = [e for e in chosen if e is not None]
    if not chosen:
        raise BadInput("Pick at least one clip that has a speaker embedding.")
    centre = np.mean(chosen, axis=0)
    centre /= np.linalg.norm(centre) or 1.0
    skip = {int(i) for i in clip_ids}
    clips, matrix = _stack([c for c in _clips(store, project_id) if c.id not in skip])
    if not clips:
        return []
    norms = np.linalg.norm(matrix, axis=1)
    scores = matrix @ centre / np.where(norms > 0, norms, 1.0)
    order = np.argsort(-scores)[:limit]
    return [(clips[i], float(scores[i])) for i in order]


# ------------------------------------------------------------ cluster actions

def _project_of_speaker(store: Store, speaker_id: int) -> int:
    return get_speaker(store, speaker_id)["project_id"]


def create_speaker(store: Store, project_id: int, name: str) -> int:
    """A new, empty 'user' speaker; returns its id. Names are unique per project."""
    name = check_display_name(name, "Speaker name")
    _check_free_name(store, project_id, name)
    with _Edit(store, project_id, f"create speaker {name}") as edit:
        speaker_id = edit.execute(
            "INSERT INTO speakers (project_id, name, origin, use_for_training, created_at) "
            "VALUES (?, ?, 'user', 0, ?)", [project_id, name, now()])
        edit.created("speakers", speaker_id)
    return speaker_id


def _check_free_name(store: Store, project_id: int, name: str, except_id: int = -1) -> None:
    clash = store.one("SELECT id FROM speakers WHERE project_id = ? AND name = ? COLLATE NOCASE "
                      "AND id != ?", [project_id, name, except_id])
    if clash:
        raise Conflict(f"There is already a speaker called '{name}'.")


def name_speaker(store: Store, speaker_id: int, name: str) -> None:
    """Rename a speaker; a named speaker is the user's ('user' origin), kept on re-cluster."""
    project_id = _project_of_speaker(store, speaker_id)
    name = check_display_name(name, "Speaker name")
    _check_free_name(store, project_id, name, speaker_id)
    with _Edit(store, project_id, f"name speaker {name}") as edit:
        edit.keep_speakers([speaker_id])
        edit.execute("UPDATE speakers SET name = ?, origin = 'user' WHERE id = ?",
                     [name, speaker_id])


def set_training(store: Store, speaker_id: int, use: bool) -> None:
    """Mark (or unmark) a speaker as "use for training"."""
    project_id = _project_of_speaker(store, speaker_id)
    with _Edit(store, project_id, "use for training" if use else "not for training") as edit:
        edit.keep_speakers([speaker_id])
        edit.execute("UPDATE speakers SET use_for_training = ? WHERE id = ?",
                     [int(bool(use)), speaker_id])


def merge_speakers(store: Store, target_id: int, source_ids: list[int]) -> int:
    """Move every clip of ``source_ids`` to ``target_id`` and delete those speakers.

    Returns the number of clips moved. The target becomes a 'user' speaker.
    """
    project_id = _project_of_speaker(store, target_id)
    sources = [int(s) for s in source_ids if int(s) != int(target_id)]
    if not sources:
        raise BadInput("Choose at least two speakers to merge.")
    for sid in sources:
        if _project_of_speaker(store, sid) != project_id:
            raise BadInput("Speakers to merge must belong to the same project.")
    marks = ",".join("?" * len(sources))
    moving = [r["id"] for r in store.all(f"SELECT id FROM clips WHERE speaker_id IN ({marks})",
                                         sources)]
    with _Edit(store, project_id, f"merge {len(sources) + 1} speakers") as edit:
        edit.keep_speakers([target_id, *sources])
        edit.keep_clips(moving, ("speaker_id",))
        edit.execute(f"UPDATE clips SET speaker_id = ? WHERE speaker_id IN ({marks})",
                     [target_id, *sources])
        edit.execute(f"DELETE FROM speakers WHERE id IN ({marks})", sources)
        edit.execute("UPDATE speakers SET origin = 'user' WHERE id = ?", [target_id])
    return len(moving)


def move_clips(store: Store, clip_ids: list[int], speaker_id: int) -> int:
    """Give these clips to ``speaker_id`` (``UNASSIGNED`` = no speaker); returns the count.

    Both the target and the clips' old speakers become 'user' speakers, so a
    re-cluster does not undo the user's choice.
    """
    ids = [int(i) for i in clip_ids]
    if not ids:
        raise BadInput("Choose the clips to move.")
    project_id = get_clip(store, ids[0]).project_id
    target = None if int(speaker_id) == UNASSIGNED else int(speaker_id)
    if target is not None and _project_of_speaker(store, target) != project_id:
        raise BadInput("The target speaker belongs to another project.")
    marks = ",".join("?" * len(ids))
    old = {r["speaker_id"] for r in store.all(
        f"SELECT DISTINCT speaker_id FROM clips WHERE id IN ({marks})", ids)} - {None}
    touched = sorted(old | ({target} if target else set()))
    with _Edit(store, project_id, f"move {len(ids)} clips") as edit:
        edit.keep_speakers(touched)
        edit.keep_clips(ids, ("speaker_id",))
        edit.execute(f"UPDATE clips SET speaker_id = ? WHERE id IN ({marks}) AND project_id = ?",
                     [target, *ids, project_id])
        for sid in touched:
            edit.execute("UPDATE speakers SET origin = 'user' WHERE id = ?", [sid])
    return len(ids)


def preview_split(store: Store, speaker_id: int,
                  criteria: float | None = None) -> list[list[int]]:
    """Groups of clip ids a split at ``criteria`` would make, largest first.

    Clips without an embedding stay with the first (largest) group.
    """
    speaker = get_speaker(store, speaker_id)
    criteria = default_split_criteria() if criteria is None else float(criteria)
    clips = _clips(store, speaker["project_id"], speaker_id)
    with_emb, matrix = _stack(clips)
    if len(with_emb) < 2:
        raise BadInput("A speaker needs at least two clips with embeddings to split.")
    labels = clustering.cluster(matrix, criteria)
    groups = [[c.id for c, lab in zip(with_emb, labels) if lab == label]
              for label in sorted(set(int(x) for x in labels))]
    groups.sort(key=len, reverse=True)
    have = {c.id for c in with_emb}
    missing = [c.id for c in clips if c.id not in have]
    groups[0].extend(missing)
    return groups


def default_split_criteria() -> float:
    """A threshold stricter than the build's default, for splitting one cluster."""
    return min(0.99, clustering.DEFAULT_CRITERIA + SPLIT_STRICTER_BY)


def apply_split(store: Store, speaker_id: int, groups: list[list[int]]) -> list[int]:
    """Split a speaker into ``groups`` (from :func:`preview_split`): the first stays,
    each other group becomes a new 'user' speaker. Returns every resulting speaker id."""
    speaker = get_speaker(store, speaker_id)
    if len(groups) < 2:
        raise BadInput("This threshold finds only one voice here; try a higher one.")
    project_id = speaker["project_id"]
    out = [int(speaker_id)]
    with _Edit(store, project_id, f"split {speaker['name']}") as edit:
        edit.keep_speakers([speaker_id])
        edit.keep_clips([i for g in groups[1:] for i in g], ("speaker_id",))
        edit.execute("UPDATE speakers SET origin = 'user' WHERE id = ?", [speaker_id])
        for n, group in enumerate(groups[1:], start=2):
            new_id = edit.execute(
                "INSERT INTO speakers (project_id, name, origin, use_for_training, created_at) "
                "VALUES (?, ?, 'user', 0, ?)",
                [project_id, _free_name(store, project_id, f"{speaker['name']} ({n})"), now()])
            edit.created("speakers", new_id)
            marks = ",".join("?" * len(group))
            edit.execute(f"UPDATE clips SET speaker_id = ? WHERE id IN ({marks}) "
                         "AND speaker_id = ?", [new_id, *group, speaker_id])
            out.append(new_id)
    return out


def _free_name(store: Store, project_id: int, name: str) -> str:
    candidate, n = name, 1
    while store.one("SELECT 1 FROM speakers WHERE project_id = ? AND name = ? COLLATE NOCASE",
                    [project_id, candidate]):
        n += 1
        candidate = f"{name} {n}"
    return candidate


def pull_in(store: Store, speaker_id: int, clip_ids: list[int]) -> int:
    """"Find a speaker": give the chosen similar clips to ``speaker_id`` at once."""
    return move_clips(store, clip_ids, speaker_id)


# ---------------------------------------------------------------- clip actions

def set_review(store: Store, clip_ids: list[int], state: str) -> int:
    """Set the review state of clips; returns how many changed."""
    if state not in REVIEW_STATES:
        raise BadInput(f"Review state must be one of {', '.join(REVIEW_STATES)}.")
    ids = [int(i) for i in clip_ids]
    if not ids:
        return 0
    project_id = get_clip(store, ids[0]).project_id
    marks = ",".join("?" * len(ids))
    with _Edit(store, project_id, f"{state} {len(ids)} clip(s)") as edit:
        edit.keep_clips(ids, ("review",))
        edit.execute(f"UPDATE clips SET review = ? WHERE id IN ({marks}) AND project_id = ?",
                     [state, *ids, project_id])
    return len(ids)


def set_text(store: Store, clip_id: int, text: str) -> Clip:
    """Save a corrected transcript."""
    clip = get_clip(store, clip_id)
    text = " ".join(str(text or "").split())
    if text == clip.text:
        return clip
    with _Edit(store, clip.project_id, "edit transcript") as edit:
        edit.keep_clips([clip.id], ("text",))
        edit.execute("UPDATE clips SET text = ? WHERE id = ?", [text, clip.id])
    return get_clip(store, clip_id)


def reject_flagged(store: Store, project_id: int, speaker_id: int | None = None) -> int:
    """Reject every flagged, not yet accepted clip (of one speaker or all); returns the count."""
    ids = [c.id for c in list_clips(store, project_id, speaker_id, "flagged")
           if c.review != "accepted"]
    return set_review(store, ids, "rejected") if ids else 0


def accept_all(store: Store, project_id: int, speaker_id: int) -> int:
    """Accept every unreviewed clip of a speaker; returns the count."""
    ids = [c.id for c in list_clips(store, project_id, speaker_id, "unreviewed")]
    return set_review(store, ids, "accepted") if ids else 0


def _word_text(words: list[dict]) -> str:
    return " ".join(w["word"].strip() for w in words if w["word"].strip())


def _new_path(ws: Workspace, old_stored: str, tag: str) -> Path:
    """A fresh file name beside the old clip: ``<stem>~<tag><n>.wav``."""
    old = ws.resolve(old_stored)
    stem = re.sub(r"~[a-z]\d+$", "", old.stem)
    n = 1
    while (old.parent / f"{stem}~{tag}{n}.wav").exists():
        n += 1
    return old.parent / f"{stem}~{tag}{n}.wav"


def _load(ws: Workspace, clip: Clip) -> tuple[np.ndarray, int]:
    path = ws.resolve(clip.path)
    if not path.exists():
        raise NotFound(f"The audio of clip #{clip.id} is missing ({clip.path}).")
    return audio_io.read_wav(path)


def _shift(words: list[dict], offset: float, lo: float, hi: float) -> list[dict]:
    """Words inside [lo, hi] (clip seconds), moved by ``-offset``."""
    eps = 0.02
    return [{**w, "start": round(max(0.0, w["start"] - offset), 3),
             "end": round(max(0.0, w["end"] - offset), 3)}
            for w in words if w["start"] >= lo - eps and w["end"] <= hi + eps]


def _quality_for(clip: Clip, duration: float) -> tuple[str, str]:
    quality = {**clip.quality, "duration_s": round(duration, 3)}
    flags = [f for f in clip.flags if f != "too_short"]
    if duration < QualityConfig().min_seconds:
        flags.append("too_short")
    return dumps(quality), dumps(flags)


def trim_clip(store: Store, ws: Workspace, clip_id: int, start_s: float, end_s: float) -> Clip:
    """Keep ``[start_s, end_s]`` (seconds within the clip) as a new file; words follow.

    The transcript is rebuilt from the remaining words only when a word was cut off.
    """
    clip = get_clip(store, clip_id)
    audio, rate = _load(ws, clip)
    total = len(audio) / rate
    start_s, end_s = max(0.0, float(start_s)), min(total, float(end_s))
    if end_s - start_s < MIN_CLIP_S:
        raise BadInput(f"A trimmed clip must keep at least {MIN_CLIP_S} s.")
    part = audio[int(round(start_s * rate)):int(round(end_s * rate))]
    words = _shift(clip.words, start_s, start_s, end_s)
    text = clip.text if len(words) == len(clip.words) else _word_text(words)
    target = _new_path(ws, clip.path, "t")
    audio_io.write_wav(target, part, rate)
    quality, flags = _quality_for(clip, len(part) / rate)
    with _Edit(store, clip.project_id, "trim clip") as edit:
        edit.keep_clips([clip.id], ("path", "start_s", "end_s", "duration_s", "text", "words",
                                    "quality", "flags"))
        edit.created("files", ws.relative(target))
        edit.execute("UPDATE clips SET path = ?, start_s = ?, end_s = ?, duration_s = ?, "
                     "text = ?, words = ?, quality = ?, flags = ? WHERE id = ?",
                     [ws.relative(target), _offset(clip.start_s, start_s),
                      _offset(clip.start_s, end_s), len(part) / rate, text, dumps(words),
                      quality, flags, clip.id])
    return get_clip(store, clip_id)


def _offset(origin: float | None, seconds: float) -> float | None:
    return None if origin is None else round(origin + seconds, 3)


def _split_texts(clip: Clip, index: int) -> tuple[str, str]:
    """The two transcripts: the user's text cut at the same word when counts agree."""
    tokens = clip.text.split()
    if len(tokens) == len(clip.words):
        return " ".join(tokens[:index]), " ".join(tokens[index:])
    return _word_text(clip.words[:index]), _word_text(clip.words[index:])


def split_clip(store: Store, ws: Workspace, clip_id: int, word_index: int) -> tuple[Clip, Clip]:
    """Cut a clip before word ``word_index`` (midway through the pause before it).

    The clip keeps the first part (a new file); the second part becomes a new
    clip with the same speaker, source and review state.
    """
    clip = get_clip(store, clip_id)
    if not 0 < int(word_index) < len(clip.words):
        raise BadInput("Split at a word after the first one (the clip needs word timings).")
    index = int(word_index)
    audio, rate = _load(ws, clip)
    cut = (clip.words[index - 1]["end"] + clip.words[index]["start"]) / 2.0
    total = len(audio) / rate
    if cut < MIN_CLIP_S or total - cut < MIN_CLIP_S:
        raise BadInput("Both parts of a split need some audio.")
    at = int(round(cut * rate))
    first_path, second_path = _new_path(ws, clip.path, "a"), _new_path(ws, clip.path, "b")
    audio_io.write_wav(first_path, audio[:at], rate)
    audio_io.write_wav(second_path, audio[at:], rate)
    first_text, second_text = _split_texts(clip, index)
    second_words = _shift(clip.words[index:], cut, cut, total)
    with _Edit(store, clip.project_id, "split clip") as edit:
        edit.keep_clips([clip.id], ("path", "end_s", "duration_s", "text", "words", "quality",
                                    "flags"))
        for path in (first_path, second_path):
            edit.created("files", ws.relative(path))
        quality, flags = _quality_for(clip, at / rate)
        edit.execute("UPDATE clips SET path = ?, end_s = ?, duration_s = ?, text = ?, words = ?, "
                     "quality = ?, flags = ? WHERE id = ?",
                     [ws.relative(first_path), _offset(clip.start_s, cut), at / rate, first_text,
                      dumps(clip.words[:index]), quality, flags, clip.id])
        quality, flags = _quality_for(clip, (len(audio) - at) / rate)
        new_id = edit.execute(
            "INSERT INTO clips (project_id, source_id, speaker_id, path, start_s, end_s, "
            "duration_s, text, words, quality, flags, embedding, review, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [clip.project_id, clip.source_id, clip.speaker_id, ws.relative(second_path),
             _offset(clip.start_s, cut), clip.end_s, (len(audio) - at) / rate, second_text,
             dumps(second_words), quality, flags, clip.embedding, clip.review, now()])
        edit.created("clips", new_id)
    return get_clip(store, clip_id), get_clip(store, new_id)
