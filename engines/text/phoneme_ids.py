"""Phonemes to model ids through a Piper ``phoneme_id_map``.

The layout is Piper's, so one id sequence feeds both Piper voices and our own
VITS models: ``^ _ p1 _ p2 _ ... pn _ $`` (bos, then every phoneme followed by
the pad/blank symbol, then eos).
"""
from __future__ import annotations

import logging
from typing import Mapping, Sequence

from engines.errors import BadInput

PAD = "_"
BOS = "^"
EOS = "$"

PhonemeIdMap = Mapping[str, Sequence[int]]

_LOG = logging.getLogger(__name__)


def default_id_map() -> dict[str, list[int]]:
    """Piper's standard espeak id map, as a fresh copy.

    A superset of the map in ``en_US-joe-medium.onnx.json`` (ids 0-150 are the same;
    later Piper releases added symbols 151-165).
    """
    from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP

    return {k: list(v) for k, v in DEFAULT_PHONEME_ID_MAP.items()}


def check_id_map(id_map: PhonemeIdMap) -> None:
    """Raise :class:`BadInput` unless the map has Piper's pad, bos and eos symbols."""
    missing = [s for s in (PAD, BOS, EOS) if s not in id_map]
    if missing:
        raise BadInput(f"The phoneme id map lacks the special symbols {' '.join(missing)}.")


def phoneme_ids(phonemes: Sequence[str], id_map: PhonemeIdMap) -> list[int]:
    """Ids for one sentence's phonemes; phonemes not in the map are dropped (and logged)."""
    check_id_map(id_map)
    pad = list(id_map[PAD])
    ids = list(id_map[BOS]) + pad
    unknown = set()
    for phoneme in phonemes:
        if phoneme not in id_map:
            unknown.add(phoneme)
            continue
        ids.extend(id_map[phoneme])
        ids.extend(pad)
    ids.extend(id_map[EOS])
    if unknown:
        _LOG.warning("Phonemes missing from the id map were skipped: %s", " ".join(sorted(unknown)))
    return ids


def num_symbols(id_map: PhonemeIdMap) -> int:
    """Size of the embedding table the map needs (largest id + 1)."""
    return 1 + max(i for ids in id_map.values() for i in ids)
