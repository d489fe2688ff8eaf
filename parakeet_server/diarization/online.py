"""Online speaker clustering: each window's local speakers joined to the stream's global speakers.

A live diarizer sees the stream one window at a time. Its segmentation (or speech detection)
finds "local" speakers inside the window, each with an activity curve and an embedding; this
module decides which global speaker each one is, as diart does (Coria et al. 2021, "Overlap-aware
low-latency online speaker diarization based on end-to-end local segmentation"):

* a local speaker takes part when its peak activity reaches `tau_active`;
* the taking-part speakers are matched to the global centroids by optimal assignment
  (scipy.optimize.linear_sum_assignment on cosine distance, plus `pitch_weight` x the octaves
  between pitches when pitch is given), a pair counting only within `delta_new`;
* an unmatched speaker whose mean activity reaches `rho_update` starts a new global speaker
  while the cap (num_speakers, else max_speakers) allows; any other unmatched speaker goes to
  the closest global speaker no other local speaker of the window took (else the closest);
* centroids move only with matched speakers whose mean activity reaches `rho_update` (a voice
  heard briefly, or mostly overlapped, is a poor sample of it).

Global speakers are never renumbered or merged, so a label given once holds for the stream.
While fewer voices than `num_speakers` have been heard, a local speaker farther than
`delta_new x target_ratio` from every centroid counts as new, which steers towards the count
asked for; min_speakers cannot be honoured online (a voice heard once cannot be split later) and
is only validated. Pure numpy and scipy: tested on hand-made embeddings.

`Reclustering` is the other way, for the offline backend's windows: the batch clustering run
again over the whole history, its clusters mapped onto the labels already sent.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from parakeet_server.diarization import clustering
from parakeet_server.diarization.clustering import ClusteringParams
from parakeet_server.diarization.types import MAX_SPEAKERS, SpeakerCounts

Floats = npt.NDArray[np.float32]
Numbers = npt.NDArray[np.floating[Any]]
Labels = npt.NDArray[np.int64]

UNASSIGNED = -1
# linear_sum_assignment needs finite costs; pairs past delta_new get this and are dropped after.
_FORBIDDEN = 1e6


@dataclass(frozen=True)
class OnlineParams:
    """The clustering's knobs (diart's names); defaults suit pyannote's WeSpeaker embeddings."""

    tau_active: float = 0.6
    rho_update: float = 0.3
    delta_new: float = 1.0
    target_ratio: float = 0.75
    pitch_weight: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.tau_active <= 1.0 or not 0.0 <= self.rho_update <= 1.0:
            raise ValueError("tau_active and rho_update are activities, in [0, 1]")
        if self.delta_new <= 0.0 or not 0.0 < self.target_ratio <= 1.0:
            raise ValueError("delta_new must be positive and target_ratio in (0, 1]")


class OnlineClustering:
    """Global speakers of one stream: their centroids, and the assignment of each window's speakers."""

    def __init__(self, params: OnlineParams | None = None, counts: SpeakerCounts | None = None) -> None:
        self.params = params or OnlineParams()
        counts = counts or SpeakerCounts()
        self.cap = counts.num_speakers or counts.max_speakers or MAX_SPEAKERS
        self.target = counts.num_speakers or 0
        self._sums: list[Floats] = []  # sum of the unit embeddings of each centroid's updates
        self._pitch_sums: list[float] = []
        self._pitch_counts: list[int] = []

    @property
    def num_speakers(self) -> int:
        """Global speakers so far (some may never be active in a decided frame)."""
        return len(self._sums)

    def centroids(self) -> Floats:
        """(speakers, dim) unit centroids; (0, 0) before the first speaker."""
        if not self._sums:
            return np.zeros((0, 0), dtype=np.float32)
        stacked = np.stack(self._sums)
        return np.asarray(stacked / np.maximum(np.linalg.norm(stacked, axis=1, keepdims=True), 1e-12))

    def assign(
        self,
        embeddings: Numbers,
        peak: Numbers,
        mean: Numbers,
        pitch: Numbers | None = None,
    ) -> Labels:
        """The global speaker of each local speaker of one window (UNASSIGNED when not active).

        `embeddings` (local, dim), `peak` and `mean` (local,) activity in [0, 1]; `pitch`
        (local,) in octaves, NaN when unknown. Creates and updates centroids as it goes.
        """
        count = embeddings.shape[0]
        labels = np.full(count, UNASSIGNED, dtype=np.int64)
        finite = np.all(np.isfinite(embeddings), axis=1) & (np.linalg.norm(embeddings, axis=1) > 0)
        active = np.flatnonzero((peak >= self.params.tau_active) & finite)
        if active.size == 0:
            return labels
        units = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        long = mean >= self.params.rho_update
        pitches = pitch if pitch is not None else np.full(count, np.nan, dtype=np.float32)
        distance = self._distance(units[active], pitches[active])
        threshold = self.params.delta_new
        if self.num_speakers < self.target:
            threshold *= self.params.target_ratio
        matched: dict[int, int] = {}
        if distance.shape[1]:
            rows, columns = _optimal_pairs(distance, threshold)
            matched = {int(active[row]): int(column) for row, column in zip(rows, columns, strict=True)}
        missed = [int(local) for local in active if int(local) not in matched]
        first_window = self.num_speakers == 0
        for local, speaker in matched.items():
            labels[local] = speaker
            if long[local]:
                self._update(speaker, units[local], float(pitches[local]))
        for local in missed:
            if self.num_speakers < self.cap and (long[local] or first_window):
                labels[local] = self._create(units[local], float(pitches[local]))
                continue
            if self.num_speakers == 0:
                continue
            row = self._distance(units[local : local + 1], pitches[local : local + 1])[0]
            taken = set(labels[labels >= 0].tolist())
            order = [int(speaker) for speaker in np.argsort(row, kind="stable")]
            free = [speaker for speaker in order if speaker not in taken]
            labels[local] = free[0] if free else order[0]
        return labels

    def _distance(self, units: Numbers, pitches: Numbers) -> npt.NDArray[np.float64]:
        """(local, global) cosine distance, plus pitch_weight x octaves where both pitches are known."""
        if not self._sums:
            return np.zeros((units.shape[0], 0), dtype=np.float64)
        distance = 1.0 - units.astype(np.float64) @ self.centroids().T.astype(np.float64)
        if self.params.pitch_weight:
            known = np.array(self._pitch_counts) > 0
            centre = np.where(known, np.array(self._pitch_sums) / np.maximum(self._pitch_counts, 1), np.nan)
            gap = np.abs(pitches.astype(np.float64)[:, None] - centre[None, :])
            distance += self.params.pitch_weight * np.nan_to_num(gap, nan=0.0)
        return distance

    def _create(self, unit: Numbers, pitch: float) -> int:
        self._sums.append(unit.astype(np.float32).copy())
        self._pitch_sums.append(0.0)
        self._pitch_counts.append(0)
        self._add_pitch(len(self._sums) - 1, pitch)
        return len(self._sums) - 1

    def _update(self, speaker: int, unit: Numbers, pitch: float) -> None:
        self._sums[speaker] = self._sums[speaker] + unit.astype(np.float32)
        self._add_pitch(speaker, pitch)

    def _add_pitch(self, speaker: int, pitch: float) -> None:
        if np.isfinite(pitch):
            self._pitch_sums[speaker] += pitch
            self._pitch_counts[speaker] += 1


def _optimal_pairs(
    distance: npt.NDArray[np.float64], threshold: float
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Rows and columns of the minimum-cost matching, keeping only pairs within `threshold`."""
    from scipy.optimize import linear_sum_assignment

    cost = np.where(distance <= threshold, distance, _FORBIDDEN)
    rows, columns = linear_sum_assignment(cost)
    keep = cost[rows, columns] < _FORBIDDEN
    return rows[keep], columns[keep]


# -- re-clustering the whole history -----------------------------------------------------------


@dataclass(frozen=True)
class ReclusterParams:
    """How often the history is clustered again, how much of it, and when a cluster is a new voice.

    Up to `dense` windows, at every new window; then every `every` windows (new windows in
    between are scored against the last clustering's centroids: a long stream's voices are
    known, and the cost stays bounded). `max_clustered`: past this many windows, the most recent
    half of them and an even spread of the older ones are clustered and the rest go to the
    nearest centroid. A cluster no label matched gets a new one only when it is farther than
    `new_distance` from every label's voice (the batch clustering's cosine + pitch distance),
    holds at least `min_windows` windows, and less than `max_sent` of its windows' frames were
    already sent (else it is a voice already labelled, split by this clustering): on the
    development set (seeds 3000-3009) a new voice's first windows often sit 0.25-0.4 from the
    nearest voice, and clusterings of a few windows split a voice into clusters of one or two.

    While fewer labels than asked for (num_speakers, else min_speakers) are out, a cluster left
    over also becomes a new voice when its first frames went out under another voice's label
    (`Reclustering._splits`): it holds `split_windows` windows, is farther than `split_distance`
    from every label's voice, holds a minority of that label's decided frames, and at most
    `split_overlap` of its windows touch that label's own cluster's windows (a voice heard in
    turns of its own, not one turn cut in two). On 3-voice talks (seeds 5150-5159, no overlap)
    with num_speakers=3 the second voice, close to the first (0.12-0.17), went out under the
    first's label: 5/10 talks had 3 labels, live WDER 0.209; with this 10/10, 0.133. Without a
    count it splits voices too often (2-voice talks: WDER 0.074 -> 0.115), so it waits for one.
    """

    every: int = 4
    dense: int = 300
    max_clustered: int = 400
    new_distance: float = 0.25
    min_windows: int = 2
    max_sent: float = 0.3
    split_windows: int = 4
    split_distance: float = 0.1
    split_overlap: float = 0.25

    def __post_init__(self) -> None:
        if self.every < 1 or self.dense < 0 or self.max_clustered < 2 or self.min_windows < 1:
            raise ValueError("need every >= 1, dense >= 0, max_clustered >= 2 and min_windows >= 1")
        if self.split_windows < 1 or self.split_distance < 0.0 or not 0.0 <= self.split_overlap <= 1.0:
            raise ValueError("need split_windows >= 1, split_distance >= 0 and split_overlap in [0, 1]")


class Reclustering:
    """A stream's windows clustered again and again by the batch backend's clustering, each new
    clustering's clusters mapped onto the labels already sent.

    The batch clustering (parakeet_server.diarization.clustering.cluster) sees every window of
    the recording at once and so separates voices that one window at a time cannot; its cluster
    numbers, though, change from one clustering to the next. Each clustering is therefore mapped
    onto the labels of the frames already decided (`record`): the optimal assignment
    (scipy.optimize.linear_sum_assignment) of clusters to labels maximising the decided speech
    frames they share through the clusters' windows; a cluster left over (or paired with a label
    it shares no frame with) takes a new label when it passes ReclusterParams' tests for a new
    voice (or, below the speaker count asked for, for a voice whose first frames went out under
    another's label: only its later frames take the new label) and the cap (num_speakers, else max_speakers) allows, else the nearest label. Decided
    frames are never relabelled, so a label means one voice for the stream, and labels never
    exceed the cap.

    Windows are given on a frame grid (`first` inclusive, `last` exclusive); `scores` gives each
    frame's Hann-weighted similarity to every label's centroid, as the batch backend's
    `frame_labels` does. Pure numpy/scipy/scikit-learn: tested on hand-made embeddings.
    """

    def __init__(
        self,
        counts: SpeakerCounts | None = None,
        params: ClusteringParams | None = None,
        recluster: ReclusterParams | None = None,
    ) -> None:
        counts = counts or SpeakerCounts()
        self.cap = counts.num_speakers or counts.max_speakers or MAX_SPEAKERS
        self.target = counts.num_speakers or counts.min_speakers or 0
        # A voice not yet heard cannot be asked for: the count is estimated, capped (min_speakers
        # and num_speakers would split the first voices heard in two); they are a target that
        # lets a label's minority voice split off (ReclusterParams).
        self._counts = SpeakerCounts(max_speakers=self.cap)
        self.params = params or ClusteringParams()
        self.recluster = recluster or ReclusterParams()
        self._embeddings = np.zeros((0, 0), dtype=np.float32)
        self._pitch = np.zeros(0, dtype=np.float32)
        self._firsts = np.zeros(0, dtype=np.int64)
        self._lasts = np.zeros(0, dtype=np.int64)
        self._count = 0
        self._sent = np.zeros(0, dtype=np.int64)  # per frame from 0: the label decided, -1 none
        self._centroids = np.zeros((0, 0), dtype=np.float32)  # per label (rows of unused: 0)
        self._label_pitch = np.zeros(0, dtype=np.float64)  # per label: median pitch, octaves
        self._clusters = np.zeros((0, 0), dtype=np.float32)  # the last clustering's centroids
        self._mapping = np.zeros(0, dtype=np.int64)  # and the label of each of its clusters
        self._fitted = 0  # windows seen by the last clustering
        self.num_labels = 0

    @property
    def num_windows(self) -> int:
        return self._count

    def add(self, embedding: Numbers, pitch: float, first: int, last: int) -> None:
        """One window's embedding (unit norm), median pitch in octaves (NaN: unvoiced) and frames."""
        if self._count == self._embeddings.shape[0]:
            grown = max(64, 2 * self._count)
            embeddings = np.zeros((grown, embedding.shape[0]), dtype=np.float32)
            if self._count:
                embeddings[: self._count] = self._embeddings[: self._count]
            self._embeddings = embeddings
            self._pitch = np.resize(self._pitch, grown)
            self._firsts = np.resize(self._firsts, grown)
            self._lasts = np.resize(self._lasts, grown)
        unit = embedding / max(float(np.linalg.norm(embedding)), 1e-12)
        self._embeddings[self._count] = unit
        self._pitch[self._count] = pitch
        self._firsts[self._count], self._lasts[self._count] = first, last
        self._count += 1

    def refresh(self, force: bool = False) -> None:
        """Cluster again when due (see ReclusterParams) or when `force`d."""
        if self._count > self._fitted and (
            force
            or self.num_labels == 0
            or self._count <= self.recluster.dense
            or self._count - self._fitted >= self.recluster.every
        ):
            self.fit()

    def fit(self) -> None:
        """Cluster the history again and map the clusters onto the labels sent so far."""
        from scipy.optimize import linear_sum_assignment

        count = self._count
        if count == 0:
            return
        embeddings, pitch = self._embeddings[:count], self._pitch[:count]
        chosen = _spread(count, self.recluster.max_clustered)
        # One BLAS thread: the matrices are small, and on a busy CPU a thread pool per stream
        # mostly waits for cores (100 x slower measured on the shared 2-core machine).
        with _blas().limit(limits=1, user_api="blas"):
            sampled = clustering.cluster(embeddings[chosen], pitch[chosen], self._counts, self.params)
        centroids = clustering.centroids(embeddings[chosen], sampled)
        labels = np.argmax(embeddings @ centroids.T, axis=1)
        labels[chosen] = sampled
        shared = self._shared(labels, centroids.shape[0])
        mapping = np.full(centroids.shape[0], -1, dtype=np.int64)
        owners = np.full(self.num_labels, -1, dtype=np.int64)  # the cluster paired with each label
        if self.num_labels:
            rows, columns = linear_sum_assignment(shared, maximize=True)
            for row, column in zip(rows.tolist(), columns.tolist(), strict=True):
                mapping[row] = column
                if shared[row, column] > 0:
                    owners[column] = row
        sizes = np.bincount(labels, minlength=centroids.shape[0])
        spans = np.bincount(labels, weights=self._lasts[:count] - self._firsts[:count], minlength=sizes.size)
        voiced = [pitch[labels == group][np.isfinite(pitch[labels == group])] for group in range(sizes.size)]
        pitches = np.array([float(np.median(tones)) if tones.size else np.nan for tones in voiced])
        order = np.argsort([np.flatnonzero(labels == group)[0] for group in range(sizes.size)])
        primary = np.zeros(sizes.size, dtype=bool)  # the cluster that is its label's voice
        for group in order.tolist():
            # A pair that shares no decided frame is no evidence: the cluster is a voice not sent yet.
            if mapping[group] >= 0 and shared[group, mapping[group]] > 0:
                primary[group] = True
                continue
            mapping[group] = -1
            distance = self._label_distance(centroids[group], pitches[group])
            new = distance.size == 0 or (
                float(distance.min()) > self.recluster.new_distance
                and sizes[group] >= self.recluster.min_windows
                and shared[group].sum() < self.recluster.max_sent * spans[group]
            )
            new = new or self._splits(group, labels, shared, owners, distance)
            if new and self.num_labels < self.cap:
                primary[group] = True
                mapping[group] = self.num_labels
                self.num_labels += 1
                self._centroids = _grown(self._centroids, self.num_labels, centroids.shape[1])
                self._label_pitch = np.append(self._label_pitch, np.nan)
            else:
                mapping[group] = int(np.argmin(distance))
        # A label's voice is its primary cluster; a cluster sent to the nearest label (a voice
        # too close to a label's or too briefly heard to be new) labels its frames but does not
        # move that voice.
        for group in np.flatnonzero(primary).tolist():
            self._centroids[mapping[group]] = centroids[group]
            self._label_pitch[mapping[group]] = pitches[group]
        self._clusters, self._mapping = centroids, mapping
        self._fitted = count

    def _splits(
        self,
        group: int,
        labels: Labels,
        shared: npt.NDArray[np.float64],
        owners: Labels,
        distance: npt.NDArray[np.float64],
    ) -> bool:
        """Whether a cluster left over is a second voice whose first frames went out under a label
        already sent: its decided frames are a minority of that label's (another cluster, the
        label's own voice, holds more of them), it holds `split_windows` windows and its voice is
        farther than `split_distance` from every label's."""
        if self.num_labels >= self.target:
            return False
        members = np.flatnonzero(labels == group)
        if distance.size == 0 or not shared[group].any() or members.size < self.recluster.split_windows:
            return False
        if float(distance.min()) <= self.recluster.split_distance:
            return False
        label = int(np.argmax(shared[group]))
        owner = int(owners[label])
        if owner < 0 or owner == group or shared[owner, label] <= shared[group, label]:
            return False
        others = np.flatnonzero(labels == owner)
        firsts, lasts = self._firsts[: self._count], self._lasts[: self._count]
        touching = (firsts[members, None] < lasts[None, others]) & (
            firsts[None, others] < lasts[members, None]
        )
        return float(touching.any(axis=1).mean()) <= self.recluster.split_overlap

    def _label_distance(self, centroid: Numbers, pitch: float) -> npt.NDArray[np.float64]:
        """The batch clustering's distance between voices (cosine distance plus pitch_weight x
        octaves, where both pitches are known) from a cluster to each label's voice."""
        if self.num_labels == 0:
            return np.zeros(0, dtype=np.float64)
        distance = 1.0 - self._centroids[: self.num_labels].astype(np.float64) @ centroid.astype(np.float64)
        gap = np.abs(self._label_pitch[: self.num_labels] - pitch)
        return distance + self.params.pitch_weight * np.nan_to_num(gap, nan=0.0)

    def _shared(self, labels: Labels, groups: int) -> npt.NDArray[np.float64]:
        """(clusters, labels): decided speech frames of each label inside each cluster's windows."""
        shared = np.zeros((groups, max(self.num_labels, 1)), dtype=np.float64)
        if not self.num_labels or self._sent.size == 0:
            return shared[:, : self.num_labels]
        sent = self._sent
        firsts = np.minimum(self._firsts[: self._count], sent.size)
        lasts = np.minimum(self._lasts[: self._count], sent.size)
        for label in range(self.num_labels):
            running = np.concatenate([[0], np.cumsum(sent == label)])
            np.add.at(shared[:, label], labels, running[lasts] - running[firsts])
        return shared[:, : self.num_labels]

    def scores(self, first: int, last: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """Frames [first, last): (frames, labels) Hann-weighted similarity of the windows covering
        each frame to the last clustering's centroids, each label taking its best cluster's
        (-inf for labels no cluster went to), and (frames,) whether any window covered it."""
        frames = last - first
        found = np.zeros((frames, self._mapping.size), dtype=np.float64)
        covered = np.zeros(frames, dtype=bool)
        scores = np.full((frames, self.num_labels), -np.inf, dtype=np.float64)
        if self.num_labels == 0:
            return scores, covered
        windows = np.flatnonzero((self._lasts[: self._count] > first) & (self._firsts[: self._count] < last))
        similarity = self._embeddings[windows] @ self._clusters.T
        for index, window in enumerate(windows.tolist()):
            start, end = int(self._firsts[window]), int(self._lasts[window])
            taper = np.hanning(end - start + 2)[1:-1]
            low, high = max(start, first), min(end, last)
            found[low - first : high - first] += taper[low - start : high - start, None] * similarity[index]
            covered[low - first : high - first] = True
        for group, label in enumerate(self._mapping.tolist()):
            scores[:, label] = np.maximum(scores[:, label], found[:, group])
        return scores, covered

    def record(self, first: int, labels: Labels) -> None:
        """Frames from `first` on were decided with these labels (-1: no speech); they never change."""
        end = first + labels.size
        if end > self._sent.size:
            self._sent = np.concatenate([self._sent, np.full(end - self._sent.size, -1, dtype=np.int64)])
        self._sent[first:end] = labels


@functools.cache
def _blas() -> Any:
    """threadpoolctl's view of the loaded BLAS libraries (found once: finding them reads files)."""
    from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

    return ThreadpoolController()


def _grown(rows: Floats, count: int, dim: int) -> Floats:
    """`rows` with zero rows added up to `count` rows of `dim`."""
    grown = np.zeros((count, dim), dtype=np.float32)
    grown[: rows.shape[0]] = rows[:, :dim] if rows.size else 0.0
    return grown


def _spread(count: int, most: int) -> npt.NDArray[np.intp]:
    """Indices of the windows to cluster: all, or the most recent half of `most` and an even
    spread of the older ones."""
    if count <= most:
        return np.arange(count)
    recent = most // 2
    older = np.linspace(0, count - recent, most - recent, endpoint=False).astype(np.intp)
    return np.concatenate([older, np.arange(count - recent, count)])
