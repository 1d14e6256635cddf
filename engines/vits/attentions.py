"""Transformer text encoder with relative-position multi-head self-attention (VITS layout)."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .modules import LayerNorm

#: Score given to masked positions before the softmax (finite so fp16 stays finite).
MASKED_SCORE = -1e4


class Encoder(nn.Module):
    """Stack of (relative self-attention, conv feed-forward) layers with post-norm."""

    def __init__(self, hidden_channels: int, filter_channels: int, n_heads: int, n_layers: int,
                 kernel_size: int = 1, p_dropout: float = 0.0, window_size: int = 4):
        super().__init__()
        self.drop = nn.Dropout(p_dropout)
        self.attn_layers = nn.ModuleList()
        self.norm_layers_1 = nn.ModuleList()
        self.ffn_layers = nn.ModuleList()
        self.norm_layers_2 = nn.ModuleList()
        for _ in range(n_layers):
            self.attn_layers.append(MultiHeadAttention(
                hidden_channels, hidden_channels, n_heads, p_dropout, window_size))
            self.norm_layers_1.append(LayerNorm(hidden_channels))
            self.ffn_layers.append(FFN(hidden_channels, hidden_channels, filter_channels,
                                       kernel_size, p_dropout))
            self.norm_layers_2.append(LayerNorm(hidden_channels))

    def forward(self, x, x_mask):
        attn_mask = x_mask.unsqueeze(2) * x_mask.unsqueeze(-1)
        x = x * x_mask
        layers = zip(self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2)
        for attn, norm1, ffn, norm2 in layers:
            x = norm1(x + self.drop(attn(x, x, attn_mask)))
            x = norm2(x + self.drop(ffn(x, x_mask)))
        return x * x_mask


class MultiHeadAttention(nn.Module):
    """Multi-head attention with learned relative-position keys and values (Shaw et al.)."""

    def __init__(self, channels: int, out_channels: int, n_heads: int, p_dropout: float = 0.0,
                 window_size: int | None = 4):
        super().__init__()
        assert channels % n_heads == 0
        self.n_heads = n_heads
        self.k_channels = channels // n_heads
        self.window_size = window_size
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, out_channels, 1)
        self.drop = nn.Dropout(p_dropout)
        if window_size is not None:
            std = self.k_channels**-0.5
            # One table shared by all heads, as in VITS.
            self.emb_rel_k = nn.Parameter(torch.randn(1, 2 * window_size + 1, self.k_channels) * std)
            self.emb_rel_v = nn.Parameter(torch.randn(1, 2 * window_size + 1, self.k_channels) * std)
        for conv in (self.conv_q, self.conv_k, self.conv_v):
            nn.init.xavier_uniform_(conv.weight)

    def forward(self, x, c, attn_mask=None):
        q, k, v = self.conv_q(x), self.conv_k(c), self.conv_v(c)
        return self.conv_o(self._attend(q, k, v, attn_mask))

    def _attend(self, query, key, value, mask):
        b, d, t_s = key.shape
        t_t = query.size(2)
        q = query.view(b, self.n_heads, self.k_channels, t_t).transpose(2, 3)
        k = key.view(b, self.n_heads, self.k_channels, t_s).transpose(2, 3)
        v = value.view(b, self.n_heads, self.k_channels, t_s).transpose(2, 3)
        q = q / math.sqrt(self.k_channels)
        scores = torch.matmul(q, k.transpose(-2, -1))
        if self.window_size is not None:
            rel_k = self._relative_embeddings(self.emb_rel_k, t_s)
            rel_logits = torch.matmul(q, rel_k.unsqueeze(0).transpose(-2, -1))
            scores = scores + _relative_to_absolute(rel_logits)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, MASKED_SCORE)
        p_attn = self.drop(F.softmax(scores, dim=-1))
        out = torch.matmul(p_attn, v)
        if self.window_size is not None:
            rel_v = self._relative_embeddings(self.emb_rel_v, t_s)
            out = out + torch.matmul(_absolute_to_relative(p_attn), rel_v.unsqueeze(0))
        return out.transpose(2, 3).contiguous().view(b, d, t_t)

    def _relative_embeddings(self, table: torch.Tensor, length: int) -> torch.Tensor:
        """Rows of the table for offsets -(length-1)..(length-1), zero beyond the window."""
        # Pad before slicing so the exported graph needs no conditional.
        pad = max(length - (self.window_size + 1), 0)
        start = max((self.window_size + 1) - length, 0)
        if pad > 0:
            table = F.pad(table, (0, 0, pad, pad, 0, 0))
        return table[:, start:start + 2 * length - 1]


def _relative_to_absolute(x: torch.Tensor) -> torch.Tensor:
    """[b, h, l, 2l-1] logits indexed by offset → [b, h, l, l] indexed by key position."""
    b, h, length, _ = x.shape
    x = F.pad(x, (0, 1, 0, 0, 0, 0, 0, 0))
    flat = F.pad(x.view(b, h, length * 2 * length), (0, length - 1, 0, 0, 0, 0))
    return flat.view(b, h, length + 1, 2 * length - 1)[:, :, :length, length - 1:]


def _absolute_to_relative(x: torch.Tensor) -> torch.Tensor:
    """[b, h, l, l] weights by key position → [b, h, l, 2l-1] weights by offset."""
    b, h, length, _ = x.shape
    x = F.pad(x, (0, length - 1, 0, 0, 0, 0, 0, 0))
    flat = F.pad(x.view(b, h, length * length + length * (length - 1)), (length, 0, 0, 0, 0, 0))
    return flat.view(b, h, length, 2 * length)[:, :, :, 1:]


class FFN(nn.Module):
    """Two 'same'-padded convolutions with a ReLU between them."""

    def __init__(self, in_channels: int, out_channels: int, filter_channels: int,
                 kernel_size: int, p_dropout: float = 0.0):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, out_channels, kernel_size)
        self.drop = nn.Dropout(p_dropout)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        left = (self.kernel_size - 1) // 2
        return F.pad(x, (left, self.kernel_size // 2, 0, 0, 0, 0))

    def forward(self, x, x_mask):
        x = self.drop(torch.relu(self.conv_1(self._pad(x * x_mask))))
        return self.conv_2(self._pad(x * x_mask)) * x_mask
