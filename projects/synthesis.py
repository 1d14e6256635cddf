"""Text to speech with any voice: a library voice (ONNX) or a training checkpoint (PyTorch).

``synthesize(text, voice, ...)`` is the one entry point narration previews, the Train
tab's "speak this" box and the CLI share. Library voices run through
:mod:`projects.voices` (onnxruntime, GPU when it has one); a checkpoint runs our
PyTorch generator, all sentences padded into one batch, on the GPU when present.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from projects.errors import BadInput
from projects.store import Store
from projects.workspace import Workspace

#: Silence between sentences, in seconds.
SENTENCE_SILENCE_S = 0.25
#: Sentences rendered per PyTorch batch (bounds memory on long texts).
BATCH_SENTENCES = 16
#: Checkpoint generators kept loaded in this process.
MAX_LOADED = 2

_loaded: dict[tuple[str, float], object] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class CheckpointVoice:
    """A training checkpoint used as a voice (before it is promoted)."""

    path: Path
    """The ``.pt`` checkpoint."""
    language: str
    """espeak-ng language of its phonemes."""
    id_map: dict
    """Piper phoneme id map the run trained with."""
    noise_scale: float = 0.667
    length_scale: float = 1.0
    noise_w: float = 0.8
    name: str = "checkpoint"


def checkpoint_voice(store: Store, ws: Workspace, run_id: int,
                     checkpoint: str | int | None = None) -> CheckpointVoice:
    """A run's checkpoint (default: the best) as something :func:`synthesize` speaks."""
    from projects import training

    run = training.get_run(store, run_id)
    path = training.checkpoint_path(ws, run, checkpoint)
    voice = training.read_config(ws, run)["voice"]
    return CheckpointVoice(path, voice["espeak_voice"], voice["phoneme_id_map"],
                           voice.get("noise_scale", 0.667), voice.get("length_scale", 1.0),
                           voice.get("noise_w", 0.8), f"run #{run.id} {path.stem}")


def _generator(path: Path):
    """The checkpoint's generator, weight norm folded, on the GPU when present (cached)."""
    import torch
    from engines.vits.train import load_generator

    key = (str(path), path.stat().st_mtime)
    with _lock:
        if key not in _loaded:
            if len(_loaded) >= MAX_LOADED:
                _loaded.pop(next(iter(_loaded)))
            gen = load_generator(path)
            gen.remove_weight_norm()
            _loaded[key] = gen.to("cuda" if torch.cuda.is_available() else "cpu")
        return _loaded[key]


def _render_batch(gen, batch: list[list[int]], sid: int | None, noise_scale: float,
                  length_scale: float, noise_w: float) -> list[np.ndarray]:
    import torch

    device = next(gen.parameters()).device
    ids = torch.zeros(len(batch), max(len(b) for b in batch), dtype=torch.long)
    for i, b in enumerate(batch):
        ids[i, :len(b)] = torch.tensor(b)
    lengths = torch.tensor([len(b) for b in batch])
    sids = torch.full((len(batch),), sid or 0, dtype=torch.long) if gen.n_speakers > 1 else None
    with torch.no_grad():
        audio, _attn, y_mask = gen.infer(ids.to(device), lengths.to(device),
                                         sid=None if sids is None else sids.to(device),
                                         noise_scale=noise_scale, length_scale=length_scale,
                                         noise_scale_w=noise_w)
    hop = gen.config.audio.hop_length
    frames = y_mask.sum(dim=(1, 2)).long().tolist()
    return [audio[i, 0, : n * hop].float().cpu().numpy() for i, n in enumerate(frames)]


def _synthesize_checkpoint(text: str, voice: CheckpointVoice, speaker: int | None,
                           length_scale: float | None, noise_scale: float | None,
                           noise_w: float | None) -> tuple[np.ndarray, int]:
    from engines.onnx_voice import join_with_silence
    from engines.text import TextFrontend

    sentences = TextFrontend(voice.language, voice.id_map).sentences(text)
    if not sentences:
        raise BadInput("The text has nothing to pronounce (only symbols or punctuation).")
    gen = _generator(voice.path)
    scales = (voice.noise_scale if noise_scale is None else noise_scale,
              voice.length_scale if length_scale is None else length_scale,
              voice.noise_w if noise_w is None else noise_w)
    if scales[1] <= 0:
        raise BadInput("The length scale must be above 0.")
    audios: list[np.ndarray] = []
    ids = [s.ids for s in sentences]
    for start in range(0, len(ids), BATCH_SENTENCES):
        audios += _render_batch(gen, ids[start:start + BATCH_SENTENCES], speaker, *scales)
    rate = gen.config.audio.sample_rate
    audio = join_with_silence([np.clip(a, -1, 1) for a in audios], rate, SENTENCE_SILENCE_S)
    return audio.astype(np.float32), rate


def synthesize(text: str, voice, speaker: int | str | None = None,
               length_scale: float | None = None, noise_scale: float | None = None,
               noise_w: float | None = None, store: Store | None = None,
               ws: Workspace | None = None) -> tuple[np.ndarray, int]:
    """Speak ``text``: returns ``(float32 mono audio, sample_rate)``.

    ``voice`` is a library voice (``projects.voices.TtsVoice``), a voice key (then
    ``store`` and ``ws`` are needed) or a :class:`CheckpointVoice`. Scales left None
    take the voice's defaults. Sentences are synthesised as one batch.
    """
    if not text or not text.strip():
        raise BadInput("There is no text to speak.")
    if isinstance(voice, CheckpointVoice):
        sid = None if speaker in (None, "") else int(speaker)
        return _synthesize_checkpoint(text, voice, sid, length_scale, noise_scale, noise_w)
    from projects import voices

    if isinstance(voice, str):
        if store is None or ws is None:
            raise BadInput("A voice given by name needs the store and workspace.")
        voice = voices.get_voice(store, ws, voice)
    synth = voices.load_synthesizer(voice)
    return synth.synthesize(text, speaker=speaker, length_scale=length_scale,
                            noise_scale=noise_scale, noise_w=noise_w)
