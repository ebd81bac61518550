"""One loader for every network of the package: a weights file's architecture says whether it is a SoundNet or an
L³-Net, and :func:`load_network` returns the matching facade, so every downstream tool (heads, benchmarks,
extraction, event lists) takes either unchanged."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .l3.tables import is_l3
from .precision import DEFAULT_PRECISION


def load_network(weights: str | os.PathLike = "soundnet8", *, verbose: bool = True, precision: str = DEFAULT_PRECISION):
    """The network of ``weights``: an L³-Net ``.weights.h5`` file gives an :class:`~soundnet_keras.l3.L3Net`;
    anything else (a SoundNet preset name, ``.weights.h5``, ``.t7`` or ``sound8.npy``) a
    :class:`~soundnet_keras.SoundNet` (see :meth:`SoundNet.from_pretrained <soundnet_keras.SoundNet.from_pretrained>`).
    """
    from .weights import file_architecture

    if not isinstance(weights, (str, os.PathLike)):
        raise ConfigError(f"weights must be a preset name or a weights file path, got {weights!r}")
    if Path(weights).is_file() and is_l3(file_architecture(weights)):
        from .l3.model import L3Net  # imports Keras: only when a network loads

        return L3Net.from_pretrained(weights, verbose=verbose, precision=precision)
    from .model import SoundNet  # imports Keras: only when a network loads

    return SoundNet.from_pretrained(weights, verbose=verbose, precision=precision)


def is_network(net: Any) -> bool:
    """Whether ``net`` is a network facade of this package (a SoundNet or an L³-Net)."""
    from .l3.model import L3Net
    from .model import SoundNet

    return isinstance(net, (SoundNet, L3Net))
