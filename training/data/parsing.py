"""Compact face-parsing classes shared by the data cache and the model (``parsing_channels``).

CelebAMask-HQ labels 19 classes, several of them left/right pairs or accessories. The model
predicts 7 compact classes without left/right, so a horizontal flip needs no label swap.
"""

from __future__ import annotations

import numpy as np

from model.ssp import PARSING_CLASSES

COMPACT_CLASSES: tuple[str, ...] = PARSING_CLASSES  # what the network's parsing head predicts
NUM_COMPACT_CLASSES = len(COMPACT_CLASSES)

# CelebAMask-HQ ids: 0 background, 1 skin, 2 nose, 3 eyeglasses, 4 left eye, 5 right eye,
# 6 left brow, 7 right brow, 8 left ear, 9 right ear, 10 mouth, 11 upper lip, 12 lower lip,
# 13 hair, 14 hat, 15 earring, 16 necklace, 17 neck, 18 cloth.
CELEBAMASK_TO_COMPACT: dict[str, tuple[int, ...]] = {
    "background": (0, 16, 18),
    "skin": (1, 8, 9, 15, 17),
    "brows": (6, 7),
    "eyes": (3, 4, 5),
    "nose": (2,),
    "mouth": (10, 11, 12),
    "hair": (13, 14),
}

# CelebAMask-HQ ids used to measure framing from masks.
CELEBAMASK_EYES = (4, 5)
CELEBAMASK_MOUTH = (10, 11, 12)


def _celebamask_lookup() -> np.ndarray:
    # Unknown ids (palette indices above 18) fall back to background rather than failing.
    table = np.zeros(256, dtype=np.uint8)
    for compact_id, name in enumerate(COMPACT_CLASSES):
        for source_id in CELEBAMASK_TO_COMPACT[name]:
            table[source_id] = compact_id
    return table


_CELEBAMASK_LOOKUP = _celebamask_lookup()


def compact_from_celebamask(mask: np.ndarray) -> np.ndarray:
    """Map a CelebAMask-HQ id mask (uint8, any shape) to compact class ids."""
    return _CELEBAMASK_LOOKUP[np.asarray(mask, dtype=np.uint8)]


def one_hot(parsing: np.ndarray, num_classes: int = NUM_COMPACT_CLASSES) -> np.ndarray:
    """H×W compact ids -> float32 P×H×W one-hot."""
    ids = np.asarray(parsing, dtype=np.int64)
    return (np.arange(num_classes)[:, None, None] == ids[None]).astype(np.float32)
