"""Export any of our generators as a Piper-compatible voice (``.onnx`` + ``.onnx.json``).

The graph has Piper's interface: inputs ``input`` [b, phonemes] int64,
``input_lengths`` [b] int64, ``scales`` [3] float32 (noise, length, noise_w)
and, for multi-speaker voices, ``sid`` [b] int64; output ``output`` [b, 1, 1, samples].
``piper-tts`` loads the result as it loads any downloaded voice.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import torch

from .models import VitsGenerator
from .piper_import import CONFIG_METADATA_KEY, PiperVoiceInfo

OPSET_VERSION = 15
#: Length of the dummy phoneme sequence traced during export.
DUMMY_PHONEMES = 50
PIPER_VERSION = "1.0.0"


def _use_piper_interface(generator: VitsGenerator) -> VitsGenerator:
    """Make ``forward`` Piper's tensor interface (patched on the instance, so parameter
    names keep no wrapper prefix and re-import maps them 1:1)."""

    def forward(ids, lengths, scales, sid=None):
        audio = generator.infer(ids, lengths, sid=sid, noise_scale=scales[0],
                                length_scale=scales[1], noise_scale_w=scales[2])[0]
        return audio.unsqueeze(1)

    generator.forward = forward
    return generator


def export_piper_voice(model: VitsGenerator, onnx_path: str | Path, info: PiperVoiceInfo,
                       quality: str = "medium") -> tuple[Path, Path]:
    """Write ``onnx_path`` and ``onnx_path + '.json'``; returns both paths."""
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    # A rebuilt copy, not deepcopy: deep-copied parametrized modules share state with the original.
    generator = VitsGenerator(model.config)
    generator.load_state_dict(model.state_dict())
    generator = generator.float().eval()
    generator.remove_weight_norm()
    tmp = _export_graph(generator, onnx_path)
    _attach_config(tmp, generator)
    os.replace(tmp, onnx_path)
    json_path = Path(str(onnx_path) + ".json")
    _write_atomic(json_path, json.dumps(piper_json(model, info, quality), indent=2, ensure_ascii=False))
    return onnx_path, json_path


def _export_graph(generator: VitsGenerator, onnx_path: Path) -> str:
    ids = torch.randint(0, generator.config.model.n_vocab, (1, DUMMY_PHONEMES), dtype=torch.long)
    lengths = torch.tensor([DUMMY_PHONEMES], dtype=torch.long)
    scales = torch.tensor([0.667, 1.0, 0.8])
    names = ["input", "input_lengths", "scales"]
    args: tuple = (ids, lengths, scales)
    if generator.n_speakers > 1:
        names.append("sid")
        args = args + (torch.tensor([0], dtype=torch.long),)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=onnx_path.parent)
    os.close(fd)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about data-dependent shapes are expected
        torch.onnx.export(
            _use_piper_interface(generator), args, tmp, dynamo=False, opset_version=OPSET_VERSION,
            input_names=names, output_names=["output"],
            dynamic_axes={"input": {0: "batch_size", 1: "phonemes"},
                          "input_lengths": {0: "batch_size"},
                          "output": {0: "batch_size", 3: "time"}},
        )
    return tmp


def _attach_config(path: str, generator: VitsGenerator) -> None:
    """Store our full config in the ONNX metadata so re-import needs no guessing."""
    import onnx

    graph_model = onnx.load(path)
    prop = graph_model.metadata_props.add()
    prop.key = CONFIG_METADATA_KEY
    prop.value = json.dumps(generator.config.to_dict())
    onnx.save(graph_model, path)


def piper_json(model: VitsGenerator, info: PiperVoiceInfo, quality: str = "medium") -> dict:
    """Piper's ``.onnx.json`` for this model and voice metadata."""
    cfg = model.config
    return {
        "audio": {"sample_rate": cfg.audio.sample_rate, "quality": quality},
        "espeak": {"voice": info.espeak_voice},
        "inference": {"noise_scale": info.noise_scale, "length_scale": info.length_scale,
                      "noise_w": info.noise_w},
        "phoneme_type": info.phoneme_type,
        "phoneme_map": {},
        "phoneme_id_map": info.phoneme_id_map,
        "num_symbols": cfg.model.n_vocab,
        "num_speakers": cfg.model.n_speakers,
        "speaker_id_map": info.speaker_id_map,
        "hop_length": cfg.audio.hop_length,
        "piper_version": PIPER_VERSION,
        "language": info.language,
    }


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
