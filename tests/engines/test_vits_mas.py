"""Monotonic alignment search against a brute-force search over every monotonic path."""
import itertools

import numpy as np
import pytest
import torch

from engines.vits.monotonic_align import maximum_path, maximum_path_torch


def brute_force_best(values: np.ndarray) -> tuple[float, np.ndarray]:
    """Best monotonic path through values [t_y, t_x] by enumerating every path."""
    t_y, t_x = values.shape
    best, best_path = -np.inf, None
    for steps in itertools.product((0, 1), repeat=t_y - 1):
        if sum(steps) != t_x - 1:
            continue
        xs = np.concatenate([[0], np.cumsum(steps)])
        score = values[np.arange(t_y), xs].sum()
        if score > best:
            best, best_path = score, xs
    path = np.zeros_like(values)
    path[np.arange(t_y), best_path] = 1
    return best, path


def random_batch(seed: int):
    rng = np.random.default_rng(seed)
    lengths = [(7, 3), (5, 5), (8, 4), (6, 1)]  # (frames, tokens) per item
    t_y, t_x = max(l[0] for l in lengths), max(l[1] for l in lengths)
    values = rng.standard_normal((len(lengths), t_y, t_x)).astype(np.float32)
    mask = np.zeros_like(values)
    for b, (ny, nx) in enumerate(lengths):
        mask[b, :ny, :nx] = 1
    return torch.from_numpy(values), torch.from_numpy(mask), lengths


@pytest.mark.parametrize("impl", [maximum_path, maximum_path_torch], ids=["numba", "torch"])
@pytest.mark.parametrize("seed", range(5))
def test_mas_matches_brute_force(impl, seed):
    values, mask, lengths = random_batch(seed)
    paths = impl(values, mask).numpy()
    for b, (ny, nx) in enumerate(lengths):
        expected_score, expected_path = brute_force_best(values[b, :ny, :nx].numpy())
        np.testing.assert_array_equal(paths[b, :ny, :nx], expected_path)
        assert paths[b].sum() == ny  # exactly one token per frame, nothing in the padding


def test_mas_leaves_input_untouched():
    values, mask, _ = random_batch(0)
    before = values.clone()
    maximum_path(values, mask)
    assert torch.equal(values, before)
