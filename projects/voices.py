"""The voice library, TTS side: which voices can narrate, importing Piper voices, loading them.

Two sources of voices: the Piper voice bundled with the install (always listed,
key = its registry id) and voices recorded in the ``voices`` table (imported
Piper voices now; trained voices later), key = their slug. A voice is a
``.onnx`` model plus its ``.onnx.json`` config in Piper's format.

Loaded synthesizers are kept per process (loading takes seconds) so a preview
after the first one answers at once.
"""
from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from engines.onnx_voice import OnnxVoice, VoiceConfig
from projects.errors import BadInput, Conflict, ModelMissing, NotFound
from projects.records import Voice, from_row
from projects.registry import Registry
from projects.store import Store, now
from projects.workspace import Workspace, atomic_path, check_display_name, slugify

BUNDLED_VOICE_ID = "piper-en_US-joe-medium"
BUNDLED_NAME = "Joe (Piper, bundled)"
#: ``voices.kind`` values this module can narrate with.
TTS_KINDS = ("piper",)
#: Inputs every Piper voice model takes.
PIPER_INPUTS = ("input", "input_lengths", "scales")
#: Synthesizers kept loaded in this process (each holds a model of ~60 MB).
MAX_LOADED = 3

_loaded: dict[tuple[str, float], OnnxVoice] = {}
_load_lock = threading.Lock()


@dataclass(frozen=True)
class TtsVoice:
    """A voice that can narrate text."""

    key: str
    """Stable id used in settings: the registry id or the library slug."""
    name: str
    """Name shown to the user."""
    language: str
    """espeak-ng language of the voice (``en-us``)."""
    sample_rate: int
    """Output rate in Hz."""
    onnx_path: Path
    """The model; its config is ``<onnx>.json``."""
    origin: str
    """``bundled``, ``imported`` or ``trained``."""

    @property
    def label(self) -> str:
        """Name with language, for pickers."""
        return f"{self.name} ({self.language})"


def _read_config(json_path: Path) -> VoiceConfig:
    try:
        data = json.loads(Path(json_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadInput(f"Cannot read the voice config {Path(json_path).name}: {err}") from err
    if not isinstance(data, dict):
        raise BadInput(f"The voice config {Path(json_path).name} is not a JSON object.")
    return VoiceConfig.from_dict(data)


def bundled_voice(registry: Registry | None = None) -> TtsVoice:
    """The Piper voice that ships with the install."""
    onnx = Path((registry or Registry()).path(BUNDLED_VOICE_ID))
    cfg = _read_config(Path(f"{onnx}.json"))
    return TtsVoice(BUNDLED_VOICE_ID, BUNDLED_NAME, cfg.language, cfg.sample_rate,
                    onnx, "bundled")


def _from_record(ws: Workspace, v: Voice) -> TtsVoice:
    return TtsVoice(v.slug, v.name, v.language, v.sample_rate or 0, ws.resolve(v.path),
                    v.origin or "imported")


def list_tts_voices(store: Store, ws: Workspace, registry: Registry | None = None) -> list[TtsVoice]:
    """Every voice that can narrate: the bundled one first, then the library's."""
    voices = []
    try:
        voices.append(bundled_voice(registry))
    except (BadInput, ModelMissing, NotFound):
        pass  # without the bundled voice, imported voices still work
    marks = ",".join("?" * len(TTS_KINDS))
    rows = store.all(f"SELECT * FROM voices WHERE kind IN ({marks}) ORDER BY name", TTS_KINDS)
    return voices + [_from_record(ws, from_row(Voice, r)) for r in rows]


def get_voice(store: Store, ws: Workspace, key: str | None,
              registry: Registry | None = None) -> TtsVoice:
    """A voice by key (or by name); BadInput when none is chosen, NotFound when unknown."""
    if not key:
        raise BadInput("Choose a voice first (the bundled Piper voice is always available).")
    voices = list_tts_voices(store, ws, registry)
    for v in voices:
        if key in (v.key, v.name, v.label):
            return v
    known = ", ".join(v.key for v in voices) or "none"
    raise NotFound(f"No voice '{key}' in the library (voices: {known}).")


def _check_model(onnx_path: Path) -> None:
    """BadInput unless the file is an ONNX graph with Piper's inputs (fast: no session)."""
    import onnx

    try:
        graph = onnx.load(str(onnx_path), load_external_data=False).graph
    except Exception as err:  # onnx raises DecodeError and friends for non-models
        raise BadInput(f"{onnx_path.name} is not an ONNX model ({type(err).__name__}).") from err
    missing = set(PIPER_INPUTS) - {i.name for i in graph.input}
    if missing:
        raise BadInput(f"{onnx_path.name} is not a Piper voice (no input {', '.join(sorted(missing))}).")


def import_piper_voice(store: Store, ws: Workspace, onnx_path: Path | str,
                       json_path: Path | str | None = None, name: str | None = None) -> TtsVoice:
    """Copy a Piper voice (``.onnx`` + ``.onnx.json``) into the library and record it."""
    onnx_path = Path(onnx_path)
    json_path = Path(json_path) if json_path else Path(f"{onnx_path}.json")
    if not onnx_path.is_file():
        raise BadInput(f"No such voice model: {onnx_path}")
    if not json_path.is_file():
        raise BadInput(f"{onnx_path.name} needs its config beside it ({json_path.name}).")
    cfg = _read_config(json_path)
    _check_model(onnx_path)
    display = check_display_name(name or onnx_path.name.removesuffix(".onnx"), "Voice name")
    slug = slugify(display)
    if store.one("SELECT 1 FROM voices WHERE slug = ? OR name = ?", [slug, display]) \
            or slug == BUNDLED_VOICE_ID:
        raise Conflict(f"A voice called '{display}' is already in the library.")
    folder = ws.voices_dir() / slug
    target = folder / f"{slug}.onnx"
    for src, dst in ((onnx_path, target), (json_path, Path(f"{target}.json"))):
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    try:
        store.db["voices"].insert({
            "name": display, "slug": slug, "kind": "piper", "language": cfg.language,
            "sample_rate": cfg.sample_rate, "origin": "imported", "path": ws.relative(target),
            "size_bytes": target.stat().st_size, "config": "{}", "created_at": now()})
    except sqlite3.IntegrityError as err:
        raise Conflict(f"A voice called '{display}' is already in the library.") from err
    return get_voice(store, ws, slug)


def load_synthesizer(voice: TtsVoice) -> OnnxVoice:
    """The voice's synthesizer, loaded once per process (GPU when onnxruntime has one)."""
    if not voice.onnx_path.is_file():
        raise BadInput(f"The files of voice '{voice.name}' are missing ({voice.onnx_path}).")
    key = (str(voice.onnx_path), voice.onnx_path.stat().st_mtime)
    with _load_lock:
        if key not in _loaded:
            if len(_loaded) >= MAX_LOADED:
                _loaded.pop(next(iter(_loaded)))
            _loaded[key] = OnnxVoice.load(voice.onnx_path)
        return _loaded[key]


# ------------------------------------------------------------------ library management
#: Column headers of :func:`voice_rows`.
VOICE_HEADERS = ["Key", "Name", "Language", "Sample rate (Hz)", "Origin", "Size (MB)", "Kind"]
#: Origin shown for the bundled voice, which the library cannot change.
BUNDLED_ORIGIN = "bundled (read-only)"
BYTES_PER_MB = 1024 * 1024
#: Zip names sort by voice then by time of export.
ZIP_TIME_FORMAT = "%Y%m%d-%H%M%S"


def _size_mb(size_bytes: int) -> float:
    return round(size_bytes / BYTES_PER_MB, 1)


def voice_rows(store: Store, ws: Workspace, registry: Registry | None = None) -> list[list]:
    """Every voice in the library as table rows (``VOICE_HEADERS``), the bundled one first."""
    rows = []
    try:
        b = bundled_voice(registry)
        rows.append([b.key, b.name, b.language, b.sample_rate, BUNDLED_ORIGIN,
                     _size_mb(b.onnx_path.stat().st_size), "piper"])
    except (BadInput, ModelMissing, NotFound, OSError):
        pass  # a broken install still lists the user's own voices
    for r in store.all("SELECT * FROM voices ORDER BY name"):
        v = from_row(Voice, r)
        rows.append([v.slug, v.name, v.language, v.sample_rate or "", v.origin or "imported",
                     _size_mb(v.size_bytes or 0), v.kind])
    return rows


def _library_record(store: Store, key: str | None) -> Voice:
    """The ``voices`` row for a key or name; BadInput for the bundled voice."""
    if not key:
        raise BadInput("Pick a voice first.")
    if key == BUNDLED_VOICE_ID or key.startswith(BUNDLED_NAME):
        raise BadInput("The bundled voice is read-only: it cannot be renamed or deleted.")
    row = store.one("SELECT * FROM voices WHERE slug = ? OR name = ?", [key, key])
    if row is None:
        raise NotFound(f"No voice '{key}' in the library.")
    return from_row(Voice, row)


def rename_voice(store: Store, ws: Workspace, key: str, new_name: str) -> Voice:
    """Give a library voice a new display name.

    Its key and folder stay, so narration settings that name the key keep working.
    """
    voice = _library_record(store, key)
    display = check_display_name(new_name, "Voice name")
    clash = store.one("SELECT 1 FROM voices WHERE name = ? AND id != ?", [display, voice.id])
    if clash or slugify(display) == BUNDLED_VOICE_ID:
        raise Conflict(f"A voice called '{display}' is already in the library.")
    store.db.execute("UPDATE voices SET name = ? WHERE id = ?", [display, voice.id])
    return from_row(Voice, store.one("SELECT * FROM voices WHERE id = ?", [voice.id]))


def delete_voice(store: Store, ws: Workspace, key: str) -> str:
    """Remove a library voice: its row and its folder. Returns the name it had."""
    voice = _library_record(store, key)
    folder = ws.resolve(voice.path).parent
    voices_root = ws.voices_dir().resolve()
    store.db.execute("DELETE FROM voices WHERE id = ?", [voice.id])
    # Only ever remove a folder of our own inside the voices dir, whatever the row says.
    if folder.resolve().parent == voices_root and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
    _forget_loaded(ws.resolve(voice.path))
    return voice.name


def _forget_loaded(onnx_path: Path) -> None:
    with _load_lock:
        for k in [k for k in _loaded if k[0] == str(onnx_path)]:
            _loaded.pop(k)


def export_voice_zip(store: Store, ws: Workspace, key: str, out_dir: Path | str,
                     registry: Registry | None = None) -> Path:
    """Write ``<key>_<time>.zip`` holding the voice's ``.onnx`` and ``.onnx.json``."""
    import time
    import zipfile

    voice = get_voice(store, ws, key, registry)
    onnx_path, json_path = voice.onnx_path, Path(f"{voice.onnx_path}.json")
    for f in (onnx_path, json_path):
        if not f.is_file():
            raise BadInput(f"The files of voice '{voice.name}' are missing ({f.name}).")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = slugify(voice.key) or "voice"
    target = out_dir / f"{stem}_{time.strftime(ZIP_TIME_FORMAT)}.zip"
    with atomic_path(target) as tmp:
        # ONNX weights barely compress; storing keeps a 60 MB export quick.
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
            zf.write(onnx_path, f"{stem}.onnx")
            zf.write(json_path, f"{stem}.onnx.json")
    return target
