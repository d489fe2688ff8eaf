"""Online speaker clustering on hand-made embeddings: who joins which global speaker, when a new
one starts, the caps, and that a label once given never moves."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from parakeet_server.core.errors import InvalidRequest
from parakeet_server.diarization.online import (
    UNASSIGNED,
    OnlineClustering,
    OnlineParams,
    Reclustering,
    ReclusterParams,
    _spread,
)
from parakeet_server.diarization.types import SpeakerCounts


def at(*degrees: float) -> np.ndarray:
    """Unit embeddings in a plane, at these angles (cosine distance 1 - cos(angle between))."""
    return np.array([[math.cos(math.radians(d)), math.sin(math.radians(d)), 0.0] for d in degrees])


def one(clustering: OnlineClustering, degrees: float, share: float = 1.0, pitch: float | None = None) -> int:
    """Assign a window holding one local speaker; its global speaker."""
    pitches = None if pitch is None else np.array([pitch])
    return int(clustering.assign(at(degrees), np.array([share]), np.array([share]), pitches)[0])


def test_a_voice_keeps_its_label_and_a_distant_one_gets_the_next() -> None:
    clustering = OnlineClustering(OnlineParams(delta_new=0.3))
    labels = [one(clustering, angle) for angle in (0, 5, -5, 90, 85, 2, 95, 0)]
    assert labels == [0, 0, 0, 1, 1, 0, 1, 0]
    assert clustering.num_speakers == 2


def test_quiet_and_broken_local_speakers_are_left_out_and_start_nothing() -> None:
    clustering = OnlineClustering(OnlineParams(tau_active=0.6))
    embeddings = np.vstack([at(0, 90), [[np.nan, 0.0, 0.0]], [[0.0, 0.0, 0.0]]])
    labels = clustering.assign(embeddings, np.array([0.9, 0.5, 0.9, 0.9]), np.array([0.5, 0.5, 0.5, 0.5]))
    assert labels.tolist() == [0, UNASSIGNED, UNASSIGNED, UNASSIGNED]
    assert clustering.num_speakers == 1


def test_local_speakers_are_matched_by_optimal_assignment_not_greedily() -> None:
    """Local 0 (30 deg) is nearest to A, but local 1 (10 deg) is much nearer: the matching that
    minimises the total distance gives A to local 1 and B to local 0."""
    clustering = OnlineClustering(OnlineParams(delta_new=1.0))
    clustering.assign(at(0, 90), np.ones(2), np.ones(2))
    labels = clustering.assign(at(30, 10), np.ones(2), np.ones(2))
    assert labels.tolist() == [1, 0]


def test_two_local_speakers_of_one_window_start_two_voices_in_the_first_window() -> None:
    clustering = OnlineClustering()
    assert clustering.assign(at(0, 3), np.ones(2), np.full(2, 0.1)).tolist() == [0, 1]


def test_an_unmatched_short_speaker_joins_the_nearest_free_voice_instead_of_starting_one() -> None:
    clustering = OnlineClustering(OnlineParams(delta_new=0.1, rho_update=0.3))
    clustering.assign(at(0, 120), np.ones(2), np.ones(2))
    before = clustering.centroids().copy()
    # Local 0 matches voice 0; local 1 (far from both, brief) may not start a voice and voice 0 is
    # taken in this window, so it goes to voice 1 although voice 0 is nearer.
    labels = clustering.assign(at(1, 50), np.ones(2), np.array([0.9, 0.1]))
    assert labels.tolist() == [0, 1]
    assert clustering.num_speakers == 2
    np.testing.assert_allclose(clustering.centroids()[1], before[1])  # a brief voice moves no centroid


def test_centroids_move_only_with_confident_speakers() -> None:
    clustering = OnlineClustering(OnlineParams(delta_new=0.5, rho_update=0.5))
    one(clustering, 0)
    one(clustering, 20, share=0.4)  # matched, but brief: no update
    np.testing.assert_allclose(clustering.centroids()[0], at(0)[0], atol=1e-6)
    one(clustering, 20, share=0.9)
    assert clustering.centroids()[0] @ at(10)[0] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(("field", "cap"), [("max_speakers", 2), ("num_speakers", 2)])
def test_the_cap_is_never_passed(field: str, cap: int) -> None:
    clustering = OnlineClustering(OnlineParams(delta_new=0.2), SpeakerCounts(**{field: cap}))
    labels = [one(clustering, angle) for angle in (0, 90, 180, 300, 175)]
    assert max(labels) == cap - 1
    assert labels == [0, 1, 1, 0, 1]  # no room for a third voice: each goes to the nearest
    assert clustering.num_speakers == cap


def test_three_local_speakers_with_room_for_two_share_a_voice_rather_than_vanish() -> None:
    clustering = OnlineClustering(OnlineParams(delta_new=0.2), SpeakerCounts(max_speakers=2))
    labels = clustering.assign(at(0, 90, 180), np.ones(3), np.ones(3))
    assert sorted(labels.tolist()[:2]) == [0, 1]
    assert labels[2] in (0, 1)


def test_num_speakers_lowers_the_bar_for_a_new_voice_until_the_count_is_reached() -> None:
    params = OnlineParams(delta_new=0.2, target_ratio=0.5)  # 0.1 while fewer than asked
    free, targeted = OnlineClustering(params), OnlineClustering(params, SpeakerCounts(num_speakers=3))
    angles = (0, 30, 60, 70)  # 30 deg is 0.134 apart: under delta_new, over delta_new x ratio
    assert [one(free, angle) for angle in angles] == [0, 0, 1, 1]
    assert [one(targeted, angle) for angle in angles] == [0, 1, 2, 2]


def test_pitch_tells_apart_voices_the_embeddings_confuse() -> None:
    with_pitch = OnlineClustering(OnlineParams(delta_new=0.3, pitch_weight=1.0))
    without = OnlineClustering(OnlineParams(delta_new=0.3))
    windows = [(0, 7.0), (5, 7.6), (3, 7.0), (4, 7.6)]
    assert [one(with_pitch, angle, pitch=pitch) for angle, pitch in windows] == [0, 1, 0, 1]
    assert [one(without, angle, pitch=pitch) for angle, pitch in windows] == [0, 0, 0, 0]
    # An unknown pitch (unvoiced window) is judged on the embedding alone.
    assert one(with_pitch, 1, pitch=float("nan")) == 0


def test_labels_given_are_never_renumbered() -> None:
    clustering = OnlineClustering(OnlineParams(delta_new=0.3))
    rng = np.random.default_rng(0)
    voices = {0: 0.0, 1: 100.0, 2: 200.0}
    seen: dict[int, int] = {}
    for voice in rng.integers(0, 3, 60).tolist():
        label = one(clustering, voices[voice] + float(rng.normal(0, 4)))
        assert seen.setdefault(voice, label) == label
    assert sorted(seen.values()) == [0, 1, 2]


@pytest.mark.parametrize(
    "params",
    [{"tau_active": 1.5}, {"rho_update": -0.1}, {"delta_new": 0.0}, {"target_ratio": 0.0}],
)
def test_impossible_params_are_refused(params: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        OnlineParams(**params)


def test_impossible_speaker_counts_are_invalid_field() -> None:
    with pytest.raises(InvalidRequest) as refused:
        OnlineClustering(counts=SpeakerCounts(min_speakers=3, max_speakers=2))
    assert refused.value.reason == "INVALID_FIELD"


# -- re-clustering the history, mapped onto the labels sent -------------------------------------

BLOCK = 50  # frames per step: one window every block, each three blocks long


def voices(count: int, rng: np.random.Generator) -> np.ndarray:
    return rng.normal(size=(count, 16))


def run_stream(reclustering: Reclustering, order: list[int], rng: np.random.Generator) -> list[int]:
    """One window per block of the voice given (three blocks long), re-clustered as it comes;
    each block decided (the label with the best score over its frames) two windows after the
    last window covering it is in (as OfflineLive's delay), and recorded. The label of each."""
    centres = voices(max(order) + 1, rng)
    decided: list[int] = []

    def decide(block: int) -> None:
        scores, covered = reclustering.scores(block * BLOCK, (block + 1) * BLOCK)
        assert covered.all()
        label = int(np.argmax(scores.sum(axis=0)))
        decided.append(label)
        reclustering.record(block * BLOCK, np.full(BLOCK, label, dtype=np.int64))

    for index, voice in enumerate(order):
        embedding = centres[voice] + rng.normal(scale=0.15, size=16)
        reclustering.add(embedding, float("nan"), index * BLOCK, (index + 3) * BLOCK)
        reclustering.refresh()
        if index >= 2:
            decide(index - 2)
    reclustering.refresh(force=True)
    for block in range(max(0, len(order) - 2), len(order)):
        decide(block)
    return decided


def runs_of(order: list[int]) -> list[tuple[int, int, int]]:
    edges = [0, *[i for i in range(1, len(order)) if order[i] != order[i - 1]], len(order)]
    return [(start, end, order[start]) for start, end in itertools.pairwise(edges)]


def test_re_clustering_keeps_each_voice_on_the_label_it_was_sent_with() -> None:
    order = [0] * 12 + [1] * 12 + [0] * 8 + [2] * 12 + [1] * 8 + [2] * 8 + [0] * 8
    decided = run_stream(Reclustering(), order, np.random.default_rng(1))
    labels: dict[int, set[int]] = {}
    for start, end, voice in runs_of(order):
        # The first two blocks of a turn are decided with a window of the turn before them.
        labels.setdefault(voice, set()).update(decided[start + 2 : end])
    assert labels == {0: {0}, 1: {1}, 2: {2}}


@pytest.mark.parametrize("counts", [SpeakerCounts(max_speakers=2), SpeakerCounts(num_speakers=2)])
def test_re_clustering_never_passes_the_cap(counts: SpeakerCounts) -> None:
    order = [0] * 12 + [1] * 12 + [2] * 12 + [0] * 8 + [2] * 8
    reclustering = Reclustering(counts)
    decided = run_stream(reclustering, order, np.random.default_rng(2))
    assert reclustering.num_labels == 2
    assert set(decided) == {0, 1}


def test_a_voice_heard_in_one_window_only_starts_no_label() -> None:
    """min_windows (2): a cluster of fewer windows goes to the nearest label; with 1 it would
    have started one."""
    order = [0] * 4 + [1] + [0] * 10
    decided = run_stream(Reclustering(), order, np.random.default_rng(3))
    assert set(decided) == {0}
    eager = Reclustering(recluster=ReclusterParams(min_windows=1))
    assert run_stream(eager, order, np.random.default_rng(3))[5] == 1


def test_long_streams_cluster_a_bounded_spread_of_their_windows() -> None:
    chosen = _spread(1000, 400)
    assert chosen.size == np.unique(chosen).size == 400
    assert set(range(800, 1000)) <= set(chosen.tolist())  # the most recent half, all of it
    assert chosen.min() == 0 and np.all(np.diff(chosen[:200]) == 4)  # the older ones, evenly
    assert _spread(300, 400).tolist() == list(range(300))


@pytest.mark.parametrize("counts", [SpeakerCounts(num_speakers=2), SpeakerCounts(min_speakers=2)])
def test_below_the_count_asked_a_voice_sent_under_another_label_splits_off_for_its_later_frames(
    counts: SpeakerCounts,
) -> None:
    """A second voice the new-voice test never lets in (new_distance 2: as a voice close to the
    first) goes out under the first voice's label; asked for two voices, once its cluster holds
    split_windows windows of turns of its own, its later frames take a label of their own (the
    frames already sent keep theirs). Without a count it stays merged."""
    order = [0] * 12 + [1] * 12 + [0] * 8 + [1] * 8
    params = ReclusterParams(new_distance=2.0)
    merged = run_stream(Reclustering(recluster=params), order, np.random.default_rng(4))
    assert set(merged) == {0}
    reclustering = Reclustering(counts, recluster=params)
    decided = run_stream(reclustering, order, np.random.default_rng(4))
    assert reclustering.num_labels == 2
    # The second voice's first blocks went out as 0 until its cluster held split_windows (4)
    # windows, at most split_overlap (a quarter) of them touching the first voice's (its 2
    # first windows do): from its 8th window on (decided two windows later) it has its own label.
    split = decided.index(1)
    assert split == 12 + 8 - 1 - 2
    assert decided[split:24] == [1] * (24 - split)
    assert decided[26:32] == [0] * 6  # the first voice keeps its label
    assert decided[34:] == [1] * 6  # the second voice's second turn


@pytest.mark.parametrize(
    "params",
    [
        {"every": 0},
        {"dense": -1},
        {"max_clustered": 1},
        {"min_windows": 0},
        {"split_windows": 0},
        {"split_distance": -0.1},
        {"split_overlap": 1.5},
    ],
)
def test_impossible_recluster_params_are_refused(params: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ReclusterParams(**params)
