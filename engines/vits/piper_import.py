"""Load a Piper voice (``.onnx`` + ``.onnx.json``) into our PyTorch :class:`VitsGenerator`.

Piper exports VITS with ``torch.onnx.export``. Most weights keep their module
names, but the exporter renames some (weight-normed convs fold into
``onnx::Conv_123``, the phoneme embedding can come out as ``sid``, the
duration flow's affine layer folds into ``/dp/flows.0/Exp_output_0``). We map
each initializer back through the node that consumes it: the node's name
(``/flow/flows.0/enc/in_layers.0/Conv``) is the module path.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engines.errors import BadInput, ModelMissing

from .config import AudioConfig, ModelConfig, VitsConfig
from .models import VitsGenerator

#: Metadata key under which our own exports store the full VitsConfig.
CONFIG_METADATA_KEY = "vits_config"
#: Ops whose second input is a module's weight.
WEIGHT_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
#: Parameters Piper's ONNX never contains: training-only parts of the generator.
TRAINING_ONLY = re.compile(r"^(enc_q\.|dp\.post_|dp\.flows\.1\.|dp\.log_flow)")


@dataclass
class PiperVoiceInfo:
    """The parts of a Piper ``.onnx.json`` that travel with a voice."""

    sample_rate: int = 22050
    espeak_voice: str = "en-us"
    phoneme_type: str = "espeak"
    phoneme_id_map: dict[str, list[int]] = field(default_factory=dict)
    num_speakers: int = 1
    speaker_id_map: dict[str, int] = field(default_factory=dict)
    noise_scale: float = 0.667
    length_scale: float = 1.0
    noise_w: float = 0.8
    language: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PiperVoiceInfo":
        """Read Piper's JSON layout."""
        inference = data.get("inference", {})
        return cls(
            sample_rate=int(data.get("audio", {}).get("sample_rate", 22050)),
            espeak_voice=data.get("espeak", {}).get("voice", "en-us"),
            phoneme_type=data.get("phoneme_type", "espeak"),
            phoneme_id_map=dict(data.get("phoneme_id_map", {})),
            num_speakers=int(data.get("num_speakers", 1)),
            speaker_id_map=dict(data.get("speaker_id_map", {})),
            noise_scale=float(inference.get("noise_scale", 0.667)),
            length_scale=float(inference.get("length_scale", 1.0)),
            noise_w=float(inference.get("noise_w", 0.8)),
            language=dict(data.get("language", {})),
        )


@dataclass
class ImportedVoice:
    """A Piper voice as a PyTorch generator plus its Piper metadata."""

    model: VitsGenerator
    config: VitsConfig
    info: PiperVoiceInfo
    missing: list[str]


def load_piper_voice(onnx_path: str | Path, json_path: str | Path | None = None) -> ImportedVoice:
    """Import a Piper voice; the generator is in eval mode with weight norm kept for fine-tuning."""
    import onnx
    from onnx import numpy_helper

    onnx_path = Path(onnx_path)
    json_path = Path(json_path) if json_path else Path(str(onnx_path) + ".json")
    if not onnx_path.is_file():
        raise ModelMissing(f"Piper voice not found: {onnx_path}")
    if not json_path.is_file():
        raise ModelMissing(f"Piper voice config not found: {json_path} (expected beside the .onnx)")
    try:
        graph_model = onnx.load(str(onnx_path))
    except Exception as err:  # onnx raises several unrelated types for corrupt files
        raise BadInput(f"Not a readable ONNX file: {onnx_path.name} ({err})") from err
    info = PiperVoiceInfo.from_json(json.loads(json_path.read_text(encoding="utf-8")))
    arrays = {t.name: numpy_helper.to_array(t) for t in graph_model.graph.initializer}
    weights = map_initializers(graph_model.graph, arrays)
    config = _stored_config(graph_model) or infer_config(graph_model.graph, weights, info)
    model = VitsGenerator(config)
    missing = load_plain_weights(model, weights)
    essential = [k for k in missing if not TRAINING_ONLY.match(k)]
    if essential:
        raise BadInput(f"{onnx_path.name}: no weights for {len(essential)} parameters, e.g. {essential[0]}")
    return ImportedVoice(model.eval(), config, info, missing)


def _stored_config(graph_model) -> VitsConfig | None:
    for prop in graph_model.metadata_props:
        if prop.key == CONFIG_METADATA_KEY:
            return VitsConfig.from_dict(json.loads(prop.value))
    return None


def _module_path(node_name: str) -> str:
    """'/flow/flows.0/enc/in_layers.0/Conv' → 'flow.flows.0.enc.in_layers.0'."""
    parts = [p for p in node_name.split("/") if p]
    return ".".join(parts[:-1])


def map_initializers(graph, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Plain (weight-norm folded) parameter name → array, for every initializer we can place."""
    arrays = dict(arrays)
    for node in graph.node:
        # The exporter keeps one copy of identical tensors; the others are Identity outputs.
        if node.op_type == "Identity" and node.input[0] in arrays:
            arrays[node.output[0]] = arrays[node.input[0]]
    weights = {name: arr for name, arr in arrays.items() if _looks_like_param(name)}
    for node in graph.node:
        path = _module_path(node.name)
        if not path or node.op_type == "Identity":
            continue
        for pos, name in enumerate(node.input):
            if name in arrays:
                _place(weights, node.op_type, pos, path, name, arrays[name])
    return weights


def _place(weights, op: str, pos: int, path: str, name: str, arr: np.ndarray) -> None:
    """Name the parameter that node ``op`` in module ``path`` reads from input ``pos``."""
    if _looks_like_param(name):
        # A shared copy: the module that uses it names itself through its node.
        weights.setdefault(f"{path}.{name.rpartition('.')[2]}", arr)
    elif op == "Gather" and pos == 0:
        weights.setdefault(f"{path}.weight", arr)
    elif op in WEIGHT_OPS and pos == 1:
        weights.setdefault(f"{path}.weight", arr.T if op == "MatMul" else arr)
    elif path.startswith("dp.flows.") and op == "Exp":
        # ElementwiseAffine in reverse computes exp(-logs); the exporter folded the -logs.
        weights.setdefault(f"{path}.logs", -arr)
    elif path.startswith("dp.flows.") and op == "Mul" and name.endswith("/Exp_output_0"):
        # ... or folded exp(-logs) itself into a constant.
        weights.setdefault(f"{path}.logs", -np.log(arr))


def _looks_like_param(name: str) -> bool:
    return not name.startswith(("onnx::", "/")) and "." in name and not name[0].isdigit()


def load_plain_weights(model: torch.nn.Module, weights: dict[str, np.ndarray]) -> list[str]:
    """Copy plain weights into ``model``, re-deriving weight-norm (g, v); returns missing names."""
    params = dict(model.named_parameters())
    missing = []
    for name in _plain_names(model):
        if name not in weights:
            missing.append(name)
            continue
        value = torch.from_numpy(np.array(weights[name], dtype=np.float32))
        module_path, _, leaf = name.rpartition(".")
        wn_prefix = f"{module_path}.parametrizations.{leaf}."
        with torch.no_grad():
            if wn_prefix + "original1" in params:
                v = params[wn_prefix + "original1"]
                _check_shape(name, v, value)
                v.copy_(value)
                norm = value.flatten(1).norm(dim=1).view(-1, *([1] * (value.dim() - 1)))
                params[wn_prefix + "original0"].copy_(norm)
            else:
                _check_shape(name, params[name], value)
                params[name].copy_(value)
    return missing


def _check_shape(name: str, param: torch.Tensor, value: torch.Tensor) -> None:
    if tuple(param.shape) != tuple(value.shape):
        raise BadInput(f"Weight {name}: voice has shape {tuple(value.shape)}, model {tuple(param.shape)}")


def _plain_names(model: torch.nn.Module) -> list[str]:
    """Parameter names as they would read with weight norm folded in."""
    names = []
    for name, _ in model.named_parameters():
        if ".parametrizations." in name:
            if name.endswith("original0"):
                continue
            head, _, rest = name.partition(".parametrizations.")
            name = f"{head}.{rest.split('.')[0]}"
        names.append(name)
    return names


def _count(weights: dict[str, np.ndarray], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in weights if (m := rx.match(k))})


def _node_attr(graph, node_name: str, attr: str):
    import onnx

    for node in graph.node:
        if node.name == node_name:
            for a in node.attribute:
                if a.name == attr:
                    return onnx.helper.get_attribute_value(a)
    return None


def infer_config(graph, weights: dict[str, np.ndarray], info: PiperVoiceInfo) -> VitsConfig:
    """Rebuild the generator's shapes from a Piper graph's weights and node attributes."""
    try:
        model = _infer_model_config(graph, weights)
    except KeyError as err:
        raise BadInput(f"Not a Piper VITS voice: missing weight {err}") from err
    audio = AudioConfig(sample_rate=info.sample_rate, hop_length=model.hop_length)
    if model.n_speakers != max(info.num_speakers, 1) and info.num_speakers > 1:
        raise BadInput(f"Voice JSON says {info.num_speakers} speakers, model has {model.n_speakers}")
    return VitsConfig(name="piper-import", audio=audio, model=model)


def _infer_model_config(graph, w: dict[str, np.ndarray]) -> ModelConfig:
    emb = w["enc_p.emb.weight"]
    rel = w["enc_p.encoder.attn_layers.0.emb_rel_k"]
    ffn = w["enc_p.encoder.ffn_layers.0.conv_1.weight"]
    n_ups = _count(w, r"^dec\.ups\.(\d+)\.")
    n_blocks = _count(w, r"^dec\.resblocks\.(\d+)\.")
    n_kernels = n_blocks // n_ups
    block1 = any(".convs1." in k for k in w if k.startswith("dec.resblocks."))
    conv_name = "convs1" if block1 else "convs"
    kernels, dilations = [], []
    for j in range(n_kernels):
        n_convs = _count(w, rf"^dec\.resblocks\.{j}\.{conv_name}\.(\d+)\.")
        kernels.append(int(w[f"dec.resblocks.{j}.{conv_name}.0.weight"].shape[2]))
        dilations.append(tuple(
            int((_node_attr(graph, f"/dec/resblocks.{j}/{conv_name}.{i}/Conv", "dilations") or [1])[0])
            for i in range(n_convs)))
    rates = [int((_node_attr(graph, f"/dec/ups.{i}/ConvTranspose", "strides") or [0])[0])
             for i in range(n_ups)]
    ups_k = [int(w[f"dec.ups.{i}.weight"].shape[2]) for i in range(n_ups)]
    if not all(rates):
        rates = [k // 2 for k in ups_k]  # Piper always uses kernel = 2 × stride
    emb_g = w.get("emb_g.weight")
    return ModelConfig(
        n_vocab=int(emb.shape[0]), hidden_channels=int(emb.shape[1]),
        inter_channels=int(w["enc_p.proj.weight"].shape[0]) // 2,
        filter_channels=int(ffn.shape[0]), kernel_size=int(ffn.shape[2]),
        n_heads=int(emb.shape[1]) // int(rel.shape[2]), window_size=(int(rel.shape[1]) - 1) // 2,
        n_layers=_count(w, r"^enc_p\.encoder\.attn_layers\.(\d+)\."),
        resblock="1" if block1 else "2", resblock_kernel_sizes=tuple(kernels),
        resblock_dilation_sizes=tuple(dilations), upsample_rates=tuple(rates),
        upsample_initial_channel=int(w["dec.conv_pre.weight"].shape[0]),
        upsample_kernel_sizes=tuple(ups_k),
        n_speakers=int(emb_g.shape[0]) if emb_g is not None else 1,
        gin_channels=int(emb_g.shape[1]) if emb_g is not None else 0,
        use_sdp=any(k.startswith("dp.flows.") for k in w),
        n_flows=_count(w, r"^flow\.flows\.(\d+)\.pre\."),
        flow_layers=_count(w, r"^flow\.flows\.0\.enc\.in_layers\.(\d+)\."),
        dp_filter_channels=int(w["dp.conv_1.weight"].shape[0]) if "dp.conv_1.weight" in w else 256,
    )
