"""L³-Net (Arandjelović & Zisserman, ICCV 2017): audio and vision subnetworks and the AVC fusion head, in Keras 3.

>>> from soundnet_keras.l3 import L3Net
>>> net = L3Net()                                         # doctest: +SKIP
>>> net.features(waveform, 44100).values.shape            # doctest: +SKIP
(41, 512)

:mod:`.tables` (layer tables and geometry, no Keras), :mod:`.spectrogram` (the log-spectrogram layer),
:mod:`.network` (the Keras models), :mod:`.model` (the :class:`L3Net` facade); the data it trains on:
:mod:`.synthetic` (generated audio-visual videos) and :mod:`.avc_data` (AVC shards and pair batches).
"""

import importlib

from .tables import ARCHITECTURES, SAMPLE_RATE, is_l3

_LAZY = {"L3Net": "model", "LogSpectrogram": "spectrogram", "build_l3": "network"}


def __getattr__(name: str):
    """Import the Keras parts on first use, so that the geometry (imported by the SoundNet tables) stays light."""
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ARCHITECTURES", "SAMPLE_RATE", "L3Net", "LogSpectrogram", "build_l3", "is_l3"]
