"""The offline backend's speaker clustering and turn clean-up, as plain functions of numpy arrays.

No model and no pyannote type: embeddings (one L2-normalised row per window) and pitches in,
labels out, so each step is tested on hand-made arrays (tests/diarization/test_clustering.py).

* `cluster`: spectral clustering (Wang et al. 2018: refined cosine affinity, k-means on its
  leading eigenvectors) into exactly `num_speakers` clusters, or into as many as
  `count_speakers` finds (over-cluster, then join clusters whose mean embeddings and median
  pitches are close), clamped to min/max_speakers; then clusters whose voices are alike,
  allowing for the noise of small clusters' means, are joined (`merge_same_voices`).
* `frame_labels`: every speech frame goes to the speaker whose centroid the windows covering it
  are closest to (weighted to the windows' centres).
* `smooth` and `bridge`: runs shorter than a minimum turn join a neighbour; short pauses
  between two runs of one speaker become that speaker's.

Agglomerative clustering of the windows was tried first and left behind: on the development set
(synthesized conversations, seeds 1000-1019) average linkage put 19 % of the windows in the
wrong cluster even with the true speaker count, spectral clustering 5 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from parakeet_server.diarization.types import SpeakerCounts

Floats = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64]

# The affinity matrix is quadratic in memory and its eigendecomposition cubic in time: past this
# many windows a sample of them is clustered and the rest go to the nearest centroid.
MAX_CLUSTERED = 4000


@dataclass(frozen=True)
class ClusteringParams:
    """The clustering's knobs, tuned on synthesized 2-4 speaker conversations (seeds 1000+)."""

    neighbours: float = 0.2
    overcluster: int = 6
    merge_threshold: float = 0.2
    pitch_weight: float = 0.5
    min_speaker_share: float = 0.08
    # Pitch is trusted for counting only when it is measured steady: the median over the
    # over-clustered voices of their windows' pitch spread (standard deviation, octaves) is below
    # this. Synthetic voices measure 0.02-0.04, varied and natural speech 0.06 and up; there the
    # count comes from the eigengap of an affinity keeping `eigengap_neighbours` of each row.
    # 0 (the default, which the live diarizer keeps) always uses pitch.
    steady_pitch_octaves: float = 0.0
    eigengap_neighbours: float = 0.1
    max_eigengap_speakers: int = 8
    # After an estimated count, two clusters are one voice while their distance (as in
    # count_speakers, on the raw means) is below `same_voice_distance` + `same_voice_noise` x
    # (1/size_a + 1/size_b), sizes in windows: the means of a few windows scatter, so a short
    # recording of one voice split in 3-8 clusters whose means look apart. Calibrated on one-voice
    # recordings of 2-37 s (all ten voices) against two-voice talks of 8-23 s and the clean and
    # realistic sets. 0 and 0 (the defaults, which the live diarizer keeps) join nothing.
    same_voice_distance: float = 0.0
    same_voice_noise: float = 0.0


def cluster(
    embeddings: Floats,
    pitch: Floats,
    counts: SpeakerCounts,
    params: ClusteringParams,
) -> Labels:
    """A cluster index per window (labels by first appearance): spectral clustering of the
    refined affinity into `counts.num_speakers` clusters, or into as many as count_speakers
    finds, clamped to [min_speakers, max_speakers]. Never more clusters than windows.

    `pitch` is each window's median pitch in octaves (NaN when unvoiced).
    """
    count = embeddings.shape[0]
    if count == 1 or counts.num_speakers == 1 or counts.max_speakers == 1:
        return np.zeros(count, dtype=np.int64)
    sample = np.arange(count)
    if count > MAX_CLUSTERED:
        sample = np.sort(np.random.default_rng(0).choice(count, MAX_CLUSTERED, replace=False))
    refined = affinity(embeddings[sample], params.neighbours)
    degree = np.sqrt(refined.sum(axis=1))
    vectors = np.linalg.eigh(refined / np.outer(degree, degree))[1][:, ::-1]
    if counts.num_speakers is not None:
        clusters = counts.num_speakers
    elif (
        params.steady_pitch_octaves > 0
        and pitch_spread(pitch[sample], spectral_labels(vectors, min(params.overcluster, sample.size)))
        >= params.steady_pitch_octaves
    ):
        refined = affinity(embeddings[sample], params.eigengap_neighbours)
        degree = np.sqrt(refined.sum(axis=1))
        values, vectors = np.linalg.eigh(refined / np.outer(degree, degree))
        values, vectors = values[::-1], vectors[:, ::-1]
        clusters = counts.clamp(eigengap_count(values, params.max_eigengap_speakers))
    else:
        clusters = counts.clamp(count_speakers(embeddings[sample], pitch[sample], vectors, params))
    sampled = spectral_labels(vectors, min(clusters, sample.size))
    if counts.num_speakers is None:
        sampled = merge_same_voices(
            embeddings[sample], pitch[sample], sampled, counts.min_speakers or 1, params
        )
    if sample.size == count:
        return sampled
    return np.asarray(
        np.argmax(embeddings @ centroids(embeddings[sample], sampled).T, axis=1), dtype=np.int64
    )


def spectral_labels(vectors: npt.NDArray[np.float64], clusters: int) -> Labels:
    """k-means on the rows of the first `clusters` eigenvectors, labels by first appearance."""
    from sklearn.cluster import KMeans

    if clusters == 1:
        return np.zeros(vectors.shape[0], dtype=np.int64)
    points = vectors[:, :clusters]
    points = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
    labels = KMeans(clusters, n_init=10, random_state=0).fit_predict(points).astype(np.int64)
    return renumber(labels)


def count_speakers(
    embeddings: Floats, pitch: Floats, vectors: npt.NDArray[np.float64], params: ClusteringParams
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

    split = spectral_labels(vectors, min(params.overcluster, embeddings.shape[0]))
    groups = int(split.max()) + 1
    if groups == 1:
        return 1
    means = centroids(embeddings, split)
    voiced = np.where(np.isnan(pitch), np.nanmedian(pitch) if np.any(~np.isnan(pitch)) else 0.0, pitch)
    pitches = np.array([np.median(voiced[split == group]) for group in range(groups)])
    distance = 1.0 - means @ means.T + params.pitch_weight * np.abs(pitches[:, None] - pitches[None, :])
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(np.maximum(distance, 0.0), checks=False), method="average")
    voices = fcluster(tree, t=params.merge_threshold, criterion="distance")
    sizes = np.bincount(split, minlength=groups)
    shares = np.array([sizes[voices == voice].sum() for voice in np.unique(voices)]) / split.size
    return max(1, int(np.count_nonzero(shares >= params.min_speaker_share)))


def merge_same_voices(
    embeddings: Floats, pitch: Floats, labels: Labels, fewest: int, params: ClusteringParams
) -> Labels:
    """Join the closest two clusters while they are one voice (see `ClusteringParams.same_voice_*`),
    never below `fewest` clusters; labels by first appearance.

    The distance is count_speakers': cosine distance between the clusters' mean embeddings plus
    `pitch_weight` x the octaves between their median pitches (voiced windows; 0 when either has
    none). The allowance for small clusters is what tells a one-voice memo of a few seconds,
    whose 1-3 window clusters sit 0.15-0.3 apart, from two voices.
    """
    if params.same_voice_distance <= 0 and params.same_voice_noise <= 0:
        return labels
    result = labels.copy()
    while int(result.max()) + 1 > fewest:
        groups = int(result.max()) + 1
        means = centroids(embeddings, result)
        pitches = np.array(
            [
                float(np.median(voiced))
                if (voiced := pitch[(result == group) & ~np.isnan(pitch)]).size
                else np.nan
                for group in range(groups)
            ]
        )
        sizes = np.bincount(result, minlength=groups).astype(np.float64)
        apart = np.nan_to_num(np.abs(pitches[:, None] - pitches[None, :]), nan=0.0)
        excess = (
            1.0
            - means @ means.T
            + params.pitch_weight * apart
            - params.same_voice_noise * (1.0 / sizes[:, None] + 1.0 / sizes[None, :])
        )
        np.fill_diagonal(excess, np.inf)
        first, second = np.unravel_index(int(np.argmin(excess)), excess.shape)
        if excess[first, second] >= params.same_voice_distance:
            break
        result = renumber(np.where(result == max(first, second), min(first, second), result))
    return result


def pitch_spread(pitch: Floats, split: Labels) -> float:
    """The median over clusters of their windows' pitch standard deviation (octaves); clusters
    with fewer than three voiced windows are skipped; inf when none is left (pitch unknown)."""
    spreads = [
        float(np.std(voiced))
        for group in range(int(split.max()) + 1)
        if (voiced := pitch[(split == group) & ~np.isnan(pitch)]).size > 2
    ]
    return float(np.median(spreads)) if spreads else float("inf")


def eigengap_count(values: npt.NDArray[np.float64], most: int) -> int:
    """The speaker count where the normalised affinity's eigenvalues (descending) drop the most,
    among the first `most` + 1 (Ning et al. 2006; Wang et al. 2018): k well-separated voices give
    k eigenvalues near 1, then a gap."""
    top = min(most, values.size - 1)
    if top < 1:
        return 1
    return int(np.argmax(values[:top] - values[1 : top + 1])) + 1


def affinity(embeddings: Floats, neighbours: float) -> npt.NDArray[np.float64]:
    """Cosine affinity refined as in Wang et al. 2018 ("Speaker diarization with LSTM").

    The embeddings are centred first (every window shares the recording's channel and the
    encoder's bias, which crowds all similarities near 1); each row keeps its `neighbours`
    fraction of highest similarities (the rest shrink to 1 %), the matrix is symmetrised and
    diffused (A A^T), and each row is scaled to a maximum of 1.
    """
    centred = embeddings.astype(np.float64) - embeddings.mean(axis=0)
    centred /= np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
    similarity = centred @ centred.T
    cutoff = np.quantile(similarity, 1.0 - neighbours, axis=1, keepdims=True)
    similarity = np.where(similarity >= cutoff, similarity, 0.01 * similarity)
    similarity = (similarity + similarity.T) / 2
    diffused = np.maximum(similarity @ similarity.T, 0.0)
    diffused /= np.maximum(diffused.max(axis=1, keepdims=True), 1e-12)
    return (diffused + diffused.T) / 2  # type: ignore[no-any-return]


def renumber(labels: Labels) -> Labels:
    """Labels 0..k-1 for the k labels present, in order of first appearance."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return np.asarray(rank[inverse], dtype=np.int64)


def centroids(embeddings: Floats, labels: Labels) -> Floats:
    """The L2-normalised mean embedding of each cluster, in cluster order."""
    means = np.stack([embeddings[labels == label].mean(axis=0) for label in range(int(labels.max()) + 1)])
    norms = np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    return np.asarray(means / norms, dtype=np.float32)


def frame_labels(
    embeddings: Floats,
    labels: Labels,
    starts: npt.NDArray[np.int64],
    ends: npt.NDArray[np.int64],
    frames: int,
) -> Labels:
    """A speaker per frame (-1: no speech), from the windows covering each frame.

    Window i covers frames [starts[i], ends[i]). Each window votes with its similarity to every
    centroid, weighted by a Hann taper so that a frame listens most to the windows centred on
    it. A cluster that wins no frame (possible when `num_speakers` asks for more than the voices
    heard) keeps its windows' centres, so the requested count is honoured.
    """
    means = centroids(embeddings, labels)
    similarity = embeddings @ means.T
    scores = np.zeros((frames, means.shape[0]), dtype=np.float64)
    covered = np.zeros(frames, dtype=bool)
    for index, (first, last) in enumerate(zip(starts, ends, strict=True)):
        start, end = int(first), min(int(last), frames)
        if end <= start:
            continue
        taper = np.hanning(end - start + 2)[1:-1]
        scores[start:end] += taper[:, None] * similarity[index]
        covered[start:end] = True
    result = np.where(covered, np.argmax(scores, axis=1), -1).astype(np.int64)
    for label in range(means.shape[0]):
        if np.any(result == label):
            continue
        for member in np.flatnonzero(labels == label):
            middle = (int(starts[member]) + int(ends[member])) // 2
            result[max(0, middle - 5) : min(frames, middle + 5)] = label
    return result


def true_runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """(start, end) of each run of True in `mask`, end exclusive."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def runs(labels: Labels) -> list[tuple[int, int, int]]:
    """(start, end, label) of each run of equal labels, end exclusive."""
    if labels.size == 0:
        return []
    edges = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [labels.size]])
    return [(int(start), int(end), int(labels[start])) for start, end in zip(starts, ends, strict=True)]


def smooth(labels: Labels, shortest: int) -> Labels:
    """Runs of speech shorter than `shortest` frames join the longer speech run beside them.

    Shortest runs first, one pass. A run is kept when it is the last one of its speaker, so no
    requested speaker disappears; pauses (-1) are never relabelled here (see `bridge`).
    """
    spans = [list(run) for run in runs(labels)]
    frames_of: dict[int, int] = {}
    for start, end, label in spans:
        frames_of[label] = frames_of.get(label, 0) + end - start
    result = labels.copy()
    for index in sorted(range(len(spans)), key=lambda at: spans[at][1] - spans[at][0]):
        start, end, label = spans[index]
        if end - start >= shortest:
            break
        if label < 0 or frames_of[label] == end - start:
            continue
        beside = [spans[other] for other in (index - 1, index + 1) if 0 <= other < len(spans)]
        speech = [run for run in beside if run[2] >= 0]
        if not speech:
            continue
        target = max(speech, key=lambda run: run[1] - run[0])[2]
        frames_of[label] -= end - start
        frames_of[target] += end - start
        spans[index][2] = target
        result[start:end] = target
    return result


def bridge(labels: Labels, longest: int) -> Labels:
    """Pauses of at most `longest` frames between two runs of one speaker become that speaker's."""
    result = labels.copy()
    spans = runs(labels)
    for index in range(1, len(spans) - 1):
        start, end, label = spans[index]
        if label < 0 and end - start <= longest and spans[index - 1][2] == spans[index + 1][2]:
            result[start:end] = spans[index - 1][2]
    return result
