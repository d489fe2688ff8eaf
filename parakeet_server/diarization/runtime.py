"""What both diarization engines do alike at run time, kept out of either engine's module so the
offline backend never imports the pyannote one: the devices they accept, the stop check they
poll between steps, and the audio they warm up on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from parakeet_server.core.audio import SAMPLE_RATE, Waveform
from parakeet_server.core.errors import DeadlineExceeded, PreconditionFailed

DEVICES = ("auto", "cpu", "cuda")
WARM_UP_SECONDS = 3.0


def check_device(device: str) -> None:
    """ValueError unless `device` is a --device value (auto, cpu, cuda or cuda:N)."""
    if device not in DEVICES and not device.startswith("cuda:"):
        raise ValueError(f"device must be one of {', '.join(DEVICES)} (or cuda:N), not {device!r}")


def torch_device(device: str) -> Any:
    """The torch device for a --device value: auto picks the GPU when there is one."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PreconditionFailed(
            f"device {device!r} was requested but no CUDA GPU is visible", reason="DEVICE_UNAVAILABLE"
        )
    return torch.device(device)


def stop_check(should_stop: Callable[[], bool] | None) -> Callable[..., None]:
    """A check to call between steps (also a pyannote progress hook) that aborts with
    DeadlineExceeded once the caller has gone; a no-op without `should_stop`."""

    def check(*_args: Any, **_kwargs: Any) -> None:
        if should_stop is not None and should_stop():
            raise DeadlineExceeded("the deadline passed (or the call was cancelled) during diarization")

    return check


def warm_up_waveform() -> Waveform:
    """A few seconds of tone and noise: enough for every diarization step to run once."""
    seconds = np.arange(int(WARM_UP_SECONDS * SAMPLE_RATE), dtype=np.float64) / SAMPLE_RATE
    noise = np.random.default_rng(0).standard_normal(seconds.size)
    samples = 0.3 * np.sin(2 * np.pi * 220.0 * seconds) + 0.05 * noise
    return Waveform(samples.astype(np.float32))
