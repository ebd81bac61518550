"""The L³ audio front end as a Keras layer: (batch, samples) waveform -> (batch, frequency, time, 1) log-spectrogram.

Built on ``keras.ops.stft`` (no hand-written DFT), so it runs on TensorFlow, JAX and PyTorch alike. ``keras.ops.stft``
zero-pads a window shorter than the FFT to the FFT length *inside* each frame, centred (16 zeros each side for 480 in
512), so that its frames are ``fft_length`` samples long: ``1 + (n - 512) // 240 = 198`` for 1 s. Padding the
signal with those same zeros at both ends first (:meth:`LogSpectrogram.call`) puts frame ``t``'s 480 windowed samples
exactly at ``[t * hop, t * hop + window)``, as a frame-by-frame STFT without centre padding has them, and gives the
paper's ``(48,000 - 480) / 240 + 1 = 199`` frames; the zeros only meet the window's zero padding, so the magnitudes
are those of each 480-sample frame (periodic Hann) zero-padded to 512 (see :mod:`.tables`).
"""

from __future__ import annotations

import keras

from ..errors import ConfigError
from .tables import FFT_LENGTH, LOG_EPSILON, STFT_HOP, STFT_WINDOW


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"LogSpectrogram {what} must be a positive integer, got {value!r}")
    return value


@keras.saving.register_keras_serializable(package="soundnet_keras")
class LogSpectrogram(keras.layers.Layer):
    """``log(|STFT| + epsilon)`` of (batch, samples) float32 audio, as (batch, fft_length // 2 + 1, frames, 1).

    Frames of ``window`` samples every ``hop`` samples, without centre padding, periodic Hann window, FFT of
    ``fft_length`` points; frequency on axis 1, time on axis 2 (the paper's 257 × 199 "image" for 1 s at 48 kHz).
    """

    def __init__(
        self,
        window: int = STFT_WINDOW,
        hop: int = STFT_HOP,
        fft_length: int = FFT_LENGTH,
        epsilon: float = LOG_EPSILON,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.window = _positive_int(window, "window")
        self.hop = _positive_int(hop, "hop")
        self.fft_length = _positive_int(fft_length, "fft_length")
        if self.fft_length < self.window:
            raise ConfigError(f"LogSpectrogram fft_length {fft_length} is shorter than its window {window}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ConfigError(f"LogSpectrogram epsilon must be a positive number, got {epsilon!r}")
        self.epsilon = float(epsilon)

    def frames(self, samples: int) -> int:
        """Spectrogram frames of ``samples`` samples (0 below one window)."""
        return max(0, (samples - self.window) // self.hop + 1)

    def call(self, waveform):
        ops = keras.ops
        left = (self.fft_length - self.window) // 2
        right = self.fft_length - self.window - left
        padded = ops.pad(ops.cast(waveform, "float32"), [[0, 0], [left, right]])
        real, imag = ops.stft(padded, self.window, self.hop, self.fft_length, window="hann", center=False)
        magnitude = ops.sqrt(ops.square(real) + ops.square(imag))
        spectrogram = ops.log(magnitude + self.epsilon)  # (batch, time, frequency)
        return ops.expand_dims(ops.transpose(spectrogram, (0, 2, 1)), -1)

    def compute_output_shape(self, input_shape):
        samples = input_shape[1]
        return (input_shape[0], self.fft_length // 2 + 1, None if samples is None else self.frames(samples), 1)

    def get_config(self) -> dict:
        names = ("window", "hop", "fft_length", "epsilon")
        return {**super().get_config(), **{name: getattr(self, name) for name in names}}
