"""`parakeet batch --ray`: a local Ray (2 CPUs) with the engines in actors writes what the
embedded backend writes, byte for byte, on the 100-file synthesized archive; corrupt files are
failed rows with their reasons; a rerun transcribes nothing; a run that cannot load its model
stops with the reason instead of failing every file.

The CLI runs in this process (Ray's actors are processes of their own); where the installed
metadata lacks the `parakeet.batch` entry point `ray` (an editable install not re-run since
pyproject.toml gained it), it is resolved from the source tree, as tests/batch/parakeet_cli.py does
for the embedded entry.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import psutil
import pytest

from parakeet import cli
from parakeet.batch import Job, ResultRow, expand, run
from parakeet.batch import command as batch_command
from parakeet.batch.outputs import RESULTS
from parakeet.errors import Internal
from parakeet_server import batch_ray
from tests.support.batch_corpus import BatchCorpus

FORMATS = "json,srt,vtt,text,rttm"
RAY_ENTRY = EntryPoint(name="ray", value="parakeet_server.batch_ray:run", group=batch_command.BATCH_GROUP)


@pytest.fixture
def ray_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--ray` finds parakeet_server.batch_ray.run whether or not the entry point is installed."""
    installed = batch_command.entry_points

    def entry_points(**selection: Any) -> Any:
        found = installed(**selection)
        if selection.get("group") == batch_command.BATCH_GROUP and not found:
            return [RAY_ENTRY]
        return found

    monkeypatch.setattr(batch_command, "entry_points", entry_points)


def results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / RESULTS).read_text().splitlines()]


def output_files(out: Path) -> dict[str, bytes]:
    """Every output file under `out` (not the results log, whose timings differ run to run)."""
    return {
        path.relative_to(out).as_posix(): path.read_bytes()
        for path in sorted(out.rglob("*"))
        if path.is_file() and path.name != RESULTS
    }


@pytest.fixture(scope="module")
def embedded_out(batch_corpus: BatchCorpus, tiny_tdt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the whole archive through the embedded backend (models loaded once here),
    with the one torch thread each local Ray actor gets (Ray sets OMP_NUM_THREADS to an actor's
    num_cpus). With another thread count the float sums run in another order and a word's
    confidence differs in its 7th digit; the words, times and speakers do not."""
    import torch

    from parakeet_server import embedded

    out = tmp_path_factory.mktemp("embedded")
    job = Job(out, tuple(FORMATS.split(",")), {"diarize": True}, str(tiny_tdt), "offline")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        transcribe = embedded.orchestrator(model=job.model, pipeline=job.pipeline, diarize=True)
        run(expand([str(batch_corpus.root)]), transcribe, job.outputs(), job.log(), defaults=job.defaults)
    finally:
        torch.set_num_threads(threads)
    return out


def ray_batch(*args: str) -> list[str]:
    return ["batch", *args, "--format", FORMATS, "--pipeline", "offline", "--ray"]


@pytest.mark.slow
@pytest.mark.espeak
def test_ray_writes_what_embedded_writes_and_a_rerun_transcribes_nothing(
    batch_corpus: BatchCorpus,
    tiny_tdt: Path,
    embedded_out: Path,
    tmp_path: Path,
    ray_entry: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "ray"
    argv = ray_batch(str(batch_corpus.root), "--out", str(out), "--diarize", "--model", str(tiny_tdt))

    assert cli.main(argv) == 1  # the corrupt files failed
    stderr = capsys.readouterr().err
    assert "parakeet batch: 97 done, 3 failed, 0 skipped" in stderr

    # Byte for byte what the embedded backend wrote, for every good file and format.
    ray_files = output_files(out)
    assert ray_files == output_files(embedded_out)
    assert len(ray_files) == 97 * 5
    # Every input has exactly one row; the corrupt ones failed with their reasons, nothing written.
    rows = results(out)
    assert sorted(row["key"] for row in rows) == sorted(row["key"] for row in results(embedded_out))
    assert len(rows) == len({row["key"] for row in rows}) == 100
    failed = {row["source"]: row for row in rows if row["status"] == "failed"}
    assert {
        Path(source).relative_to(batch_corpus.root).as_posix(): row["reason"]
        for source, row in failed.items()
    } == (batch_corpus.corrupt)
    assert all(row["error"] and not row["outputs"] for row in failed.values())
    done = [row for row in rows if row["status"] == "done"]
    assert all(row["duration_s"] > 0.3 and len(row["outputs"]) == 5 for row in done)
    # The words are the ones spoken (the trained tiny model gets most of them).
    spoken = {Path(row["source"]).relative_to(batch_corpus.root).as_posix(): row["key"] for row in done}
    right = sum(
        json.loads((out / f"{spoken[name]}.json").read_text())["text"] == text
        for name, text in batch_corpus.texts.items()
    )
    assert right >= 80, f"only {right} of 97 transcripts exact"

    # A rerun finds every input logged: nothing is transcribed, no row is added, no file changes.
    before = (out / RESULTS).read_bytes()
    status = cli.main(argv)
    stderr = capsys.readouterr().err
    assert "parakeet batch: 0 done, 0 failed, 100 skipped (done before, 3 of them failed)" in stderr
    assert status == 1, stderr  # the archive still has failed inputs
    assert (out / RESULTS).read_bytes() == before
    assert output_files(out) == ray_files


@pytest.mark.slow
@pytest.mark.espeak
def test_a_model_that_cannot_load_stops_the_run_with_its_reason(
    batch_corpus: BatchCorpus, tmp_path: Path, ray_entry: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ray"
    missing = tmp_path / "no-such-model.nemo"
    names = batch_corpus.subset(3, corrupt=False)
    argv = ray_batch(
        *map(str, batch_corpus.paths(names)), "--out", str(out), "--diarize", "--model", str(missing)
    )

    status = cli.main(argv)

    stderr = capsys.readouterr().err
    assert status == 1
    assert "parakeet: error: FAILED_PRECONDITION: " in stderr, stderr
    assert str(missing) in stderr
    # The run's failure is no input's: no row, no output, so a rerun after the fix does them all.
    assert not (out / RESULTS).exists() or not results(out)
    assert output_files(out) == {}


def kill_an_actor() -> int:
    """SIGKILL one of the run's Ray actors (a process titled after the map_batches class)."""
    for process in psutil.process_iter(["pid", "cmdline"]):
        if any("MapBatches(_Worker)" in part for part in process.info["cmdline"] or []):
            os.kill(process.info["pid"], signal.SIGKILL)
            return int(process.info["pid"])
    raise AssertionError("no Ray actor process found")


@pytest.mark.slow
@pytest.mark.espeak
def test_an_actor_killed_mid_run_stops_it_and_a_rerun_finishes_every_file_once(
    batch_corpus: BatchCorpus,
    tiny_tdt: Path,
    tmp_path: Path,
    ray_entry: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "ray"
    job = Job(out, ("json",), {}, str(tiny_tdt), "offline")
    log = job.log()
    with pytest.raises(Internal, match="rerun the command to resume"):
        for count, row in enumerate(batch_ray.run(expand([str(batch_corpus.root)]), job), 1):
            log.append(row)
            if count == 5:
                kill_an_actor()
    before = (out / RESULTS).read_bytes()
    logged = len(results(out))
    assert 5 <= logged < 100

    argv = ["batch", str(batch_corpus.root), "--out", str(out), "--model", str(tiny_tdt), "--ray"]
    assert cli.main(argv) == 1  # the corrupt files, whichever run reached them
    summary = re.search(r"parakeet batch: (\d+) done, (\d+) failed, (\d+) skipped", capsys.readouterr().err)
    assert summary is not None
    done, failed, skipped = map(int, summary.groups())
    # Skipped: the rows logged, and the files the surviving actor finished after the kill whose
    # outputs were whole but whose rows never reached the log (logged now, not transcribed again).
    assert skipped >= logged
    assert done + failed + skipped == 100
    # The first run's rows stay as they were; each input has one row; every good file its json.
    after = (out / RESULTS).read_bytes()
    assert after.startswith(before)
    rows = results(out)
    assert len(rows) == len({row["key"] for row in rows}) == 100
    assert sum(row["status"] == "done" for row in rows) == 97
    assert all((out / f"{row['key']}.json").is_file() for row in rows if row["status"] == "done")


def test_rows_cross_the_object_store_as_they_were_made() -> None:
    row = ResultRow("a/b.wav", "a/b", "failed", 1.5, 0.25, "could not decode", "AUDIO_UNDECODABLE", [])
    assert ResultRow.from_json(json.loads(json.dumps(row.to_json()))) == row


@pytest.mark.parametrize(
    ("resources", "num_cpus", "gpus", "actors", "items", "size"),
    [
        ({"CPU": 2.0}, 1.0, 0.0, None, 100, 2),  # local: one actor per CPU
        ({"CPU": 2.0}, 1.0, 0.0, None, 1, 1),  # never more actors than items
        ({"CPU": 64.0, "GPU": 4.0}, 1.0, 1.0, None, 100, 4),  # one per GPU
        ({"CPU": 64.0, "GPU": 4.0}, 1.0, 0.5, None, 100, 8),  # two share a GPU
        ({"CPU": 64.0, "GPU": 4.0}, 1.0, 1.0, 2, 100, 2),  # capped by --concurrency
        ({"CPU": 1.0}, 2.0, 0.0, None, 100, 1),  # too small a cluster still gets one
    ],
)
def test_pool_size(
    resources: dict[str, float], num_cpus: float, gpus: float, actors: int | None, items: int, size: int
) -> None:
    assert batch_ray._pool_size(resources, num_cpus, gpus, actors, items) == size


def test_nothing_to_do_starts_no_ray(tmp_path: Path) -> None:
    rows: Iterator[ResultRow] = batch_ray.run([], Job(tmp_path, ("json",)))
    assert list(rows) == []
    import ray

    assert not ray.is_initialized()
