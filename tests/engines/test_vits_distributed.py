"""Multi-GPU (DDP) training, checked on CPU with two gloo processes: the ranks stay in step,
each takes its own slice of the batch, and a run started through torchrun can be
stopped and resumed to the end."""
from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from engines.errors import BadInput, Cancelled, StudioError
from engines.vits import distributed
from engines.vits.train import RunState, TrainConfig, TrainItem, VitsDataset, train_step
from tests.engines.test_vits_train import synthetic_items

WORLD = 2


def _rank_steps(rank: int, init_file: str, out_file: str, steps: int) -> None:
    """Two DDP steps on this rank's slices; writes what the test compares."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    torch.set_num_threads(1)
    state = RunState.create(TrainConfig(preset="tiny", batch_size=1, seed=5, device="cpu"))
    torch.manual_seed(100 + rank)  # ranks draw different noise and segments, as in real runs
    state.wrap_ddp()
    data = VitsDataset(synthetic_items(4), state.config)
    seen = []
    for _ in range(steps):
        batch = state.next_batch(data)
        seen.append(batch.ids[0, : int(batch.id_lengths[0])].tolist())
        train_step(state, batch)
    weights = torch.cat([p.detach().flatten() for p in state.gen.parameters()])
    gathered = [torch.zeros_like(weights) for _ in range(WORLD)]
    dist.all_gather(gathered, weights)
    with open(out_file, "w") as f:
        json.dump({"max_diff": float((gathered[0] - gathered[1]).abs().max()), "seen": seen,
                   "epoch": state.epoch}, f)
    dist.destroy_process_group()


def test_ddp_ranks_share_gradients_and_split_the_batches(tmp_path):
    outs = [tmp_path / f"rank{r}.json" for r in range(WORLD)]
    mp.spawn(_per_rank, args=(str(tmp_path / "init"), [str(o) for o in outs]), nprocs=WORLD)
    rank0, rank1 = (json.loads(o.read_text()) for o in outs)
    # Different batches and noise on each rank, yet identical weights: gradients were averaged.
    assert rank0["max_diff"] == 0.0
    assert all(a != b for a, b in zip(rank0["seen"], rank1["seen"]))
    # 4 clips, 2 ranks x 1 clip per step: the 3rd step starts the second epoch.
    assert rank0["epoch"] == rank1["epoch"] == 1


def _per_rank(rank, init_file, outs):
    _rank_steps(rank, init_file, outs[rank], steps=3)


def _write_items(folder, n=6):
    import soundfile as sf

    items = []
    for i, item in enumerate(synthetic_items(n)):
        path = folder / f"clip{i}.wav"
        sf.write(path, item.audio, item.sample_rate)
        items.append({"audio": str(path), "ids": [int(x) for x in item.ids], "speaker": 0})
    return items


def _spec(folder, items, start):
    return distributed.DistSpec(start=str(start), items=items, out_dir=str(folder),
                                cache_dir=str(folder / "cache"), backend="gloo", processes=2)


def test_torchrun_run_stops_on_request_and_resumes_to_the_end(tmp_path):
    items = _write_items(tmp_path)
    cfg = TrainConfig(preset="tiny", batch_size=1, max_steps=4, checkpoint_every=3, log_every=1,
                      val_items=1, device="cpu", seed=9)
    state = RunState.create(cfg)
    start = state.save_checkpoint(tmp_path / distributed.INIT_NAME)
    distributed.prepare_features(cfg, state.config, [TrainItem(i["audio"], i["ids"]) for i in items],
                                 tmp_path / "cache")
    steps: list[int] = []
    with pytest.raises(Cancelled):
        distributed.DistributedRun(_spec(tmp_path, items, start)).run(
            should_cancel=lambda: bool(steps), on_metrics=lambda s, v: steps.append(s))
    saved = sorted(tmp_path.glob("ckpt_*.pt"))
    assert saved, "a stopped run keeps a checkpoint"
    stopped_at = torch.load(saved[-1], weights_only=False)
    assert len(stopped_at["rng_ranks"]) == 2 and stopped_at["step"] < 4

    checkpoints = []
    final = distributed.DistributedRun(_spec(tmp_path, items, saved[-1])).run(
        on_metrics=lambda s, v: steps.append(s),
        on_checkpoint=lambda p, info: checkpoints.append(info))
    assert final == 4
    assert steps == list(range(1, 5))  # no step lost or repeated across the stop
    assert checkpoints[-1]["step"] == 4 and len(checkpoints[-1]["sample"]) > 0
    assert (tmp_path / "best.pt").is_file()


def test_gpu_lists_are_checked():
    assert distributed.parse_gpus("0,1") == ([0, 1], 2)
    assert distributed.parse_gpus("cpu:2") == (None, 2)
    for bad in ("", "0,0", "a,b", "cpu:0", "-1"):
        with pytest.raises(BadInput, match="GPU numbers"):
            distributed.parse_gpus(bad)


def test_a_failing_rank_comes_back_as_a_clear_error(tmp_path):
    items = _write_items(tmp_path, n=3)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(StudioError, match="Cannot read checkpoint"):
        distributed.DistributedRun(_spec(tmp_path, items, broken)).run()
    assert (tmp_path / distributed.LOG_NAME).is_file()
    # A rank that dies without reporting: the rank's own exception line is quoted, not torchrun's.
    (tmp_path / distributed.LOG_NAME).write_text(
        "[rank1]:   File \"train.py\", line 380, in load_checkpoint\n"
        "[rank1]: _pickle.UnpicklingError: invalid load key, 'n'.\n"
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n"
        "  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html\n")
    tail = distributed.DistributedRun(_spec(tmp_path, items, broken))._log_tail()
    assert tail == "_pickle.UnpicklingError: invalid load key, 'n'."
