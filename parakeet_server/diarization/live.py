"""Live diarization: speaker turns decided while the audio streams, labels fixed for the stream.

* `PyannoteLive` works the diart way (Coria et al. 2021): a window slides over the stream by a
  fixed step; each window's local speakers (an activity curve and an embedding each) are joined
  to the stream's global speakers by online clustering (parakeet_server.diarization.online);
  the windows' votes for each frame of a common frame grid are summed as they overlap; a frame
  is decided once no later window can vote for it, and decided frames become turns. It uses the
  two models the loaded speaker-diarization-3.1 pipeline already holds: its segmentation model
  (segmentation-3.0, powerset output taken as soft per-speaker activity) on a `window_s` window
  every `step_s`, and its WeSpeaker embedding model pooled with one weight curve per active
  local speaker (diart's overlapped-speech penalty), one forward pass per window for all of
  them. Frames are active where the windows' average activity passes `onset`, so turns may
  overlap, as the batch pipeline's do.
* `OfflineLive` runs the offline backend's own pieces incrementally: silero-vad's streaming
  iterator for speech regions, the backend's windows inside them (resemblyzer embedding and
  median pitch each) and, every `hop_s`, the backend's clustering of the whole history of
  windows, mapped onto the labels already sent (online.Reclustering). Window-by-window online
  clustering merged voices close in embedding and pitch that the batch clustering, seeing all
  windows at once, keeps apart (development conversations, seeds 3000-3009: live DER 0.24 ->
  0.14, batch 0.16). Every
  speech frame goes to the label whose centroid the windows covering it are closest to
  (Hann-weighted, like the batch backend); turns never overlap.

A turn that is still going on when a step ends is sent as a piece up to `decided_until`, so one
speaker's speech may come as several consecutive turns. `finish()` decides the rest (the last
windows zero-padded) and ends every turn at the end of the audio. Times are seconds from the
stream's first sample, whole milliseconds; labels are SPEAKER_00, SPEAKER_01, ... by first
appearance in the sent turns.

Cost per stream, measured on a shared 2-core CPU with one torch thread: offline ~0.05 x real
time for the embeddings, plus ~10 ms (10 minutes of audio) to ~20 ms (30 minutes) of clustering
per 0.5 s step (a clustering of at most 400 windows, at every window up to 300 windows and at
every fourth after); pyannote ~0.07 s of segmentation and ~0.3 s of embedding per 0.5 s step
(~0.7 x real time), which a GPU makes negligible and a larger `step_s` cuts in proportion. Each
step is one small forward pass, so torch's intra-op threads mostly wait on each other on a busy
CPU.

`DiarizeSession` wraps a diarizer for StreamingDiarize (the live-stream framework's session); with
known speakers its turns go through a `LiveNaming` (live_names.py), which names each speaker once.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from parakeet.v1 import audio_pb2, diarization_pb2, streaming_pb2
from parakeet_server.core.audio import SAMPLE_RATE
from parakeet_server.core.errors import DeadlineExceeded, PreconditionFailed
from parakeet_server.core.live import LiveOutput
from parakeet_server.core.times import whole_ms
from parakeet_server.diarization import campplus
from parakeet_server.diarization.clustering import true_runs
from parakeet_server.diarization.live_names import LiveNaming
from parakeet_server.diarization.online import OnlineClustering, OnlineParams, Reclustering, ReclusterParams
from parakeet_server.diarization.runtime import stop_check
from parakeet_server.diarization.types import SpeakerCounts, Turn

Floats = npt.NDArray[np.float32]
Response = diarization_pb2.StreamingDiarizeResponse


class OnlineDiarizer(Protocol):
    """One stream's live diarization; `feed` and `finish` return the turns they newly decided."""

    @property
    def decided_until(self) -> float:
        """Seconds from the stream's start whose speakers are final."""

    @property
    def speakers(self) -> list[str]:
        """Labels sent so far, in order of first appearance."""

    def feed(self, samples: Floats) -> list[Turn]: ...

    def finish(self) -> list[Turn]: ...


# -- the shared pieces: votes on a frame grid, decided frames to turns -------------------------


class _Votes:
    """Per-frame votes for each global speaker from overlapping windows, on the stream's grid.

    Rows are frames from `base` on; decided rows leave from the front (`take`), so memory holds
    only the frames some window may still vote for.
    """

    def __init__(self) -> None:
        self.base = 0
        self._scores = np.zeros((0, 0), dtype=np.float64)
        self._weights = np.zeros(0, dtype=np.float64)

    def add(self, first: int, weights: npt.NDArray[np.float64], scores: npt.NDArray[np.float64]) -> None:
        """One window's frame weights (frames,) and weighted scores (frames, speakers), from frame `first`."""
        start = first - self.base
        skip = max(0, -start)  # frames already decided (a window reaching back past them)
        start += skip
        weights, scores = weights[skip:], scores[skip:]
        rows = max(self._weights.size, start + weights.size)
        columns = max(self._scores.shape[1], scores.shape[1])
        if rows > self._weights.size or columns > self._scores.shape[1]:
            grown = np.zeros((rows, columns), dtype=np.float64)
            grown[: self._scores.shape[0], : self._scores.shape[1]] = self._scores
            self._scores = grown
            self._weights = np.concatenate([self._weights, np.zeros(rows - self._weights.size)])
        self._weights[start : start + weights.size] += weights
        self._scores[start : start + scores.shape[0], : scores.shape[1]] += scores

    def take(self, until: int, speakers: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Frames [base, until): their (frames, speakers) scores and (frames,) weights; they leave."""
        count = max(0, until - self.base)
        scores = np.zeros((count, speakers), dtype=np.float64)
        weights = np.zeros(count, dtype=np.float64)
        have = min(count, self._weights.size)
        scores[:have, : self._scores.shape[1]] = self._scores[:have]
        weights[:have] = self._weights[:have]
        self._scores, self._weights = self._scores[have:], self._weights[have:]
        self.base += count
        return scores, weights


class _Turns:
    """Decided frames -> turns: a speaker's run of active frames is a turn; a run still going at the
    end of a step is sent up to there, and goes on as a new piece. Labels by first appearance."""

    def __init__(self, frame_s: float, offset_s: float = 0.0) -> None:
        self.frame_s = frame_s
        self.offset_s = offset_s
        self.labels: dict[int, str] = {}
        self._open: dict[int, float] = {}  # speaker -> start of its piece not sent yet

    def time(self, frame: int) -> float:
        return max(0.0, self.offset_s + frame * self.frame_s)

    def add(self, first: int, active: npt.NDArray[np.bool_]) -> list[tuple[float, float, int]]:
        """Frames [first, first + len(active)) are decided; the pieces they close.

        A run reaching the last frame stays open (its start kept) for the next block or `cut`.
        """
        pieces: list[tuple[float, float, int]] = []
        count = active.shape[0]
        if count == 0:
            return pieces
        for speaker in sorted(set(range(active.shape[1])) | set(self._open)):
            column = active[:, speaker] if speaker < active.shape[1] else np.zeros(count, dtype=bool)
            if speaker in self._open and not column[0]:
                pieces.append((self._open.pop(speaker), self.time(first), speaker))
            for start, stop in true_runs(column):
                opened = (
                    self._open.pop(speaker)
                    if start == 0 and speaker in self._open
                    else self.time(first + start)
                )
                if stop < count:
                    pieces.append((opened, self.time(first + stop), speaker))
                else:
                    self._open[speaker] = opened
        return pieces

    def cut(self, at: float, close: bool = False) -> list[tuple[float, float, int]]:
        """Send every open piece up to `at` (they go on from there unless `close`)."""
        pieces = [(start, at, speaker) for speaker, start in self._open.items()]
        self._open = {} if close else dict.fromkeys(self._open, at)
        return pieces

    def label(self, pieces: list[tuple[float, float, int]], until: float) -> list[Turn]:
        """Pieces in time order as Turns (ms times within `until`, empty ones dropped), labelled."""
        turns = []
        for start, end, speaker in sorted(pieces):
            start_ms, end_ms = whole_ms(start), whole_ms(min(end, until))
            if end_ms <= start_ms:
                continue
            name = self.labels.setdefault(speaker, f"SPEAKER_{len(self.labels):02d}")
            turns.append(Turn(start_ms, end_ms, name))
        return turns


# -- pyannote ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PyannoteLiveParams:
    """Window, step and latency in seconds (latency: how long a frame waits for later windows;
    from step_s to window_s, default window_s: every window covering a frame has voted)."""

    window_s: float = 5.0
    step_s: float = 0.5
    latency_s: float | None = None
    onset: float = 0.5
    gamma: float = 3.0  # overlapped-speech penalty (diart): sharpness ...
    beta: float = 10.0  # ... and softmax temperature across local speakers
    clustering: OnlineParams = field(default_factory=OnlineParams)

    def __post_init__(self) -> None:
        latency = self.window_s if self.latency_s is None else self.latency_s
        if not 0.0 < self.step_s <= latency <= self.window_s:
            raise ValueError("need 0 < step_s <= latency_s <= window_s")


class PyannoteLive:
    """Live diarization on a loaded pyannote SpeakerDiarization pipeline's own two models."""

    def __init__(
        self,
        pipeline: Any,
        counts: SpeakerCounts | None = None,
        params: PyannoteLiveParams | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        import torch
        from pyannote.audio.pipelines.speaker_verification import PyannoteAudioPretrainedSpeakerEmbedding
        from pyannote.audio.utils.powerset import Powerset

        self.params = params or PyannoteLiveParams()
        self._model = pipeline._segmentation.model
        self._embedding = pipeline._embedding
        self._pools_per_speaker = isinstance(self._embedding, PyannoteAudioPretrainedSpeakerEmbedding)
        self._device = self._model.device
        specifications = self._model.specifications
        self._powerset = (
            Powerset(len(specifications.classes), specifications.powerset_max_classes).to(self._device)
            if specifications.powerset
            else None
        )
        field_ = self._model.receptive_field
        self._frame_samples = field_.step * SAMPLE_RATE
        self._window = round(self.params.window_s * SAMPLE_RATE)
        self._step = round(self.params.step_s * SAMPLE_RATE)
        latency = self.params.window_s if self.params.latency_s is None else self.params.latency_s
        self._latency = round(latency * SAMPLE_RATE)
        self._torch = torch
        self._clustering = OnlineClustering(self.params.clustering, counts)
        self._votes = _Votes()
        self._turns = _Turns(field_.step, field_.start + field_.duration / 2 - field_.step / 2)
        self._check = stop_check(should_stop)
        self._audio = np.zeros(0, dtype=np.float32)
        self._audio_start = 0  # stream sample of self._audio[0]
        self._seen = 0
        self._next = 0  # index of the next window
        self._decided = 0.0

    @property
    def decided_until(self) -> float:
        return self._decided

    @property
    def speakers(self) -> list[str]:
        return list(self._turns.labels.values())

    def feed(self, samples: Floats) -> list[Turn]:
        self._audio = np.concatenate([self._audio, np.asarray(samples, dtype=np.float32)])
        self._seen += len(samples)
        turns: list[Turn] = []
        while self._next * self._step + self._window <= self._seen:
            self._check()
            turns += self._window_step(self._next * self._step + self._window - self._latency + self._step)
        return turns

    def finish(self) -> list[Turn]:
        turns: list[Turn] = []
        while self._next * self._step < self._seen:
            self._check()
            turns += self._window_step(None)
        end = self._seen / SAMPLE_RATE
        turns += self._decide(math.ceil((end - self._turns.offset_s) * SAMPLE_RATE / self._frame_samples) + 1)
        turns += self._turns.label(self._turns.cut(end, close=True), end)
        self._decided = whole_ms(end)
        self._audio = np.zeros(0, dtype=np.float32)
        return turns

    def _window_step(self, decide_at: int | None) -> list[Turn]:
        """Window `self._next`: segment, embed, cluster, vote; then decide frames before `decide_at`."""
        start = self._next * self._step
        chunk = np.zeros(self._window, dtype=np.float32)
        available = self._audio[start - self._audio_start :][: self._window]
        chunk[: available.size] = available
        activity = self._segment(chunk)
        peak, mean = activity.max(axis=0), activity.mean(axis=0)
        embeddings = self._embed(chunk, activity, peak >= self._clustering.params.tau_active)
        labels = self._clustering.assign(embeddings, peak, mean)
        scores = np.zeros((activity.shape[0], self._clustering.num_speakers), dtype=np.float64)
        for local, speaker in enumerate(labels):
            if speaker >= 0:
                scores[:, speaker] = np.maximum(scores[:, speaker], activity[:, local])
        taper = np.hamming(activity.shape[0] + 2)[1:-1]
        self._votes.add(round(start / self._frame_samples), taper, taper[:, None] * scores)
        self._next += 1
        keep = self._next * self._step - self._audio_start
        self._audio, self._audio_start = self._audio[keep:], self._audio_start + keep
        if decide_at is None:
            return []
        frame = math.floor((decide_at - self._turns.offset_s * SAMPLE_RATE) / self._frame_samples)
        turns = self._decide(frame)
        self._decided = max(self._decided, whole_ms(self._turns.time(frame)))
        return turns + self._turns.label(self._turns.cut(self._turns.time(frame)), self._seen / SAMPLE_RATE)

    def _decide(self, frame: int) -> list[Turn]:
        first = self._votes.base
        scores, weights = self._votes.take(frame, self._clustering.num_speakers)
        active = scores > self.params.onset * np.maximum(weights, 1e-12)[:, None]
        return self._turns.label(self._turns.add(first, active), self._seen / SAMPLE_RATE)

    def _segment(self, chunk: Floats) -> npt.NDArray[np.float64]:
        """(frames, local speakers) activity in [0, 1] for one window."""
        torch = self._torch
        with torch.inference_mode():
            output = self._model(torch.from_numpy(chunk)[None, None].to(self._device))
            if self._powerset is not None:
                output = self._powerset.to_multilabel(output, soft=True)
        return np.asarray(output[0].float().cpu().numpy(), dtype=np.float64)

    def _embed(
        self, chunk: Floats, activity: npt.NDArray[np.float64], active: npt.NDArray[np.bool_]
    ) -> Floats:
        """(local speakers, dim) embeddings, NaN rows for inactive speakers; one pass for all.

        Each speaker's pooling weights are its activity, penalised where others speak too
        (diart's overlapped-speech penalty), so overlapped frames say little about any voice.
        """
        torch = self._torch
        embeddings = np.full((activity.shape[1], self._embedding.dimension), np.nan, dtype=np.float32)
        if not active.any():
            return embeddings
        sharp = np.exp(self.params.beta * (activity - activity.max(axis=1, keepdims=True)))
        share = sharp / sharp.sum(axis=1, keepdims=True)
        weights = np.maximum((activity * share) ** self.params.gamma, 1e-8)[:, active].T
        masks = torch.from_numpy(weights.astype(np.float32))
        audio = torch.from_numpy(chunk)[None, None]
        if self._pools_per_speaker:  # pyannote's own models pool one pass with a weight curve each
            found = self._embedding(audio, masks=masks[None])
        else:  # other toolkits' wrappers take one weight curve per waveform
            found = self._embedding(audio.expand(masks.shape[0], 1, -1), masks=masks)
        embeddings[active] = np.asarray(found).reshape(-1, embeddings.shape[1])
        return embeddings


# -- the offline backend -----------------------------------------------------------------------

_MEL_HOP = 160  # resemblyzer's 10 ms frames: the offline grid
_VAD_CHUNK = 512


@dataclass(frozen=True)
class OfflineLiveParams:
    """Windows, delay and re-clustering; the clustering itself is the batch backend's (its params).

    `delay_s` holds a frame back after its last window is in, so that the clustering has seen
    more of a new voice before its first frames are decided: 0.5 s cut the development set's
    DER from 0.131 to 0.119 (1 s: 0.117), and the decided time trails the audio by 1.7 s on
    average (as window-by-window clustering with 2 s windows did), at most 2.7 s.
    """

    window_s: float | None = None  # the embedding window: the backend's window_s when None
    hop_s: float | None = None  # the step: the backend's hop_s when None
    delay_s: float = 0.5  # how much longer a frame waits (more windows clustered) before it is decided
    # CAM++ beside resemblyzer in each window, as the batch backend fuses them. Measured,
    # not the default: three-voice live naming (held-out seeds 7600-7611) 69.0 -> 73.9 % right
    # names and 3.7 -> 0.0 % of a not-enrolled voice's words named, clean live DER 0.134 -> 0.131,
    # but two-voice talks came out as three labels (test_live, test_live_known_speakers).
    campplus: bool = False
    recluster: ReclusterParams = field(default_factory=ReclusterParams)


class OfflineLive:
    """Live diarization with the offline backend's silero-vad, resemblyzer encoder and clustering.

    The batch backend's windows (`window_s` every `hop_s` inside each speech region, the last one
    ending with the region, a shorter region one window of its own) are made as silero-vad's
    streaming iterator finds the regions; every `hop_s` of audio (a tick, on a grid that does
    not depend on how the audio comes in) the history of windows is clustered again by the batch
    clustering (parakeet_server.diarization.online.Reclustering maps it onto the labels already
    sent) and the frames no later window can cover are decided.
    """

    def __init__(
        self,
        engine: Any,
        counts: SpeakerCounts | None = None,
        params: OfflineLiveParams | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        import torch

        self.params = params or OfflineLiveParams()
        backend = engine.params
        self._engine = engine
        self._campplus = engine._campplus if self.params.campplus else None
        self._torch = torch
        self._vad = _vad_iterator(backend)
        self._min_speech = round(backend.min_speech_s * SAMPLE_RATE)
        window_s = self.params.window_s or backend.window_s
        self._hop = round((self.params.hop_s or backend.hop_s) * SAMPLE_RATE / _MEL_HOP)
        self._size = round(window_s * SAMPLE_RATE / _MEL_HOP)
        self._shortest = round(backend.min_window_s * SAMPLE_RATE / _MEL_HOP)
        self._delay = round(self.params.delay_s * SAMPLE_RATE / _MEL_HOP)
        # Without the batch backend's join of small one-voice clusters: live, a new voice starts as a
        # small cluster, and joining it into a similar label would send its first turns under that
        # label for good (measured on test_live's talks: live DER 0.060 without the join, 0.125 with it).
        clustering_params = dataclasses.replace(
            backend.clustering, same_voice_distance=0.0, same_voice_noise=0.0
        )
        self._clustering = Reclustering(counts, clustering_params, self.params.recluster)
        self._turns = _Turns(_MEL_HOP / SAMPLE_RATE)
        self._check = stop_check(should_stop)
        self._audio = np.zeros(0, dtype=np.float32)
        self._audio_start = 0  # stream sample of self._audio[0]
        self._seen = 0
        self._pending = np.zeros(0, dtype=np.float32)  # samples not yet a whole VAD chunk
        self._speech = np.zeros(0, dtype=bool)  # per frame, from frame self._speech_base
        self._speech_base = 0
        self._region: int | None = None  # start sample of the speech region going on
        self._known = 0  # sample up to which the region going on is surely speech
        self._vad_final = 0  # samples whose speech/non-speech is final
        self._ended: list[tuple[int, int]] = []  # finished regions (frames) not windowed yet
        self._windowed: int | None = None  # start frame of the region going on once windowed
        self._next_window = 0  # in that region, the start frame of its next window
        self._tick = self._hop * _MEL_HOP  # the sample after which the next tick runs
        self._base = 0  # the first frame not decided
        self._last_speaker = -1
        self._decided = 0.0

    @property
    def decided_until(self) -> float:
        return self._decided

    @property
    def speakers(self) -> list[str]:
        return list(self._turns.labels.values())

    def feed(self, samples: Floats) -> list[Turn]:
        samples = np.asarray(samples, dtype=np.float32)
        self._audio = np.concatenate([self._audio, samples])
        self._seen += samples.size
        pending = np.concatenate([self._pending, samples])
        whole = pending.size // _VAD_CHUNK * _VAD_CHUNK
        turns: list[Turn] = []
        for offset in range(0, whole, _VAD_CHUNK):
            self._detect(pending[offset : offset + _VAD_CHUNK])
            if int(self._vad.current_sample) >= self._tick:
                self._check()
                turns += self._step()
                self._tick += self._hop * _MEL_HOP
        self._pending = pending[whole:].copy()
        return turns

    def finish(self) -> list[Turn]:
        if self._region is not None:
            self._end_region(self._region, self._seen)
        self._vad_final = self._seen
        self._check()
        self._make_windows()
        self._clustering.refresh(force=True)
        end = self._seen / SAMPLE_RATE
        turns = self._decide(-(-self._seen // _MEL_HOP))
        turns += self._turns.label(self._turns.cut(end, close=True), end)
        self._decided = whole_ms(end)
        self._audio = np.zeros(0, dtype=np.float32)
        return turns

    # speech ---------------------------------------------------------------------------------

    def _detect(self, chunk: Floats) -> None:
        """One silero-vad chunk: regions starting, going on (surely speech so far) and ending."""
        event = self._vad(self._torch.from_numpy(chunk))
        if event and "start" in event:
            self._region = int(event["start"])
        if event and "end" in event and self._region is not None:
            self._end_region(self._region, int(event["end"]))
        heard = int(self._vad.current_sample)
        if self._region is None:
            self._vad_final = max(self._vad_final, heard - _VAD_CHUNK)
            return
        # Speech lasts at least to where the probability last dropped (silero reports the end one
        # chunk before temp_end), or to the chunk before the last one while it has not dropped.
        dropped = int(self._vad.temp_end)
        known = (dropped + int(self._vad.speech_pad_samples) if dropped else heard) - _VAD_CHUNK
        if known - self._region >= self._min_speech:
            self._mark(self._region, known)
            self._known = max(self._known, known)
            self._vad_final = max(self._vad_final, known)
        else:
            self._vad_final = max(self._vad_final, self._region)

    def _end_region(self, start: int, end: int) -> None:
        self._region = None
        self._known = 0
        if end - start >= self._min_speech:
            self._mark(start, end)
            self._ended.append((start // _MEL_HOP, -(-end // _MEL_HOP)))
        elif self._windowed is not None:  # windowed while going on, then cut short: keep its windows
            self._windowed = None

    def _mark(self, start: int, end: int) -> None:
        first, last = start // _MEL_HOP - self._speech_base, -(-end // _MEL_HOP) - self._speech_base
        if last > self._speech.size:
            self._speech = np.concatenate([self._speech, np.zeros(last - self._speech.size, dtype=bool)])
        self._speech[max(0, first) : last] = True

    def _speech_of(self, first: int, last: int) -> npt.NDArray[np.bool_]:
        mask = np.zeros(last - first, dtype=bool)
        have = self._speech[first - self._speech_base : last - self._speech_base]
        mask[: have.size] = have
        return mask

    # windows --------------------------------------------------------------------------------

    def _make_windows(self) -> None:
        """Embed every window now certain: the batch backend's windows of each finished region,
        and those of the region going on that fit in what is surely speech so far."""
        for start, end in self._ended:
            if self._windowed != start:
                self._windowed, self._next_window = start, start
            if end - start <= self._size:
                middle = (start + end) // 2
                length = max(end - start, self._shortest)
                first = max(0, middle - length // 2)
                self._window(first, first + length)
            else:
                while self._next_window < end - self._size:
                    self._window(self._next_window, self._next_window + self._size)
                    self._next_window += self._hop
                self._window(end - self._size, end)
            self._windowed = None
        self._ended = []
        if self._region is None or not self._known:
            return
        start, known = self._region // _MEL_HOP, self._known // _MEL_HOP
        if self._windowed != start:
            self._windowed, self._next_window = start, start
        while self._next_window + self._size < known:
            self._window(self._next_window, self._next_window + self._size)
            self._next_window += self._hop

    def _window(self, first: int, last: int) -> None:
        embedding, pitch = self._embed(first, last)
        self._clustering.add(embedding, pitch, first, last)

    def _frontier(self) -> int:
        """The first frame a window still to come may cover."""
        if self._region is None:
            return self._vad_final // _MEL_HOP
        start = self._region // _MEL_HOP
        if self._windowed != start:
            return start
        return max(start, min(self._next_window, self._known // _MEL_HOP - self._size))

    def _step(self) -> list[Turn]:
        """One tick: new windows, a new clustering when due, the frames now certain decided."""
        self._make_windows()
        self._clustering.refresh()
        frontier = self._frontier()
        frame = max(self._base, frontier - self._delay)
        turns = self._decide(frame)
        self._decided = max(self._decided, whole_ms(self._turns.time(frame)))
        keep = max(0, (frontier - self._shortest) * _MEL_HOP - self._audio_start)
        self._audio, self._audio_start = self._audio[keep:], self._audio_start + keep
        return turns + self._turns.label(self._turns.cut(self._turns.time(frame)), self._seen / SAMPLE_RATE)

    def _decide(self, frame: int) -> list[Turn]:
        """Frames before `frame` are final: each speech frame goes to the label whose centroid the
        windows covering it are closest to (the previous frame's label when no window covered it)."""
        first = self._base
        if frame <= first:
            return []
        scores, covered = self._clustering.scores(first, frame)
        speech = self._speech_of(first, frame)
        chosen = np.full(frame - first, -1, dtype=np.int64)
        for row in range(chosen.size):
            if not speech[row]:
                continue
            if covered[row] and scores.shape[1]:
                self._last_speaker = int(np.argmax(scores[row]))
            chosen[row] = self._last_speaker
        self._clustering.record(first, chosen)
        active = np.zeros((chosen.size, max(self._clustering.num_labels, 1)), dtype=bool)
        active[np.flatnonzero(chosen >= 0), chosen[chosen >= 0]] = True
        self._base = frame
        drop = max(0, frame - self._speech_base - self._size)
        self._speech, self._speech_base = self._speech[drop:], self._speech_base + drop
        return self._turns.label(self._turns.add(first, active), self._seen / SAMPLE_RATE)

    def _embed(self, first: int, last: int) -> tuple[Floats, float]:
        """A window's embedding as the batch backend makes it (resemblyzer's of its frames at
        -30 dBFS, beside CAM++'s when `campplus` is set), and its median pitch."""
        import librosa

        torch = self._torch
        engine = self._engine
        audio = self._audio[max(0, first * _MEL_HOP - self._audio_start) :][: (last - first) * _MEL_HOP]
        rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
        gain = 10 ** (-30 / 20) / rms if rms > 0 else 1.0
        with torch.inference_mode():
            wave = torch.from_numpy(audio).to(engine._torch_device) * gain
            spectrum = torch.stft(
                wave,
                n_fft=400,
                hop_length=_MEL_HOP,
                window=torch.hann_window(400, device=engine._torch_device),
                center=True,
                pad_mode="constant",
                return_complex=True,
            )
            mels = (engine._mel_basis @ spectrum.abs().square()).T[: last - first]
            embedding = engine._encoder(mels[None]).float().cpu().numpy()[0]
        if self._campplus is not None:  # the batch backend's fusion (campplus.fuse), window by window
            voice = self._campplus.embed(audio, [[(0, audio.size)]])[0]
            embedding = campplus.fuse(
                [embedding, np.zeros(campplus.EMBEDDING_SIZE, dtype=np.float32) if voice is None else voice]
            )
        pitch = float("nan")
        if audio.size >= 1024:
            f0 = librosa.yin(
                audio, fmin=60.0, fmax=500.0, sr=SAMPLE_RATE, frame_length=1024, hop_length=_MEL_HOP
            )
            energy = librosa.feature.rms(y=audio, frame_length=1024, hop_length=_MEL_HOP)[0]
            loud = energy > 0.1 * energy.max() if energy.max() > 0 else np.zeros(energy.size, dtype=bool)
            if loud.any():
                pitch = float(np.median(np.log2(f0[loud])))
        return np.asarray(embedding, dtype=np.float32), pitch


def _vad_iterator(backend: Any) -> Any:
    """silero-vad's own streaming iterator over its ONNX model (one onnxruntime thread).

    Importing silero_vad sets torch's thread count to 1 for the process; it is put back.
    """
    import torch

    from parakeet_server.diarization.offline_engine import _package_file

    threads = torch.get_num_threads()
    try:
        from silero_vad.utils_vad import OnnxWrapper, VADIterator
    finally:
        torch.set_num_threads(threads)
    model = OnnxWrapper(str(_package_file("silero_vad", "data", "silero_vad.onnx")), force_onnx_cpu=True)
    return VADIterator(
        model,
        threshold=backend.vad_threshold,
        sampling_rate=SAMPLE_RATE,
        min_silence_duration_ms=round(backend.min_silence_s * 1000),
        speech_pad_ms=round(backend.speech_pad_s * 1000),
    )


def open_diarizer(
    engine: Any, counts: SpeakerCounts | None = None, should_stop: Callable[[], bool] | None = None
) -> OnlineDiarizer:
    """A live diarizer over a loaded engine: pyannote's pipeline or the offline backend (the
    active one behind an OfflineFallback)."""
    from parakeet_server.diarization.offline_engine import OfflineEngine
    from parakeet_server.diarization.pyannote_engine import PyannoteEngine

    active = getattr(engine, "active", engine)
    if not active.loaded:
        raise PreconditionFailed("the diarization pipeline is not loaded", reason="MODEL_NOT_LOADED")
    if isinstance(active, OfflineEngine):
        return OfflineLive(active, counts, should_stop=should_stop)
    if isinstance(active, PyannoteEngine):
        return PyannoteLive(active.pyannote_pipeline, counts, should_stop=should_stop)
    raise PreconditionFailed(f"{active.name} cannot diarize live", reason="MODEL_NOT_LOADED")


# -- the StreamingDiarize session --------------------------------------------------------------


class DiarizeSession:
    """One StreamingDiarize stream: samples in, a `turn` response per decided turn out.

    The diarizer runs in `feed`, in the caller's (reader) thread: a stream holds at most one window
    of undecided audio, and a client sending faster than the diarizer keeps up is slowed by the
    reader blocking here. Every response carries `processed_seconds` (decided_until); a step that
    decides time but no turn sends a progress response; `finish` sends the last turns and a
    StreamingSummary, then ends the output. `cancel` drops the state between two windows.
    """

    def __init__(
        self,
        opener: Callable[[Callable[[], bool]], OnlineDiarizer],
        output: LiveOutput[Response],
        model: str,
        min_speakers: int | None = None,
        naming: LiveNaming | None = None,
    ) -> None:
        self._cancelled = threading.Event()
        self._naming = naming
        self._diarizer: OnlineDiarizer | None = opener(self._cancelled.is_set)
        self._output = output
        self._model = model
        self._min_speakers = min_speakers
        self._lock = threading.Lock()
        self._seconds = 0.0
        self._sent_until = 0.0
        self._finished = False

    def feed(self, samples: Floats) -> None:
        with self._lock:
            diarizer = self._diarizer
            if diarizer is None or self._finished:
                return
            self._seconds += len(samples) / SAMPLE_RATE
            if self._naming is not None:
                self._naming.hear(samples)
            try:
                turns = diarizer.feed(samples)
            except DeadlineExceeded:
                if self._cancelled.is_set():
                    self._diarizer = None
                    return
                raise
            self._send(turns, diarizer.decided_until)

    def finish(self) -> None:
        with self._lock:
            diarizer = self._diarizer
            if diarizer is None or self._finished:
                return
            self._finished = True
            try:
                turns = diarizer.finish()
            except DeadlineExceeded:
                if self._cancelled.is_set():
                    self._diarizer = None
                    return
                raise
            self._send(turns, diarizer.decided_until, final=True)
            naming = self._naming
            speakers = [naming.label_of(s) for s in diarizer.speakers] if naming else diarizer.speakers
            self._diarizer = None
            summary = streaming_pb2.StreamingSummary(
                duration=whole_ms(self._seconds),
                num_speakers=len(speakers),
                speakers=speakers,
                model=self._model,
                warnings=self._warnings(len(speakers)),
                speaker_identities=naming.identities if naming else [],
            )
            self._output.send(Response(summary=summary, processed_seconds=self._sent_until))
            self._output.end()

    def _warnings(self, heard: int) -> list[str]:
        if self._min_speakers is None or heard >= self._min_speakers:
            return []
        return [
            f"min_speakers ({self._min_speakers}) was not reached: {heard} voices were heard; live "
            "diarization never splits a voice it has labelled"
        ]

    def cancel(self) -> None:
        self._cancelled.set()
        if self._lock.acquire(blocking=False):
            try:
                self._diarizer = None
            finally:
                self._lock.release()

    def _send(self, turns: list[Turn], decided: float, final: bool = False) -> None:
        """Turns out (through the naming, which may hold some: `decided` then stops at the first held)."""
        if self._naming is not None:
            turns = self._naming.pass_on(turns, decided, final)
            held = self._naming.held_from()
            decided = decided if held is None else min(decided, held)
        # Only the last turn of a batch advances processed_seconds: a reader (the orchestrator's
        # merge) takes everything up to it as decided, so the turns before it must all be out first.
        for index, turn in enumerate(turns):
            speaker_turn = audio_pb2.SpeakerTurn(start=turn.start, end=turn.end, speaker=turn.speaker)
            last = index == len(turns) - 1
            progress = max(decided, self._sent_until) if last else self._sent_until
            self._output.send(Response(turn=speaker_turn, processed_seconds=progress))
        if not turns and decided > self._sent_until:
            self._output.send(Response(processed_seconds=decided))
        self._sent_until = max(self._sent_until, decided)
