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
    return TtsVoice(BUNDLED_VOICE_ID, "Joe (Piper, bundled)", cfg.language, cfg.sample_rate,
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
