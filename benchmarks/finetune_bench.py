"""Fine-tune the bundled Piper voice on a few minutes of another generated voice, on CPU.

The target speaker comes from ``tests/speech.py`` (default 1: the Piper voice with pitch
and formants raised 1.3x, a smaller, higher speaker; 2 is espeak-ng). The run goes
through the real job path (``projects.training.start_run`` + ``jobs.run_job``).
Reported before and after N steps:

- validation mel L1 on held-out clips (text rendered with the clips' true durations);
- speaker similarity: resemblyzer cosine between held-out sentences synthesised by the
  model and the mean embedding of the target speaker's training clips (and, for scale,
  the bundled voice's own similarity to that target).

    python benchmarks/finetune_bench.py [--steps 8] [--clips 40] [--speaker 1] [--batch-size 2]
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines import audio as audio_io  # noqa: E402
from engines.speaker import embed_clips  # noqa: E402
from engines.vits import train as vits_train  # noqa: E402
from projects import jobs, synthesis, training, voices  # noqa: E402
from projects.projects import create_project  # noqa: E402
from projects.store import Store, now  # noqa: E402
from projects.workspace import Workspace  # noqa: E402
from tests.speech import SENTENCES, speak  # noqa: E402

RATE = 22050
#: Sentences synthesised for the similarity measure (not in the training clips).
HELD_OUT = ["The old lighthouse stood at the edge of the harbour.",
            "Every evening the keeper climbed the spiral stairs.",
            "Ships passing in the night would see the beam sweep across the water."]


def clip_texts(n: int) -> list[str]:
    """``n`` texts: the test sentences (about 3 s each), then pairs of them (about 6 s)."""
    pairs = (f"{a} {b}" for a, b in itertools.permutations(SENTENCES, 2))
    return list(itertools.islice(itertools.chain(SENTENCES, pairs), n))


def build_dataset(store, ws, project, texts: list[str], speaker: int) -> list[np.ndarray]:
    """Accepted clips of one speaker in the store; returns their audio at 16 kHz."""
    sid = store.db["speakers"].insert({"project_id": project.id, "name": "Target",
                                       "created_at": now(), "origin": "user"}).last_pk
    clips16 = []
    for i, text in enumerate(texts):
        audio, sr = speak(text, speaker)
        clips16.append(audio)
        path = ws.project_dir(project.slug) / "clips" / f"target-{i:03d}.wav"
        audio_io.write_wav(path, audio_io.resample(audio, sr, RATE), RATE)
        store.db["clips"].insert({"project_id": project.id, "speaker_id": sid,
                                  "path": ws.relative(path), "duration_s": len(audio) / sr,
                                  "text": text, "review": "accepted", "created_at": now()})
    return clips16


def similarity(target_mean: np.ndarray, voice) -> float:
    """Mean cosine of held-out sentences spoken by ``voice`` to the target's mean embedding."""
    audios = []
    for text in HELD_OUT:
        torch.manual_seed(0)
        audio, rate = synthesis.synthesize(text, voice, noise_scale=0.333, noise_w=0.333)
        audios.append(audio_io.resample(audio, rate, 16000))
    emb = embed_clips(audios, 16000)
    return float(np.mean(emb @ target_mean))


def val_mel(checkpoint_or_state, val_items) -> float:
    """Validation mel L1 of a RunState (or a checkpoint path) on the held-out items."""
    state = checkpoint_or_state
    if isinstance(state, (str, Path)):
        state = vits_train.RunState.load_checkpoint(state, device="cpu")
    return vits_train.validation_mel_loss(state, vits_train.VitsDataset(val_items, state.config))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--speaker", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    ws = Workspace.open(Path(tempfile.mkdtemp(prefix="finetune-bench-")) / "ws")
    store = Store(ws.db_path)
    project = create_project(store, ws, "Finetune bench")
    t0 = time.perf_counter()
    clips16 = build_dataset(store, ws, project, clip_texts(args.clips), args.speaker)
    minutes = sum(len(c) for c in clips16) / 16000 / 60
    target_mean = embed_clips(clips16, 16000).mean(axis=0)
    target_mean /= np.linalg.norm(target_mean)
    print(f"data: {len(clips16)} clips, {minutes:.1f} min of speaker {args.speaker} "
          f"({time.perf_counter() - t0:.0f} s to make)", flush=True)

    bundled = voices.bundled_voice()
    opts = training.RunOptions(preset="medium", max_steps=args.steps, batch_size=args.batch_size,
                               learning_rate=args.learning_rate, checkpoint_every=args.steps,
                               log_every=5, val_items=4, keep_last=1, device="cpu",
                               base_voice=bundled.key)
    print(training.preflight(store, ws, project.name, "Target", opts).summary(), flush=True)
    run = training.start_run(store, ws, project.name, "Target", opts)

    # "Before": the imported voice exactly as the run starts from it.
    base = training.resolve_base(store, ws, project, opts)
    cfg = vits_train.TrainConfig(preset="medium", device="cpu")
    start_state = vits_train.RunState.create(cfg, base.config, init_generator=base.generator)
    started = time.perf_counter()
    job = jobs.run_job(store, ws, run.job_id)
    train_s = time.perf_counter() - started
    if job.status != "done":
        sys.exit(f"run failed: {job.error or job.message}")
    run = training.get_run(store, run.id)
    folder = training.run_dir(ws, run)
    entries = json.loads((folder / training.ITEMS_NAME).read_text())
    items = [vits_train.TrainItem(ws.root / e["path"], e["ids"]) for e in entries]
    _, val_items = vits_train.split_items(items, opts.val_items)

    before_mel = val_mel(start_state, val_items)
    after_mel = val_mel(training.latest_checkpoint(folder), val_items)
    before_sim = similarity(target_mean, bundled)
    after_sim = similarity(target_mean, synthesis.checkpoint_voice(store, ws, run.id, args.steps))
    steps_per_s = args.steps / train_s
    figures = {"steps": args.steps, "batch_size": args.batch_size, "clips": len(clips16),
               "minutes": round(minutes, 2), "train_s": round(train_s, 1),
               "steps_per_s": round(steps_per_s, 4),
               "val_mel_before": round(before_mel, 4), "val_mel_after": round(after_mel, 4),
               "similarity_before": round(before_sim, 4), "similarity_after": round(after_sim, 4),
               "threads": torch.get_num_threads()}
    print(f"\n{'':<28}{'before':>10}{'after':>10}")
    print(f"{'validation mel L1':<28}{before_mel:>10.3f}{after_mel:>10.3f}")
    print(f"{'resemblyzer cosine to target':<28}{before_sim:>10.3f}{after_sim:>10.3f}")
    print(f"\n{args.steps} steps (batch {args.batch_size}) in {train_s:.0f} s "
          f"= {steps_per_s:.3f} steps/s on CPU ({torch.get_num_threads()} threads)")
    print(json.dumps(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
