"""Sources: the long recordings a project starts from, and the job that analyses them.

Adding a file copies it into the project (so the user's original can move or
vanish) under a name derived from its content hash; the same file added twice
is one source. Analysis decodes each source once (streaming) and records
duration, loudness, peak and clipping; a file that cannot be decoded is marked
failed with the reason and the others go on.
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from engines import audio
from projects.errors import BadInput, NotFound, StudioError
from projects.jobs import JobContext, JobKind, register, submit
from projects.projects import get_project
from projects.records import Job, Project, Source, from_row
from projects.store import Store, now
from projects.workspace import Workspace, atomic_path, safe_filename

HASH_CHUNK_BYTES = 1 << 20
#: Audio files a zip or folder of ready clips may hold.
CLIP_EXTENSIONS = frozenset({".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a"})
#: What an uploaded folder of ready clips keeps: audio, and LJSpeech's transcript file.
CLIP_FOLDER_SUFFIXES = CLIP_EXTENSIONS | {".csv"}


def file_sha256(path: Path) -> str:
    """Content hash used to recognise a file added twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def staged_clip_folder(ws: Workspace, files: list[Path]) -> Iterator[Path]:
    """The files of one uploaded folder gathered back into a folder, for a dataset build.

    A browser uploads a folder's files one by one (each in its own temporary
    folder, keeping only its base name); LJSpeech's ``metadata.csv`` refers to
    clips by base name, so gathering them flat loses nothing. Names are made
    safe, other kinds of files are left out, and the folder is removed on exit
    (the build copies what it needs into the project first).
    """
    kept = [f for f in files if Path(f).suffix.lower() in CLIP_FOLDER_SUFFIXES]
    if not any(Path(f).suffix.lower() in CLIP_EXTENSIONS for f in kept):
        raise BadInput("The folder has no audio clips (wav, flac, mp3, ogg, opus or m4a).")
    with tempfile.TemporaryDirectory(prefix=".upload-", dir=ws.root) as tmp:
        folder = Path(tmp) / "clips"
        folder.mkdir()
        for path in kept:
            shutil.copyfile(path, folder / safe_filename(Path(path).name, "clip"))
        yield folder


def add_source(store: Store, ws: Workspace, project: Project, path: Path,
               name: str | None = None) -> tuple[Source, bool]:
    """Copy one file into the project; returns (source, created). Duplicates are reused."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"File not found: {path}")
    sha = file_sha256(path)
    existing = store.one("SELECT * FROM sources WHERE project_id = ? AND sha256 = ?",
                         [project.id, sha])
    if existing:
        return from_row(Source, existing), False
    display = safe_filename(name or path.name, default="recording")
    target = ws.project_dir(project.slug) / "sources" / f"{sha[:12]}-{display}"
    with atomic_path(target) as tmp:
        shutil.copyfile(path, tmp)
    sid = store.db["sources"].insert({
        "project_id": project.id, "name": display, "path": ws.relative(target),
        "sha256": sha, "size_bytes": target.stat().st_size, "status": "new",
        "created_at": now()}).last_pk
    return get_source(store, sid), True



def add_microphone_take(store: Store, ws: Workspace, project_name: str | int,
                        path: Path) -> Source:
    """Keep a browser-microphone recording as a source named after the moment it was added."""
    project = get_project(store, project_name)
    stamp = time.strftime("%Y-%m-%d %H-%M-%S")
    source, _ = add_source(store, ws, project, Path(path), name=f"Microphone {stamp}.wav")
    return source

def get_source(store: Store, source_id: int) -> Source:
    """A source by id; NotFound otherwise."""
    row = store.one("SELECT * FROM sources WHERE id = ?", [source_id])
    if row is None:
        raise NotFound(f"No source #{source_id}.")
    return from_row(Source, row)


def list_sources(store: Store, project_id: int) -> list[Source]:
    """A project's sources in the order they were added."""
    rows = store.all("SELECT * FROM sources WHERE project_id = ? ORDER BY id", [project_id])
    return [from_row(Source, r) for r in rows]


def add_and_analyse(store: Store, ws: Workspace, project_name: str | int,
                    files: list[tuple[Path, str | None]]) -> tuple[Job | None, list[str]]:
    """Add files to a project and queue one analysis job for the new or unanalysed ones.

    Returns the job (None when there was nothing to do) and one line per file that
    could not even be added (missing, unreadable); those never stop the others.
    """
    project = get_project(store, project_name)
    to_analyse, problems = [], []
    for path, name in files:
        try:
            source, _ = add_source(store, ws, project, path, name)
        except (StudioError, OSError) as err:
            problems.append(f"{name or Path(path).name}: {err}")
            continue
        if source.status != "analysed":
            to_analyse.append(source.id)
    if not to_analyse:
        return None, problems
    job = submit(store, "analyse", {"source_ids": to_analyse}, project_id=project.id,
                 title=f"Analyse {len(to_analyse)} recording(s)")
    return job, problems


def _analyse_one(ctx: JobContext, source: Source, done: int, total: int) -> None:
    def progress(fraction: float, message: str) -> None:
        ctx.progress((done + fraction) / total, f"{source.name}: {message}")

    try:
        stats = audio.analyse(ctx.workspace.resolve(source.path), progress=progress,
                              should_cancel=ctx.should_cancel)
    except StudioError as err:
        ctx.log.warning("source %s failed: %s", source.id, err)
        ctx.store.db["sources"].update(source.id, {"status": "failed", "error": str(err)})
        return
    values = stats.to_dict()
    row = {k: values.get(k) for k in ("duration_s", "sample_rate", "channels", "lufs",
                                      "peak_dbfs", "rms_dbfs", "clipped_fraction")}
    ctx.store.db["sources"].update(source.id, {**row, "status": "analysed", "error": None})


def run_analysis(ctx: JobContext) -> dict:
    """Job kind 'analyse': measure each listed source; finished ones are skipped on resume."""
    ids = list(ctx.params.get("source_ids", []))
    total = max(len(ids), 1)
    for n, source_id in enumerate(ids):
        ctx.check_cancel()
        source = get_source(ctx.store, source_id)
        if source.status in ("analysed", "failed"):
            continue
        ctx.progress(n / total, f"Analysing {source.name} ({n + 1}/{len(ids)})")
        _analyse_one(ctx, source, n, total)
    rows = [get_source(ctx.store, i) for i in ids]
    ok = [s for s in rows if s.status == "analysed"]
    failed = [s for s in rows if s.status == "failed"]
    hours = sum(s.duration_s or 0 for s in ok) / 3600
    summary = f"{len(ok)} analysed ({hours:.2f} h)" + (f", {len(failed)} failed" if failed else "")
    return {"summary": summary, "analysed": len(ok), "failed": len(failed),
            "failures": {s.name: s.error for s in failed}}


register(JobKind("analyse", run_analysis, title="Analyse recordings"))
