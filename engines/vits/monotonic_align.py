"""Monotonic alignment search (MAS): the best monotonic text→frame path under the prior.

Two implementations with the same result:

* a numba kernel, parallel over the batch, used for CPU tensors;
* a torch version vectorised over batch and text positions (one step per frame),
  used on GPU so the scores never leave the device.
"""
from __future__ import annotations

import numpy as np
import torch

try:
    import numba
except ImportError:  # pragma: no cover - numba ships with the studio
    numba = None

#: Score of impossible cells.
NEG_INF = -1e9


def maximum_path(neg_cent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hard alignment [b, t_y, t_x] (0/1) maximising the summed ``neg_cent`` along a monotonic path.

    ``neg_cent`` [b, t_y, t_x]: log-likelihood of frame y under text position x.
    ``mask`` [b, t_y, t_x]: 1 inside each item's (frames, tokens) rectangle.
    """
    if neg_cent.device.type == "cpu" and numba is not None:
        return _maximum_path_numba(neg_cent, mask)
    return maximum_path_torch(neg_cent, mask)


def _maximum_path_numba(neg_cent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    values = neg_cent.detach().float().numpy().astype(np.float32, copy=True)
    t_ys = mask.sum(1)[:, 0].long().numpy().astype(np.int32)
    t_xs = mask.sum(2)[:, 0].long().numpy().astype(np.int32)
    paths = np.zeros(values.shape, dtype=np.float32)
    _mas_batch(paths, values, t_ys, t_xs)
    return torch.from_numpy(paths).to(neg_cent.dtype)


if numba is not None:

    @numba.njit(cache=True, nogil=True)
    def _mas_one(path, value, t_y, t_x):
        # Accumulate in place: value[y, x] becomes the best score of a path ending there.
        for y in range(t_y):
            for x in range(max(0, t_x + y - t_y), min(t_x, y + 1)):
                stay = NEG_INF if x == y else value[y - 1, x]
                if x == 0:
                    step = 0.0 if y == 0 else NEG_INF
                else:
                    step = value[y - 1, x - 1]
                value[y, x] += max(stay, step)
        index = t_x - 1
        for y in range(t_y - 1, -1, -1):
            path[y, index] = 1.0
            if index != 0 and (index == y or value[y - 1, index] < value[y - 1, index - 1]):
                index -= 1

    @numba.njit(cache=True, parallel=True)
    def _mas_batch(paths, values, t_ys, t_xs):
        for b in numba.prange(paths.shape[0]):
            _mas_one(paths[b], values[b], t_ys[b], t_xs[b])


def maximum_path_torch(neg_cent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MAS in torch: a loop over frames, each step vectorised over batch and text positions."""
    b, t_y, t_x = neg_cent.shape
    device = neg_cent.device
    value = neg_cent.float().masked_fill(mask == 0, NEG_INF)
    t_ys = mask.sum(1)[:, 0].long()
    t_xs = mask.sum(2)[:, 0].long()
    xs = torch.arange(t_x, device=device)
    acc = torch.full((b, t_y, t_x), NEG_INF, device=device)
    acc[:, 0, 0] = value[:, 0, 0]
    for y in range(1, t_y):
        prev = acc[:, y - 1]
        diag = torch.cat([torch.full_like(prev[:, :1], NEG_INF), prev[:, :-1]], 1)
        best = torch.maximum(prev.masked_fill(xs == y, NEG_INF), diag)
        acc[:, y] = (value[:, y] + best).masked_fill(xs > y, NEG_INF)
    return _backtrack(acc, t_ys, t_xs).to(neg_cent.dtype) * mask


def _backtrack(acc: torch.Tensor, t_ys: torch.Tensor, t_xs: torch.Tensor) -> torch.Tensor:
    b, t_y, _ = acc.shape
    rows = torch.arange(b, device=acc.device)
    path = torch.zeros_like(acc)
    index = t_xs - 1
    for y in range(t_y - 1, -1, -1):
        active = y < t_ys
        path[rows, y, index] = active.float()
        if y == 0:
            break
        stay = acc[rows, y - 1, index]
        step = acc[rows, y - 1, (index - 1).clamp(min=0)]
        move = active & (index != 0) & ((index == y) | (stay < step))
        index = index - move.long()
    return path
