"""The pyannote diarization engine: the only code that touches pyannote.

`PyannoteEngine` loads a pyannote pipeline (speaker-diarization-3.1 by default, or
community-1, or any local pipeline directory) without the network when its weights are local,
and turns a decoded `Waveform` into speaker turns labelled SPEAKER_00, SPEAKER_01, ... in order
of first appearance.

How loading works, and why it does not call `Pipeline.from_pretrained("pyannote/...")` as is:

* The pipeline's config.yaml names its sub-models by Hub id. Each id is resolved to a local
  snapshot first (`hub.resolve`: the hub caches and RunPod's model store, downloads only when
  missing and online), and the config is rewritten to those local directories, so nothing
  below pyannote ever asks the Hub, and a missing or gated repo becomes one PreconditionFailed
  naming every repo to accept or download.
* pyannote.audio 4.x builds every `SpeakerDiarization` with a PLDA, by default the one in the
  gated `pyannote/speaker-diarization-community-1` repo, even when the pipeline clusters with
  AgglomerativeClustering, which never uses it (pyannote-audio issue #2044); `plda=None` is
  rejected by `get_plda`. When the config's clustering is not VBx and it names no PLDA, the
  engine passes a `PLDA` instance that holds nothing (`get_plda` returns PLDA instances as
  they are), so 3.1 needs only the repos its model card names.
* Audio is handed over in memory (`{"waveform": (1, n) tensor, "sample_rate": 16000}`), so
  pyannote's own torchcodec decoding is never used, and pyannote's usage telemetry is off
  unless PYANNOTE_METRICS_ENABLED says otherwise.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from parakeet_server.core import model_store
from parakeet_server.core.audio import Waveform
from parakeet_server.core.errors import PreconditionFailed, ServiceError
from parakeet_server.core.model_store import RepoFile, looks_like_repo_id
from parakeet_server.diarization import hub
from parakeet_server.diarization.runtime import check_device, stop_check, torch_device, warm_up_waveform
from parakeet_server.diarization.types import ESTIMATE, Diarization, SpeakerCounts, diarization_from_segments

log = logging.getLogger(__name__)

DEFAULT_PIPELINE = "pyannote/speaker-diarization-3.1"
COMMUNITY_PIPELINE = "pyannote/speaker-diarization-community-1"
# Files whose presence marks a usable copy of each kind of sub-model.
_MODEL_FILE = "pytorch_model.bin"
_PLDA_FILE = "plda.npz"
_MODEL_KEYS = ("segmentation", "embedding")


def _import_pyannote() -> Any:
    """Import pyannote.audio quietly: telemetry off by default, no torchcodec warning.

    The warning says pyannote cannot decode files without FFmpeg; this engine never asks it to.
    """
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*torchcodec", category=UserWarning)
        import pyannote.audio

    return pyannote.audio


def _unused_plda() -> Any:
    """A PLDA that loads nothing, for pipelines whose clustering never calls it (#2044)."""
    from pyannote.audio.core.plda import PLDA

    class UnusedPLDA(PLDA):
        def __init__(self) -> None:  # skips PLDA.__init__, which reads .npz files
            self.lda_dimension = 0

        def __call__(self, embeddings: Any) -> Any:
            raise RuntimeError("this pipeline's clustering does not use a PLDA")

    return UnusedPLDA()


def to_diarization(annotation: Any, duration: float, overlap: Any = None) -> Diarization:
    """pyannote Annotation -> the shared Diarization (ms times, labels by first appearance).

    With `overlap` (the overlap-aware annotation of which `annotation` is the exclusive one),
    what it has beyond `annotation` becomes the Diarization's overlap turns.
    """
    segments = annotation.itertracks(yield_label=True)
    extra: list[tuple[float, float, Any]] = []
    if overlap is not None:
        for label in overlap.labels():
            beyond = overlap.label_timeline(label).support().extrude(annotation.label_timeline(label))
            extra.extend((float(segment.start), float(segment.end), label) for segment in beyond)
    return diarization_from_segments(
        ((float(segment.start), float(segment.end), label) for segment, _track, label in segments),
        duration,
        overlap=extra,
    )


class PyannoteEngine:
    """A pyannote diarization pipeline, loaded once and shared by every request.

    Calls are serialised by a lock: the pipeline keeps per-call state and the device is the
    bottleneck anyway.
    """

    def __init__(
        self,
        pipeline: str = DEFAULT_PIPELINE,
        device: str = "auto",
        token: str | None = None,
        segmentation_batch_size: int = 32,
        embedding_batch_size: int = 32,
    ) -> None:
        check_device(device)
        if segmentation_batch_size < 1 or embedding_batch_size < 1:
            raise ValueError("batch sizes must be at least 1")
        self.pipeline = pipeline
        self.device = device
        self.token = token if token is not None else model_store.hub_token()
        self.segmentation_batch_size = segmentation_batch_size
        self.embedding_batch_size = embedding_batch_size
        self._pipeline: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """What responses report as `model`: the Hub id, or a local directory's name."""
        path = Path(self.pipeline).expanduser()
        if path.is_file():
            return path.parent.name
        return path.name if path.is_dir() else self.pipeline

    @property
    def loaded(self) -> bool:
        return self._pipeline is not None

    @property
    def pyannote_pipeline(self) -> Any:
        """The loaded pyannote pipeline (None before load), for diagnostics and fidelity tests."""
        return self._pipeline

    def load(self) -> None:
        """Load the pipeline onto the device; raises PreconditionFailed with what to fix."""
        with self._lock:
            if self._pipeline is not None:
                return
            pyannote = _import_pyannote()
            device = torch_device(self.device)
            base, config = self._pipeline_config()
            self._localise(config, base)
            try:
                pipeline = pyannote.Pipeline.from_pretrained(config, token=self.token)
            except ServiceError:
                raise
            except Exception as error:
                log.exception("loading the diarization pipeline %s failed", self.pipeline)
                raise PreconditionFailed(
                    f"could not load the diarization pipeline {self.name} ({type(error).__name__}); "
                    "see the server log",
                    reason="MODEL_NOT_LOADED",
                ) from None
            if pipeline is None or not callable(pipeline):
                raise PreconditionFailed(
                    f"{self.name} did not load as a pyannote pipeline", reason="MODEL_NOT_LOADED"
                )
            self._configure(pipeline, device)
            self._pipeline = pipeline
            log.info("diarization pipeline %s loaded on %s", self.name, device)

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
        """Who spoke when. `exclusive` gives pyannote 4's non-overlapping turns.

        `should_stop` is polled between pipeline steps; when it returns True the call is
        abandoned with DeadlineExceeded.
        """
        pipeline = self._pipeline
        if pipeline is None:
            raise PreconditionFailed("the diarization pipeline is not loaded", reason="MODEL_NOT_LOADED")
        import torch

        samples = torch.from_numpy(np.ascontiguousarray(waveform.samples, dtype=np.float32)).unsqueeze(0)
        audio = {"waveform": samples, "sample_rate": waveform.sample_rate, "uri": "audio"}
        options: dict[str, Any] = {
            "num_speakers": counts.num_speakers,
            "min_speakers": counts.min_speakers,
            "max_speakers": counts.max_speakers,
        }
        if should_stop is not None:
            options["hook"] = stop_check(should_stop)
        with self._lock, torch.inference_mode():
            output = pipeline(audio, **options)
        if not exclusive:
            return to_diarization(output.speaker_diarization, waveform.duration)
        return to_diarization(
            output.exclusive_speaker_diarization,
            waveform.duration,
            overlap=output.speaker_diarization,
        )

    # -- loading ---------------------------------------------------------------------------

    def _pipeline_config(self) -> tuple[Path, dict[str, Any]]:
        """The pipeline's directory and its parsed config.yaml, from disk or the Hub cache."""
        source = Path(self.pipeline).expanduser()
        if source.is_file():  # the config.yaml itself
            base, config_file = source.parent, source
        elif source.is_dir():
            base, config_file = source, source / "config.yaml"
        elif looks_like_repo_id(self.pipeline):
            needs = [RepoFile(self.pipeline, "config.yaml")] + [
                RepoFile(repo, _MODEL_FILE)
                for repo in hub.KNOWN_PIPELINES.get(self.pipeline, ())
                if repo != self.pipeline
            ]
            base = hub.resolve(needs, self.token)[self.pipeline]
            config_file = base / "config.yaml"
        else:
            raise PreconditionFailed(
                f"diarization pipeline {self.pipeline!r} is neither a local directory holding config.yaml "
                f"nor a Hugging Face repo id such as {DEFAULT_PIPELINE}",
                reason="MODEL_NOT_LOADED",
            )
        try:
            config = yaml.safe_load(config_file.read_text())
        except (OSError, yaml.YAMLError) as error:
            raise PreconditionFailed(
                f"cannot read the diarization pipeline config {config_file} ({type(error).__name__})",
                reason="MODEL_NOT_LOADED",
            ) from None
        if not isinstance(config, dict) or not isinstance(config.get("pipeline"), dict):
            raise PreconditionFailed(
                f"{config_file} is not a pyannote pipeline config (no 'pipeline' section)",
                reason="MODEL_NOT_LOADED",
            )
        return base, config

    def _localise(self, config: dict[str, Any], base: Path) -> None:
        """Point every sub-model at a local copy and drop the PLDA the clustering never uses."""
        from pyannote.audio.core.pipeline import expand_subfolders

        expand_subfolders(config, str(base), token=self.token)  # "$model/x" -> base/x
        params: MutableMapping[str, Any] = config["pipeline"].setdefault("params", {})
        needs: dict[str, RepoFile] = {}
        for key in (*_MODEL_KEYS, "plda"):
            need = _hub_reference(key, params.get(key))
            if need is not None:
                needs[key] = need
        local = hub.resolve(list(needs.values()), self.token) if needs else {}
        for key, need in needs.items():
            params[key] = _local_reference(key, params[key], local[need.repo_id])
        if params.get("clustering", "VBxClustering") != "VBxClustering" and "plda" not in params:
            params["plda"] = _unused_plda()

    def _configure(self, pipeline: Any, device: Any) -> None:
        if hasattr(pipeline, "legacy"):
            pipeline.legacy = False  # always return DiarizeOutput, which has the exclusive turns
        if hasattr(pipeline, "segmentation_batch_size"):
            pipeline.segmentation_batch_size = self.segmentation_batch_size
        if hasattr(pipeline, "embedding_batch_size"):
            pipeline.embedding_batch_size = self.embedding_batch_size
        pipeline.to(device)


def _hub_reference(key: str, value: Any) -> RepoFile | None:
    """The Hub file a sub-model entry of config.yaml needs, when it names a repo by id."""
    filename = _PLDA_FILE if key == "plda" else _MODEL_FILE
    if isinstance(value, str):
        # Embeddings named speechbrain/..., nvidia/... are loaded by their own toolkits.
        if looks_like_repo_id(value) and (key != "embedding" or "pyannote" in value):
            return RepoFile(value, filename)
        return None
    if isinstance(value, Mapping):
        checkpoint = value.get("checkpoint")
        if isinstance(checkpoint, str) and looks_like_repo_id(checkpoint):
            subfolder = value.get("subfolder")
            return RepoFile(
                checkpoint, f"{subfolder}/{filename}" if subfolder else filename, value.get("revision")
            )
    return None


def _local_reference(key: str, value: Any, snapshot: Path) -> dict[str, Any]:
    """The same sub-model entry, pointing at the local snapshot directory."""
    if isinstance(value, Mapping):
        entry = {name: item for name, item in value.items() if name != "revision"}
        entry["checkpoint"] = str(snapshot)
        return entry
    # pyannote loads sub-models named by a string with strict=False; keep that.
    return {"checkpoint": str(snapshot)} if key == "plda" else {"checkpoint": str(snapshot), "strict": False}
