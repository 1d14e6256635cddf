"""The model registry: which pretrained models exist, which are installed, and getting them.

The manifests (``assets/models*.json``) list every model with its files, source,
checksums, size and licence. A model is installed either because a pip package
already carries it (the embedded defaults) or because its files sit in
``assets/models/<id>/`` with sizes matching the manifest. Downloads and imports
are verified against the manifest's checksum before they are moved into place,
so a half-finished or tampered file is never used.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from projects.errors import BadInput, Cancelled, ModelMissing, NotFound
from projects.workspace import atomic_path
from engines.errors import CancelFn, ProgressFn, never_cancel, no_progress

ASSETS = Path(__file__).resolve().parent.parent / "assets"
#: Manifests: models.json (downloadable) and models_embedded.json (carried by pip packages).
MANIFESTS = ("models_embedded.json", "models.json")
MODELS_ENV = "VOICE_STUDIO_MODELS"
OFFLINE_ENV = "VOICE_STUDIO_OFFLINE"
DOWNLOAD_TIMEOUT_S = 20
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class ModelFile:
    """One file of a model."""

    name: str
    url: str | None = None
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None


@dataclass(frozen=True)
class ModelEntry:
    """One manifest entry."""

    id: str
    task: str
    title: str
    licence: str
    source: str
    files: tuple[ModelFile, ...] = ()
    #: Import name of a pip package that already carries the model (embedded default).
    package: str | None = None
    #: Path of the model inside that package.
    package_path: str = ""
    backend: str = ""
    notes: str = ""
    homepage: str = ""
    default: bool = False
    #: Settings the engine needs to run the model (e.g. an MDX-Net's STFT layout).
    params: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return sum(sizes) if sizes and all(s is not None for s in sizes) else None

    @classmethod
    def from_dict(cls, d: dict) -> "ModelEntry":
        known = {"id", "task", "title", "licence", "source", "files", "package",
                 "package_path", "backend", "notes", "homepage", "default", "params"}
        files = tuple(ModelFile(**{k: v for k, v in f.items() if k in ModelFile.__annotations__})
                      for f in d.get("files", []))
        return cls(**{k: v for k, v in d.items() if k in known and k != "files"},
                   files=files, extra={k: v for k, v in d.items() if k not in known})


class Registry:
    """The manifest plus the models folder."""

    def __init__(self, manifests: list[Path] | None = None, models_dir: Path | None = None):
        paths = manifests if manifests is not None else [ASSETS / m for m in MANIFESTS]
        self.models_dir = Path(models_dir or os.environ.get(MODELS_ENV) or ASSETS / "models")
        self._entries: dict[str, ModelEntry] = {}
        for path in map(Path, paths):
            if path.exists():
                data = json.loads(path.read_text(encoding="utf-8"))
                self._entries.update({e["id"]: ModelEntry.from_dict(e) for e in data["models"]})

    def entries(self, task: str | None = None) -> list[ModelEntry]:
        """All entries, optionally of one task (asr, vad, tts, speaker, ...)."""
        return [e for e in self._entries.values() if task is None or e.task == task]

    def get(self, model_id: str) -> ModelEntry:
        """An entry by id; NotFound lists what exists."""
        if model_id not in self._entries:
            raise NotFound(f"No model '{model_id}' in the registry. "
                           f"Known: {', '.join(sorted(self._entries))}.")
        return self._entries[model_id]

    # ---------------------------------------------------------------- where

    def _package_path(self, entry: ModelEntry) -> Path | None:
        spec = importlib.util.find_spec(entry.package) if entry.package else None
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / entry.package_path
        return path if path.exists() else None

    def model_dir(self, model_id: str) -> Path:
        """Where a downloaded or imported model's files go."""
        return self.models_dir / model_id

    def is_installed(self, model_id: str) -> bool:
        """True when the model can be used now, without any download."""
        entry = self.get(model_id)
        if entry.package:
            return self._package_path(entry) is not None
        folder = self.model_dir(model_id)
        return bool(entry.files) and all(
            (folder / f.name).is_file() and (f.size is None or (folder / f.name).stat().st_size == f.size)
            for f in entry.files)

    def path(self, model_id: str) -> Path:
        """The installed model's folder (or package path); ModelMissing says how to get it."""
        entry = self.get(model_id)
        if entry.package:
            found = self._package_path(entry)
            if found is None:
                raise ModelMissing(f"{entry.title} is not installed: it ships with the pip "
                                   f"package of module '{entry.package}'; run `python3 launch.py` "
                                   "once to install the requirements.")
            return found
        if not self.is_installed(model_id):
            raise ModelMissing(self.missing_message(entry))
        return self.model_dir(model_id)

    def missing_message(self, entry: ModelEntry) -> str:
        """One line naming the files, their source and where to put them."""
        names = ", ".join(f.name for f in entry.files)
        return (f"{entry.title} is not installed. Run `python3 launch.py models download "
                f"{entry.id}` (or use the Models tab), or get {names} from {entry.source} and "
                f"run `python3 launch.py models import {entry.id} FILE...`; files go to "
                f"{self.model_dir(entry.id)}.")

    def status(self) -> list[dict]:
        """One row per model for the CLI and the Models tab."""
        rows = []
        for e in self._entries.values():
            installed = self.is_installed(e.id)
            where = ("pip package " + e.package) if e.package else str(self.model_dir(e.id))
            rows.append({"id": e.id, "task": e.task, "title": e.title, "installed": installed,
                         "size_mb": round(e.size / 1e6, 1) if e.size else None,
                         "licence": e.licence, "where": where if installed else "",
                         "source": e.source})
        return rows

    # ---------------------------------------------------------------- getting models

    def download(self, model_id: str, progress: ProgressFn = no_progress,
                 should_cancel: CancelFn = never_cancel) -> Path:
        """Fetch every missing file, verify it, and move it into place."""
        entry = self.get(model_id)
        if entry.package:
            return self.path(model_id)
        folder = self.model_dir(model_id)
        total = entry.size or 0
        done = 0
        for f in entry.files:
            target = folder / f.name
            if target.is_file() and _matches(target, f):
                done += f.size or 0
                continue
            if not f.url:
                raise ModelMissing(self.missing_message(entry))
            done = self._fetch(entry, f, target, done, total, progress, should_cancel)
        progress(1.0, f"{entry.title} installed")
        return folder

    def _fetch(self, entry: ModelEntry, f: ModelFile, target: Path, done: int, total: int,
               progress: ProgressFn, should_cancel: CancelFn) -> int:
        if os.environ.get(OFFLINE_ENV) == "1":
            raise ModelMissing(f"Offline: cannot download {f.name} from {f.url}. "
                               + self.missing_message(entry))
        try:
            response = urllib.request.urlopen(f.url, timeout=DOWNLOAD_TIMEOUT_S)
        except (urllib.error.URLError, OSError) as err:
            raise ModelMissing(f"Cannot download {f.name} from {f.url} ({_reason(err)}). "
                               + self.missing_message(entry)) from err
        with response, atomic_path(target) as tmp, open(tmp, "wb") as out:
            while chunk := response.read(CHUNK_BYTES):
                if should_cancel():
                    raise Cancelled()
                out.write(chunk)
                done += len(chunk)
                progress(done / total if total else 0.0,
                         f"{f.name}: {done / 1e6:.1f} of {total / 1e6:.1f} MB" if total
                         else f"{f.name}: {done / 1e6:.1f} MB")
            out.flush()
            _verify(Path(tmp), f)
        return done

    def import_files(self, model_id: str, files: list[Path]) -> Path:
        """Install a model from local files, matched to the manifest by name and checksum."""
        entry = self.get(model_id)
        if entry.package:
            raise BadInput(f"{entry.title} ships with pip; there is nothing to import.")
        by_name = {f.name: f for f in entry.files}
        for path in map(Path, files):
            if not path.is_file():
                raise BadInput(f"File not found: {path}")
            spec = by_name.get(path.name) or (entry.files[0] if len(entry.files) == 1 else None)
            if spec is None:
                raise BadInput(f"{path.name} is not a file of {entry.title}; expected one of "
                               f"{', '.join(by_name)}.")
            _verify(path, spec)
            with atomic_path(self.model_dir(model_id) / spec.name) as tmp:
                shutil.copyfile(path, tmp)
        return self.model_dir(model_id)


def _reason(err: Exception) -> str:
    return str(getattr(err, "reason", None) or err)


def _hash(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, spec: ModelFile) -> None:
    """Raise BadInput unless size and checksum match the manifest."""
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        raise BadInput(f"{spec.name}: size {size} bytes does not match the expected "
                       f"{spec.size}; the file is incomplete or a different version.")
    for algorithm in ("sha256", "md5"):
        expected = getattr(spec, algorithm)
        if expected and _hash(path, algorithm) != expected.lower():
            raise BadInput(f"{spec.name}: {algorithm} checksum mismatch; the file is corrupt "
                           "or a different version. It was not installed.")


def _matches(path: Path, spec: ModelFile) -> bool:
    try:
        _verify(path, spec)
    except BadInput:
        return False
    return True


def run_download(ctx) -> dict:
    """Job kind 'model_download': fetch one model with progress and cancel."""
    registry = Registry()
    entry = registry.get(ctx.params["model_id"])
    path = registry.download(entry.id, progress=ctx.progress, should_cancel=ctx.should_cancel)
    return {"summary": f"{entry.title} installed", "path": str(path)}


def _register_jobs() -> None:
    from projects.jobs import JobKind, register

    register(JobKind("model_download", run_download, title="Download model"))


_register_jobs()
