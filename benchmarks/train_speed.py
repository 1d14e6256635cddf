"""VITS training throughput: steps/s and clips/s per preset, in one process and with DDP.

Clips are synthetic (noise-free harmonic tones, about CLIP_S long, random phoneme
ids): the speed of a step does not depend on what the audio says. Each row runs
WARMUP_STEPS first (cuDNN autotuning, numba compilation, caches), then times
``--steps``. The DDP row starts the same ranks a ``train vits --gpus`` job
starts (torchrun, one process per GPU; ``cpu:N`` for N gloo CPU processes) and
reads their own steps/s from rank 0's metrics.

    python benchmarks/train_speed.py                              # tiny on CPU
    python benchmarks/train_speed.py --device cuda --presets medium mb-istft --precision bf16
    python benchmarks/train_speed.py --device cuda --presets medium --gpus 0,1
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from engines.vits import distributed  # noqa: E402
from engines.vits.train import (RunState, TrainConfig, TrainItem, VitsDataset,  # noqa: E402
                                train_step)

SAMPLE_RATE = 22050
#: Length of each synthetic clip, in seconds (a typical dataset clip).
CLIP_S = 4.0
#: Phoneme ids per clip (about what 4 s of speech has, blanks included).
CLIP_IDS = 120
CLIPS = 32
WARMUP_STEPS = 2


def make_clips(folder: Path) -> list[TrainItem]:
    """CLIPS WAV files of harmonic tones with random ids, written to ``folder``."""
    rng = np.random.default_rng(0)
    t = np.arange(int(CLIP_S * SAMPLE_RATE)) / SAMPLE_RATE
    items = []
    for i in range(CLIPS):
        f0 = 100 + 5 * i
        audio = sum(0.1 / k * np.sin(2 * np.pi * f0 * k * t) for k in range(1, 6))
        path = folder / f"clip{i}.wav"
        sf.write(path, audio.astype(np.float32), SAMPLE_RATE)
        items.append(TrainItem(path, [0] + list(rng.integers(3, 100, CLIP_IDS)) + [0]))
    return items


def one_process(cfg: TrainConfig, items: list[TrainItem], steps: int) -> float:
    """Steps per second of the ordinary single-process loop."""
    state = RunState.create(cfg)
    data = VitsDataset(items, state.config)
    for _ in range(WARMUP_STEPS):
        train_step(state, state.next_batch(data))
    _sync()
    start = time.perf_counter()
    for _ in range(steps):
        train_step(state, state.next_batch(data))
    _sync()
    return steps / (time.perf_counter() - start)


def ddp(cfg: TrainConfig, items: list[TrainItem], steps: int, gpus: str, folder: Path) -> float:
    """Steps per second of a torchrun DDP run (rank 0's own figure, warm-up excluded)."""
    gpu_ids, processes = distributed.parse_gpus(gpus)
    cfg = TrainConfig.from_dict({**cfg.to_dict(), "val_items": 0, "log_every": 1,
                                 "max_steps": WARMUP_STEPS + steps, "checkpoint_every": 10 ** 9})
    state = RunState.create(distributed.build_config(cfg))
    start = distributed.save_start(state, cfg, folder)
    distributed.prepare_features(cfg, state.config, items, folder / "cache")
    spec = distributed.DistSpec(
        start=str(start), out_dir=str(folder), cache_dir=str(folder / "cache"),
        items=[{"audio": str(i.audio), "ids": [int(x) for x in i.ids]} for i in items],
        backend="gloo" if gpu_ids is None else "nccl", gpus=gpu_ids, processes=processes)
    rates: dict[int, float] = {}
    distributed.DistributedRun(spec).run(
        on_metrics=lambda step, values: rates.setdefault(step, values["speed/steps_per_s"]))
    # Rank 0's steps/s counts from the run's start: step N came N / rate seconds in.
    last, first = WARMUP_STEPS + steps, WARMUP_STEPS
    return steps / (last / rates[last] - first / rates[first])


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    """Print steps/s and clips/s per preset, then the DDP row."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--gpus", help="also run DDP: '0,1' or 'cpu:2'")
    args = parser.parse_args()
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU"
    print(f"device: {name}; torch threads {torch.get_num_threads()}; batch {args.batch_size} "
          f"x {CLIP_S:.0f} s clips; {args.precision}")
    print(f"{'preset':10s} {'processes':>9s} {'steps/s':>8s} {'clips/s':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        items = make_clips(Path(tmp))
        for preset in args.presets:
            cfg = TrainConfig(preset=preset, batch_size=args.batch_size, device=args.device,
                              precision=args.precision)
            rate = one_process(cfg, items, args.steps)
            print(f"{preset:10s} {1:9d} {rate:8.3f} {rate * args.batch_size:8.1f}")
            if args.gpus:
                folder = Path(tmp) / f"ddp-{preset}"
                folder.mkdir()
                rate = ddp(cfg, items, args.steps, args.gpus, folder)
                world = distributed.parse_gpus(args.gpus)[1]
                print(f"{preset:10s} {world:9d} {rate:8.3f} {rate * args.batch_size * world:8.1f}")


if __name__ == "__main__":
    main()
