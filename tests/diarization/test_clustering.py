"""The offline backend's clustering and turn clean-up on hand-made arrays: no model, no audio."""

from __future__ import annotations

import numpy as np
import pytest

from parakeet_server.diarization import clustering
from parakeet_server.diarization.clustering import ClusteringParams
from parakeet_server.diarization.types import SpeakerCounts

PARAMS = ClusteringParams()


def labels(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def conversation(speakers: int, turns: int = 9, windows_per_turn: int = 8, seed: int = 0):  # type: ignore[no-untyped-def]
    """Windows of a made-up conversation: speakers take turns in order (0, 1, 2, 0, 1, ...), each
    with its own direction in embedding space and its own pitch, plus a little noise.

    Returns (embeddings, pitch, true labels); labels are by first appearance already.
    """
    rng = np.random.default_rng(seed)
    voices = rng.standard_normal((speakers, 256))
    pitches = np.log2(100.0 * 1.5 ** np.arange(speakers))
    truth = np.repeat(np.arange(turns) % speakers, windows_per_turn)
    embeddings = voices[truth] + 0.3 * rng.standard_normal((truth.size, 256)) * np.linalg.norm(
        voices[0]
    ) / np.sqrt(256)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    pitch = pitches[truth] + 0.02 * rng.standard_normal(truth.size)
    return embeddings.astype(np.float32), pitch.astype(np.float32), truth.astype(np.int64)


@pytest.mark.parametrize("speakers", [2, 3, 4])
def test_well_separated_voices_are_counted_and_labelled_exactly(speakers) -> None:
    embeddings, pitch, truth = conversation(speakers)
    found = clustering.cluster(embeddings, pitch, SpeakerCounts(), PARAMS)
    np.testing.assert_array_equal(found, truth)


def test_without_any_pitch_the_embeddings_alone_count_the_voices() -> None:
    embeddings, pitch, truth = conversation(3)
    silent = np.full_like(pitch, np.nan)
    np.testing.assert_array_equal(clustering.cluster(embeddings, silent, SpeakerCounts(), PARAMS), truth)


@pytest.mark.parametrize("wanted", [1, 2, 3, 4, 5])
def test_num_speakers_is_honoured_exactly(wanted) -> None:
    embeddings, pitch, truth = conversation(3)
    found = clustering.cluster(embeddings, pitch, SpeakerCounts(num_speakers=wanted), PARAMS)
    assert sorted(set(found.tolist())) == list(range(wanted))
    assert found[0] == 0
    if wanted == 3:
        np.testing.assert_array_equal(found, truth)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        (SpeakerCounts(max_speakers=2), 2),
        (SpeakerCounts(max_speakers=1), 1),
        (SpeakerCounts(min_speakers=4), 4),
        (SpeakerCounts(min_speakers=2, max_speakers=5), 3),
    ],
)
def test_min_and_max_speakers_bound_the_estimate(counts, expected) -> None:
    embeddings, pitch, _ = conversation(3)
    assert int(clustering.cluster(embeddings, pitch, counts, PARAMS).max()) + 1 == expected


def test_never_more_clusters_than_windows() -> None:
    embeddings, pitch, _ = conversation(2, turns=2, windows_per_turn=1)
    np.testing.assert_array_equal(
        clustering.cluster(embeddings, pitch, SpeakerCounts(num_speakers=5), PARAMS), labels(0, 1)
    )
    np.testing.assert_array_equal(
        clustering.cluster(embeddings[:1], pitch[:1], SpeakerCounts(num_speakers=3), PARAMS), labels(0)
    )


def test_past_the_clustered_limit_a_sample_is_clustered_and_the_rest_follow(monkeypatch) -> None:
    monkeypatch.setattr(clustering, "MAX_CLUSTERED", 40)
    embeddings, pitch, truth = conversation(3, turns=12)
    assert truth.size == 96
    np.testing.assert_array_equal(clustering.cluster(embeddings, pitch, SpeakerCounts(), PARAMS), truth)


def test_affinity_is_symmetric_and_higher_within_a_voice() -> None:
    embeddings, _, truth = conversation(2)
    affinity = clustering.affinity(embeddings, PARAMS.neighbours)
    np.testing.assert_allclose(affinity, affinity.T)
    same = truth[:, None] == truth[None, :]
    assert affinity[same].min() > affinity[~same].max()


def test_renumber_orders_labels_by_first_appearance() -> None:
    np.testing.assert_array_equal(clustering.renumber(labels(5, 5, 2, 7, 2)), labels(0, 0, 1, 2, 1))


def test_centroids_are_normalised_means() -> None:
    embeddings = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    np.testing.assert_allclose(clustering.centroids(embeddings, labels(0, 0, 1)), [[1.0, 0.0], [0.0, 1.0]])


def test_each_frame_goes_to_the_closest_covering_window_and_uncovered_frames_are_pauses() -> None:
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    found = clustering.frame_labels(embeddings, labels(0, 1), labels(0, 4), labels(4, 8), frames=10)
    np.testing.assert_array_equal(found, labels(0, 0, 0, 0, 1, 1, 1, 1, -1, -1))


def test_a_cluster_that_wins_no_frame_keeps_its_windows_centres() -> None:
    nearly = np.array([0.9, 0.1]) / np.linalg.norm([0.9, 0.1])
    embeddings = np.array([[1.0, 0.0], [1.0, 0.0], nearly], dtype=np.float32)
    found = clustering.frame_labels(
        embeddings, labels(0, 0, 1), labels(0, 0, 0), labels(20, 20, 20), frames=20
    )
    np.testing.assert_array_equal(found, np.array([0] * 5 + [1] * 10 + [0] * 5))


def test_runs_of_equal_labels() -> None:
    assert clustering.runs(labels(-1, -1, 0, 0, 1, -1, 1)) == [
        (0, 2, -1),
        (2, 4, 0),
        (4, 5, 1),
        (5, 6, -1),
        (6, 7, 1),
    ]
    assert clustering.runs(labels()) == []


@pytest.mark.parametrize(
    ("before", "shortest", "after"),
    [
        # A one-frame blip inside another speaker's speech joins it.
        ([0] * 5 + [1] + [0] * 4 + [1] * 6, 3, [0] * 10 + [1] * 6),
        # The only run of a speaker is kept, however short.
        ([0] * 4 + [1] + [0] * 4, 3, [0] * 4 + [1] + [0] * 4),
        # Pauses are never relabelled by smoothing.
        ([0] * 4 + [-1] + [1] * 4, 3, [0] * 4 + [-1] + [1] * 4),
        # A short run between a pause and speech joins the speech.
        ([-1] * 3 + [1] + [0] * 4 + [1] * 4, 2, [-1] * 3 + [0] * 5 + [1] * 4),
        # It joins the longer of its two neighbours.
        ([0] * 3 + [2] + [1] * 5 + [2] * 3, 2, [0] * 3 + [1] * 6 + [2] * 3),
    ],
)
def test_smooth_merges_short_runs_into_a_neighbour(before, shortest, after) -> None:
    np.testing.assert_array_equal(clustering.smooth(np.array(before, dtype=np.int64), shortest), after)


def test_bridge_fills_short_pauses_within_one_speaker_only() -> None:
    before = labels(0, 0, -1, -1, 0, 1, -1, -1, -1, 1, -1, 0)
    after = labels(0, 0, 0, 0, 0, 1, -1, -1, -1, 1, -1, 0)
    np.testing.assert_array_equal(clustering.bridge(before, longest=2), after)
    np.testing.assert_array_equal(clustering.bridge(labels(-1, 0, 0, -1), longest=5), labels(-1, 0, 0, -1))


def test_eigengap_counts_the_eigenvalues_before_the_largest_drop() -> None:
    assert clustering.eigengap_count(np.array([1.0, 0.98, 0.95, 0.3, 0.2, 0.1]), 8) == 3
    assert clustering.eigengap_count(np.array([1.0, 0.2, 0.15]), 8) == 1
    assert clustering.eigengap_count(np.array([1.0, 0.95, 0.8, 0.75, 0.1]), 2) == 2  # never past `most`
    assert clustering.eigengap_count(np.array([1.0]), 8) == 1


def test_pitch_spread_is_the_median_of_each_clusters_deviation_and_ignores_unvoiced() -> None:
    pitch = np.array([7.0, 7.1, 6.9, 8.0, 8.0, 8.0, np.nan, np.nan, 9.0], dtype=np.float32)
    split = labels(0, 0, 0, 1, 1, 1, 2, 2, 2)
    assert clustering.pitch_spread(pitch, split) == pytest.approx(np.median([np.std([7.0, 7.1, 6.9]), 0.0]))
    assert clustering.pitch_spread(np.full(3, np.nan, dtype=np.float32), labels(0, 0, 0)) == float("inf")


def test_with_unsteady_pitch_the_count_comes_from_the_embeddings_alone() -> None:
    """Voices whose pitch wanders (natural speech) are counted without pitch, and still right."""
    embeddings, pitch, truth = conversation(3)
    wandering = (pitch + np.random.default_rng(1).normal(0.0, 0.3, pitch.size)).astype(np.float32)
    params = ClusteringParams(steady_pitch_octaves=0.05)
    assert clustering.pitch_spread(wandering, truth) > params.steady_pitch_octaves
    np.testing.assert_array_equal(clustering.cluster(embeddings, wandering, SpeakerCounts(), params), truth)


SAME_VOICE = ClusteringParams(same_voice_distance=0.03, same_voice_noise=0.5)


def one_voice_in_pieces(pieces: int, windows: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """One voice's windows (noisy around one direction, one pitch) cut into `pieces` clusters."""
    rng = np.random.default_rng(seed)
    voice = rng.standard_normal(256)
    embeddings = voice + 0.5 * rng.standard_normal((windows, 256))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    pitch = np.full(windows, np.log2(120.0)) + 0.02 * rng.standard_normal(windows)
    split = np.arange(windows) * pieces // windows
    return embeddings.astype(np.float32), pitch.astype(np.float32), split.astype(np.int64)


def test_small_clusters_of_one_voice_are_joined_into_one() -> None:
    embeddings, pitch, split = one_voice_in_pieces(4, 12)
    without_allowance = ClusteringParams(same_voice_distance=0.03)
    assert clustering.merge_same_voices(embeddings, pitch, split, 1, without_allowance).max() == 3
    joined = clustering.merge_same_voices(embeddings, pitch, split, 1, SAME_VOICE)
    assert joined.tolist() == [0] * 12


def test_distinct_voices_stay_apart_and_the_fewest_is_kept() -> None:
    embeddings, pitch, truth = conversation(3, turns=3, windows_per_turn=3)
    assert clustering.merge_same_voices(embeddings, pitch, truth, 1, SAME_VOICE).tolist() == truth.tolist()
    pieces = one_voice_in_pieces(4, 12)
    assert int(clustering.merge_same_voices(*pieces, 3, SAME_VOICE).max()) + 1 == 3


def test_without_same_voice_settings_nothing_is_joined() -> None:
    embeddings, pitch, split = one_voice_in_pieces(4, 12)
    assert clustering.merge_same_voices(embeddings, pitch, split, 1, PARAMS).tolist() == split.tolist()


def test_an_estimated_count_of_one_voice_in_few_windows_is_one() -> None:
    embeddings, pitch, _ = one_voice_in_pieces(1, 12, seed=3)
    found = clustering.cluster(embeddings, pitch, SpeakerCounts(), SAME_VOICE)
    assert found.tolist() == [0] * 12
    assert int(clustering.cluster(embeddings, pitch, SpeakerCounts(num_speakers=2), SAME_VOICE).max()) == 1
