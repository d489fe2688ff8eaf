"""OrchestratorConfig -> its backends and the servicer over them; no gRPC server module here, so
the RunPod worker and the embedded CLI can build the orchestrator too.

In process, the two engines are built by the transcription and diarization wirings from the
config's own TranscriptionConfig and DiarizationConfig, so they are configured, limited and
warmed up exactly as the standalone services are.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from parakeet.runpod import RunPodEndpoint
from parakeet_server.core.errors import PreconditionFailed
from parakeet_server.core.settings import ConfigError
from parakeet_server.diarization import wiring as diarization_wiring
from parakeet_server.orchestrator.backends import (
    Backends,
    GrpcAddresses,
    GrpcBackends,
    InProcessBackends,
    RunPodBackends,
)
from parakeet_server.orchestrator.config import OrchestratorConfig
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from parakeet_server.transcription import wiring as transcription_wiring


def in_process_backends(config: OrchestratorConfig, diarization: bool = True) -> InProcessBackends:
    """Both servicers in this process; `diarization=False` skips loading the pipeline at warm-up
    (the embedded CLI without --diarize needs no Hugging Face token)."""
    transcription = transcription_wiring.build_servicer(config.transcription)
    engine = diarization_wiring.engine_for(config.diarization)
    diarizer = diarization_wiring.build_servicer(
        engine, config.diarization.limits, config.diarization.live_limits
    )

    def warm_up() -> None:
        transcription_wiring.warm_up(transcription)
        if diarization:
            diarization_wiring.warm_up(engine)

    return InProcessBackends(
        transcription.Transcribe,
        diarizer.Diarize,
        warm_up,
        stream_transcription=transcription.live.open_session if transcription.live is not None else None,
        stream_diarization=diarizer.open_session,
        enroll=diarizer.Enroll,
    )


def runpod_backends(config: OrchestratorConfig) -> RunPodBackends:
    """The two split endpoints; a missing endpoint or key is FAILED_PRECONDITION saying what to set."""
    endpoints = {}
    for name, endpoint_id, url in (
        ("transcription", config.transcription_endpoint_id, config.transcription_endpoint_url),
        ("diarization", config.diarization_endpoint_id, config.diarization_endpoint_url),
    ):
        url = url or (f"{config.runpod_api_base.rstrip('/')}/{endpoint_id}" if endpoint_id else "")
        if not url:
            raise PreconditionFailed(
                f"set {name.upper()}_ENDPOINT_ID to the RunPod endpoint of the {name} worker"
            )
        endpoints[name] = RunPodEndpoint(endpoint_id=endpoint_id, url=url)
    explicit_urls = config.transcription_endpoint_url and config.diarization_endpoint_url
    if not config.runpod_api_key and not explicit_urls:
        raise PreconditionFailed("set RUNPOD_API_KEY so the orchestrator can call the RunPod endpoints")
    return RunPodBackends(endpoints["transcription"], endpoints["diarization"], config.runpod_api_key)


def grpc_backends(config: OrchestratorConfig) -> GrpcBackends:
    """The two gRPC services, with the backend token, and TLS when a CA is configured."""
    root_certificates = None
    if config.backend_tls_ca:
        try:
            root_certificates = Path(config.backend_tls_ca).read_bytes()
        except OSError as error:
            raise ConfigError(
                f"--backend-tls-ca {config.backend_tls_ca!r}: cannot read it ({error.strerror or error})"
            ) from None
    return GrpcBackends(
        GrpcAddresses(transcription=config.transcription_address, diarization=config.diarization_address),
        auth_token=config.backend_auth_token,
        root_certificates=root_certificates,
        tls_server_name=config.backend_tls_server_name,
    )


def build_backends(config: OrchestratorConfig, diarization: bool = True) -> Backends:
    """The backends `config.backend` names."""
    if config.backend == "inprocess":
        return in_process_backends(config, diarization)
    if config.backend == "runpod":
        return runpod_backends(config)
    return grpc_backends(config)


def build_servicer(config: OrchestratorConfig) -> OrchestratorServicer:
    """The servicer over its backends; `servicer.backends.warm_up` is its warm-up."""
    return OrchestratorServicer(build_backends(config), live_limits=config.live_limits)


def embedded_backends(
    model: str = "", pipeline: str = "", diarization: bool = True, live: bool = False
) -> InProcessBackends:
    """Both engines in this process, configured as the servers are (defaults and environment),
    with an optional model and pipeline; for the embedded CLI and the evaluation rig. `live`
    loads the streaming model (its own copy) too, for `parakeet stream`."""
    config = OrchestratorConfig.from_env()
    transcription = replace(config.transcription, streaming_enabled=live)
    if model:
        transcription = replace(transcription, engine=replace(transcription.engine, model=model))
    engines = replace(
        config,
        backend="inprocess",
        transcription=transcription,
        diarization=replace(config.diarization, pipeline=pipeline) if pipeline else config.diarization,
    )
    return in_process_backends(engines, diarization)
