"""Batch inputs: expansion into items with stable unique keys, manifests with per-file options, and
each item's request (verbose detail, URL as audio.uri, options over the run's defaults)."""

from __future__ import annotations

import json

import pytest

from parakeet.batch.items import BatchInputError, BatchItem, expand, request_for
from parakeet.errors import InvalidArgument
from parakeet.v1 import audio_pb2


@pytest.fixture
def tree(tmp_path):
    for name in ("a/one.wav", "a/deep/two.mp3", "b/one.wav", "b/notes.txt", "top.flac"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF" + name.encode())
    return tmp_path


def test_a_directory_keeps_its_layout_and_skips_non_audio(tree) -> None:
    items = expand([str(tree / "a"), str(tree / "b")])
    assert [item.key for item in items] == ["deep/two", "one", "one-2"]
    assert [item.source for item in items] == [
        str(tree / "a/deep/two.mp3"),
        str(tree / "a/one.wav"),
        str(tree / "b/one.wav"),
    ]


def test_files_globs_and_urls_get_unique_stems_in_order(tree) -> None:
    items = expand(
        [
            str(tree / "top.flac"),
            str(tree / "*/one.wav"),
            "https://example.com/media/one.mp3?x=1",
            "https://h.io/",
        ]
    )
    assert [item.key for item in items] == ["top", "one", "one-2", "one-3", "h.io"]
    assert items[3].source == "https://example.com/media/one.mp3?x=1"
    # The same inputs give the same keys on a rerun: that is how a rerun finds its outputs.
    assert expand([str(tree / "top.flac"), str(tree / "*/one.wav")]) == items[:3]


def test_a_jsonl_and_a_csv_manifest_carry_per_file_options(tree) -> None:
    (tree / "list.jsonl").write_text(
        json.dumps({"path": "a/one.wav", "num_speakers": 2, "diarize": True})
        + "\n\n"
        + json.dumps({"url": "https://example.com/x.wav", "language": "en", "max_speakers": "3"})
        + "\n"
    )
    (tree / "list.csv").write_text("path,min_speakers,diarize\ntop.flac,2,false\nb/one.wav,,\n")
    items = expand([str(tree / "list.jsonl"), str(tree / "list.csv")])
    assert items == [
        BatchItem(str(tree / "a/one.wav"), "one", {"num_speakers": 2, "diarize": True}),
        BatchItem("https://example.com/x.wav", "x", {"language": "en", "max_speakers": 3}),
        BatchItem(str(tree / "top.flac"), "top", {"min_speakers": 2, "diarize": False}),
        BatchItem(str(tree / "b/one.wav"), "one-2", {}),
    ]


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ('{"path": "a.wav", "num_speakers": "two"}\n', "jsonl", ":1: num_speakers must be int, got 'two'"),
        ('{"speakers": 2}\n', "jsonl", ":1: needs a 'path' or 'url'"),
        ("[1, 2]\n", "jsonl", ":1: each line must be a JSON object"),
        ("{oops\n", "jsonl", ":1: not JSON"),
        ("path,diarize\na.wav,maybe\n", "csv", ":2: diarize must be bool, got 'maybe'"),
    ],
)
def test_a_bad_manifest_row_is_refused_with_its_line(tmp_path, content, suffix, message) -> None:
    manifest = tmp_path / f"list.{suffix}"
    manifest.write_text(content)
    with pytest.raises(BatchInputError) as caught:
        expand([str(manifest)])
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(manifest))


def test_inputs_naming_nothing_are_refused(tree) -> None:
    with pytest.raises(BatchInputError, match=r"missing\.wav: no such file or directory"):
        expand([str(tree / "missing.wav")])
    with pytest.raises(BatchInputError, match=r"the pattern matches no file"):
        expand([str(tree / "*.ogg")])
    (tree / "empty").mkdir()
    with pytest.raises(BatchInputError, match="the inputs hold no audio files"):
        expand([str(tree / "empty")])


def test_request_for_asks_every_detail_with_the_items_options_over_the_defaults(tree) -> None:
    item = BatchItem(str(tree / "a/one.wav"), "one", {"num_speakers": 2, "diarize": True})
    request = request_for(
        item, {"diarize": False, "max_speakers": 4, "language": "en", "speakers_optional": True}
    )
    assert request.audio == audio_pb2.Audio(content=b"RIFFa/one.wav", format="wav")
    assert request.response_format == audio_pb2.RESPONSE_FORMAT_VERBOSE_JSON
    assert request.word_timestamps and not request.HasField("timestamps")
    assert (request.diarize, request.num_speakers, request.max_speakers) == (True, 2, 4)
    assert not request.HasField("min_speakers")
    assert (request.language, request.speakers_optional) == ("en", True)


def test_request_for_a_url_sends_the_url_and_a_missing_file_fails_with_a_reason(tree) -> None:
    request = request_for(BatchItem("https://example.com/x.wav", "x"), {})
    assert request.audio == audio_pb2.Audio(uri="https://example.com/x.wav")
    assert not request.diarize
    with pytest.raises(InvalidArgument) as caught:
        request_for(BatchItem(str(tree / "gone.wav"), "gone"), {})
    assert caught.value.reason == "AUDIO_MISSING"
    assert str(caught.value) == f"{tree / 'gone.wav'}: cannot read the file (No such file or directory)"
