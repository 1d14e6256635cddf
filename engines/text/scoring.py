"""Comparing what was said with what was meant."""
from __future__ import annotations

from typing import Sequence


def word_edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Levenshtein distance over words (substitutions, insertions, deletions).

    Callers tokenize: how numbers, case and punctuation count differs by use.
    """
    row = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, 1):
        prev, row[0] = row[0], i
        for j, hyp_word in enumerate(hypothesis, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ref_word != hyp_word))
    return row[-1]
