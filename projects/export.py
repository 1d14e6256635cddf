"""Export a reviewed speaker as a training set other tools read.

Only accepted clips go out. Formats:

- ``ljspeech``: ``wavs/<id>.wav`` + ``metadata.csv`` (``id|text|normalized text``);
- ``vits``: ``wavs/`` + ``filelist.txt`` (``wavs/<id>.wav|text``);
- ``multi``: several speakers, ``wavs/`` + ``filelist.txt`` (``wavs/<id>.wav|speaker|text``,
  speaker as a 0-based index) + ``speakers.txt`` (index, then name, per line);
- ``rvc``: audio only, ``wavs/<id>.wav``.

Paths in filelists are relative to the export folder, so the folder (or its
zip) can move. Exports land in the project's ``exports/`` folder unless an
``out`` folder is given.
"""
from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from engines.errors import ProgressFn, no_progress
from projects import review
from projects.errors import BadInput, NotFound
from projects.records import Clip, Project
from projects.store import Store
from projects.workspace import Workspace, slugify

FORMATS = ("ljspeech", "vits", "multi", "rvc")
#: Files an export writes at its top level (replaced by a new export into the same folder).
_OWN_FILES = ("metadata.csv", "filelist.txt", "speakers.txt", "README.txt")


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote, for the summary."""

    format: str
    folder: str
    """Absolute path of the export folder."""
    zip_path: str | None
    clips: int
    minutes: float
    sample_rate: int
    speakers: list[str]
    skipped: int
    """Accepted clips left out because their audio file is missing."""

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)

    def summary(self) -> str:
        """One line for the UI and the CLI."""
        extra = f", {self.skipped} skipped (missing audio)" if self.skipped else ""
        return (f"{self.clips} clips, {self.minutes:.1f} min at {self.sample_rate} Hz "
                f"({self.format}){extra}")


def _normalizer(language: str):
    """``engines.text.normalize`` when the text front-end is installed, else identity."""
    try:
        from engines.text import normalize
    except ImportError:
        return lambda text: text
    return lambda text: normalize(text, language)


def _clean(text: str) -> str:
    # A '|' or a line break inside a transcript would break the filelist columns.
    return " ".join(str(text).replace("|", " ").split())


def _prepare(folder: Path) -> None:
    """Empty the parts of ``folder`` an export owns, keeping anything else."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder / "wavs", ignore_errors=True)
    for name in _OWN_FILES:
        (folder / name).unlink(missing_ok=True)
    (folder / "wavs").mkdir()


def _accepted(store: Store, project: Project, speaker_id: int) -> list[Clip]:
    return review.list_clips(store, project.id, speaker_id, "accepted")


def _copy_clips(ws: Workspace, folder: Path, items: list[tuple[str, Clip]],
                progress: ProgressFn) -> tuple[list[tuple[str, Clip]], float]:
    """Copy each clip's WAV to ``wavs/<id>.wav``; returns the copied items and seconds."""
    done, seconds = [], 0.0
    for n, (item_id, clip) in enumerate(items):
        src = ws.resolve(clip.path)
        if src.exists():
            shutil.copyfile(src, folder / "wavs" / f"{item_id}.wav")
            done.append((item_id, clip))
            seconds += clip.duration_s
        if n % 50 == 0:
            progress(n / max(1, len(items)), f"Copying clip {n + 1} of {len(items)}")
    return done, seconds


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _listing(fmt: str, done: list[tuple[str, Clip]], index: dict[int, int],
             normalize) -> tuple[str, list[str]] | None:
    if fmt == "ljspeech":
        return "metadata.csv", [f"{i}|{_clean(c.text)}|{_clean(normalize(c.text))}"
                                for i, c in done]
    if fmt == "vits":
        return "filelist.txt", [f"wavs/{i}.wav|{_clean(c.text)}" for i, c in done]
    if fmt == "multi":
        return "filelist.txt", [f"wavs/{i}.wav|{index[c.speaker_id]}|{_clean(c.text)}"
                                for i, c in done]
    return None


def export_speakers(store: Store, ws: Workspace, project: Project, speaker_ids: list[int],
                    fmt: str, out: Path | None = None, make_zip: bool = True,
                    progress: ProgressFn = no_progress) -> ExportResult:
    """Write the accepted clips of ``speaker_ids`` in format ``fmt``.

    Single-speaker formats take exactly one speaker. The folder defaults to
    ``exports/<speaker>-<fmt>`` in the project; a zip of it is written beside it.
    """
    if fmt not in FORMATS:
        raise BadInput(f"Unknown export format '{fmt}'; use one of {', '.join(FORMATS)}.")
    if not speaker_ids:
        raise BadInput("Choose a speaker to export.")
    if fmt != "multi" and len(speaker_ids) != 1:
        raise BadInput(f"The {fmt} format holds one speaker; use 'multi' for several.")
    speakers = [review.get_speaker(store, s) for s in speaker_ids]
    if any(s["project_id"] != project.id for s in speakers):
        raise NotFound("That speaker is not in this project.")
    items = []
    for speaker in speakers:
        prefix = slugify(speaker["name"]).replace("-", "_")
        items += [(f"{prefix}_{n:05d}", c)
                  for n, c in enumerate(_accepted(store, project, speaker["id"]), start=1)]
    if not items:
        raise BadInput("No accepted clips to export: accept some clips in Proofreading first.")
    base = "-".join(slugify(s["name"]) for s in speakers)[:60]
    folder = Path(out) if out else ws.project_dir(project.slug) / "exports" / f"{base}-{fmt}"
    _prepare(folder)
    done, seconds = _copy_clips(ws, folder, items, progress)
    index = {s["id"]: n for n, s in enumerate(speakers)}
    listing = _listing(fmt, done, index, _normalizer(project.language))
    if listing:
        _write_lines(folder / listing[0], listing[1])
    if fmt == "multi":
        _write_lines(folder / "speakers.txt", [f"{n}|{s['name']}" for n, s in enumerate(speakers)])
    zip_path = _zip(folder) if make_zip else None
    progress(1.0, "Export done")
    return ExportResult(fmt, str(folder), zip_path, len(done), seconds / 60.0,
                        project.sample_rate, [s["name"] for s in speakers],
                        len(items) - len(done))


def _zip(folder: Path) -> str:
    """``<folder>.zip`` beside the folder, written atomically."""
    target = folder.parent / f"{folder.name}.zip"
    tmp = shutil.make_archive(str(folder.parent / f".{folder.name}.part"), "zip",
                              root_dir=folder)
    Path(tmp).replace(target)
    return str(target)


def export_speaker(store: Store, ws: Workspace, project: Project, speaker: str | int,
                   fmt: str, out: Path | None = None, make_zip: bool = True) -> ExportResult:
    """One speaker (by name or id) in ``ljspeech``, ``vits`` or ``rvc`` form."""
    row = review.find_speaker(store, project.id, speaker)
    return export_speakers(store, ws, project, [row["id"]], fmt, out, make_zip)
