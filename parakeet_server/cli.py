"""`parakeet-server`: run one service, or the whole local stack, as gRPC servers; or the HTTP gateway.

parakeet-server transcription --port 50051
parakeet-server diarization   --port 50052
parakeet-server orchestrator  --port 50053
parakeet-server all           (the three above, each on its own port, in one process)
parakeet-server gateway       (the OpenAI-compatible HTTP API over the orchestrator)

The only module that parses flags. Each service's settings are read from the environment by its
config's `from_env` (the RunPod workers' only source); a flag given on the command line then
overrides its variable. A bad value, in a flag or a variable, stops the command with one line
naming it and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TypeVar

from parakeet_server.core.audio import AudioLimits
from parakeet_server.core.grpc_server import (
    DEFAULT_MAX_MESSAGE_BYTES,
    HostedService,
    ServerOptions,
    ServiceHost,
    serve_forever,
)
from parakeet_server.core.logs import configure_logging
from parakeet_server.core.metrics import serve_metrics
from parakeet_server.core.runtime_hygiene import prepare_process
from parakeet_server.core.settings import (
    AUTH_TOKEN_ENV,
    AUTH_TOKEN_FILE_ENV,
    ConfigError,
    Converter,
    Env,
    auth_token,
    device,
    one_of,
    real,
    whole,
)
from parakeet_server.diarization import server as diarization_server
from parakeet_server.diarization import wiring as diarization_wiring
from parakeet_server.diarization.config import DiarizationConfig
from parakeet_server.gateway.config import MIB, GatewayConfig
from parakeet_server.orchestrator import server as orchestrator_server
from parakeet_server.orchestrator import wiring as orchestrator_wiring
from parakeet_server.orchestrator.backends import BACKEND_AUTH_TOKEN_ENV
from parakeet_server.orchestrator.config import BACKENDS, OrchestratorConfig, backend_auth_token
from parakeet_server.transcription import server as transcription_server
from parakeet_server.transcription import wiring as transcription_wiring
from parakeet_server.transcription.config import PRECISIONS, TranscriptionConfig

T = TypeVar("T")
ServiceConfig = TranscriptionConfig | DiarizationConfig | OrchestratorConfig

DEFAULT_PORTS = {"transcription": 50051, "diarization": 50052, "orchestrator": 50053}
# The engines each command runs; the orchestrator runs both itself with --backend inprocess.
ENGINES_OF = {
    "transcription": ("transcription",),
    "diarization": ("diarization",),
    "orchestrator": ("transcription", "diarization"),
    "all": ("transcription", "diarization"),
}
GATEWAY_DESCRIPTION = "OpenAI-compatible HTTP API (/v1/audio/transcriptions) over the OrchestratorService"
DESCRIPTIONS = {
    "transcription": "TranscriptionService (parakeet-tdt-0.6b-v2)",
    "diarization": "DiarizationService (pyannote speaker-diarization-3.1)",
    "orchestrator": "OrchestratorService (transcription + diarization, merged)",
    "all": "the three services, each on its own port, in one process",
}
LOG_FORMATS = ("text", "json")
_TRANSCRIPTION = TranscriptionConfig()
_DIARIZATION = DiarizationConfig()
_ORCHESTRATOR = OrchestratorConfig()
_GATEWAY = GatewayConfig()


def _flag(convert: Converter[T]) -> Callable[[str], T]:
    """A settings converter as an argparse type: the flag accepts what its variable accepts."""

    def parse(raw: str) -> T:
        try:
            return convert(raw)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{raw!r}: {error}") from None

    return parse


def _add_transport_options(command: argparse.ArgumentParser) -> None:
    group = command.add_argument_group("server")
    group.add_argument("--host", default="0.0.0.0", help="address to listen on (default: %(default)s)")
    group.add_argument(
        "--max-workers",
        type=_flag(whole(minimum=1)),
        default=16,
        help="RPC worker threads (default: %(default)s)",
    )
    group.add_argument(
        "--max-message-mb",
        type=_flag(whole(minimum=1)),
        default=DEFAULT_MAX_MESSAGE_BYTES // MIB,
        help="largest request or response message, MiB (default: %(default)s)",
    )
    group.add_argument(
        "--grace",
        type=_flag(real(minimum=0)),
        default=30.0,
        help="seconds in-flight calls get on SIGTERM (default: %(default)s)",
    )
    group.add_argument(
        "--max-concurrent-requests",
        type=_flag(whole(minimum=1)),
        help="calls served at once per server; more get RESOURCE_EXHAUSTED "
        "(env PARAKEET_MAX_CONCURRENT_REQUESTS; default: 64)",
    )
    group.add_argument(
        "--max-live-streams",
        type=_flag(whole(minimum=1)),
        help="live streams (Streaming* RPCs) served at once per server; more get RESOURCE_EXHAUSTED "
        "(env PARAKEET_MAX_LIVE_STREAMS; default: 32)",
    )
    group.add_argument(
        "--auth-token-file",
        help="require 'authorization: Bearer <token>' on every parakeet RPC, the token read from this file "
        f"(or the file env {AUTH_TOKEN_FILE_ENV} names, or env {AUTH_TOKEN_ENV}); health and reflection "
        "stay open for probes",
    )
    group.add_argument("--tls-cert", default="", help="PEM certificate chain: serve TLS instead of plaintext")
    group.add_argument("--tls-key", default="", help="PEM private key for --tls-cert")
    group.add_argument(
        "--metrics-port",
        type=_flag(whole(minimum=0, maximum=65535)),
        default=0,
        help="serve Prometheus metrics on this port (default: off)",
    )
    group.add_argument(
        "--max-audio-seconds",
        type=_flag(real(above=0)),
        metavar="SECONDS",
        help="longest recording any service here accepts (env MAX_AUDIO_SECONDS; "
        f"default: {AudioLimits().max_duration_s:g})",
    )


def _add_device_options(command: argparse.ArgumentParser, engines: tuple[str, ...]) -> None:
    """--device sets the device of every engine the command runs; with two engines,
    --transcription-device and --diarization-device set one of them."""
    group = command.add_argument_group("device")
    group.add_argument(
        "--device",
        type=_flag(device),
        help="auto (a GPU when present), cpu, cuda or cuda:N, for "
        + (" and ".join(engines))
        + " (env "
        + " and ".join(f"{engine.upper()}_DEVICE" for engine in engines)
        + "; default: auto)",
    )
    if "diarization" in engines:
        group.add_argument(
            "--diarization-device",
            type=_flag(device),
            help="the diarization pipeline's device, overriding --device (env DIARIZATION_DEVICE)",
        )
    if len(engines) > 1:
        group.add_argument(
            "--transcription-device",
            type=_flag(device),
            help="the transcription model's device, overriding --device (env TRANSCRIPTION_DEVICE)",
        )


def _add_transcription_options(command: argparse.ArgumentParser) -> None:
    group = command.add_argument_group("transcription")
    engine = _TRANSCRIPTION.engine
    group.add_argument(
        "--model",
        help="a .nemo file, a directory holding one, or a Hugging Face id; local caches are searched first "
        f"(env TRANSCRIPTION_MODEL; default: {engine.model})",
    )
    group.add_argument(
        "--precision",
        type=_flag(one_of(PRECISIONS)),
        help=f"{', '.join(PRECISIONS)}; auto: bf16 on GPUs that support it, else fp32 "
        "(env TRANSCRIPTION_PRECISION; default: auto)",
    )
    group.add_argument(
        "--max-batch-size",
        type=_flag(whole(minimum=1)),
        help="requests sharing one forward pass "
        f"(env TRANSCRIPTION_MAX_BATCH_SIZE; default: {_TRANSCRIPTION.batch.max_batch_size})",
    )
    group.add_argument(
        "--max-batch-wait-ms",
        type=_flag(real(minimum=0)),
        help="how long a request waits for others to share its batch "
        f"(env TRANSCRIPTION_MAX_BATCH_WAIT_MS; default: {_TRANSCRIPTION.batch.max_wait_ms:g})",
    )
    group.add_argument(
        "--window-seconds",
        type=_flag(real(minimum=1)),
        metavar="SECONDS",
        help="recordings longer than this are transcribed in overlapping windows this long, so peak memory "
        f"depends on the window, not on the recording (env TRANSCRIPTION_WINDOW_S; default: {engine.window_s:g})",
    )
    group.add_argument(
        "--window-overlap",
        type=_flag(real(minimum=0)),
        metavar="SECONDS",
        help="overlap of neighbouring windows; words are handed over in its middle "
        f"(env TRANSCRIPTION_WINDOW_OVERLAP_S; default: {engine.window_overlap_s:g})",
    )
    group.add_argument(
        "--window-batch-size",
        type=_flag(whole(minimum=0)),
        help="windows per forward pass, which also caps the audio of one pass of short recordings "
        "(env TRANSCRIPTION_WINDOW_BATCH_SIZE; default or 0: 1 on CPU, 4 on a GPU)",
    )


def _add_diarization_options(command: argparse.ArgumentParser) -> None:
    """Names are unique across services because `all` puts every service's options in one parser."""
    group = command.add_argument_group("diarization")
    group.add_argument(
        "--pipeline",
        metavar="PATH_OR_HF_ID",
        help="pyannote pipeline: a local directory holding config.yaml, or a Hugging Face id such as "
        "pyannote/speaker-diarization-community-1 (env DIARIZATION_PIPELINE; default: "
        f"{_DIARIZATION.pipeline}); gated repos need HUGGINGFACE_ACCESS_TOKEN unless already in the "
        "local cache. 'offline' is the offline silero-vad+resemblyzer backend: no token or download, "
        "lower speaker accuracy",
    )
    group.add_argument(
        "--fallback-offline",
        action="store_const",
        const="offline",
        help="when the pyannote pipeline cannot be loaded (weights or token missing), serve with the "
        "offline backend instead, logging a warning, rather than refuse every call with "
        "FAILED_PRECONDITION (env DIARIZATION_FALLBACK=offline; default: refuse)",
    )
    group.add_argument(
        "--segmentation-batch-size",
        type=_flag(whole(minimum=1)),
        metavar="N",
        help="segmentation windows per forward pass "
        f"(env DIARIZATION_SEGMENTATION_BATCH_SIZE; default: {_DIARIZATION.segmentation_batch_size})",
    )
    group.add_argument(
        "--embedding-batch-size",
        type=_flag(whole(minimum=1)),
        metavar="N",
        help="speaker embeddings per forward pass "
        f"(env DIARIZATION_EMBEDDING_BATCH_SIZE; default: {_DIARIZATION.embedding_batch_size})",
    )


def _add_orchestrator_options(command: argparse.ArgumentParser) -> None:
    group = command.add_argument_group("orchestrator")
    group.add_argument(
        "--backend",
        type=_flag(one_of(BACKENDS)),
        help=f"where transcription and diarization run: {', '.join(BACKENDS)} "
        f"(env ORCHESTRATOR_BACKEND; default: {_ORCHESTRATOR.backend})",
    )
    group.add_argument(
        "--transcription-address",
        metavar="HOST:PORT",
        help="TranscriptionService for --backend grpc "
        "(env TRANSCRIPTION_ADDRESS; default: 127.0.0.1 on the transcription port)",
    )
    group.add_argument(
        "--diarization-address",
        metavar="HOST:PORT",
        help="DiarizationService for --backend grpc "
        "(env DIARIZATION_ADDRESS; default: 127.0.0.1 on the diarization port)",
    )
    group.add_argument(
        "--backend-auth-token-file",
        metavar="FILE",
        help="file holding the bearer token sent to the --backend grpc servers (env "
        f"{BACKEND_AUTH_TOKEN_ENV}_FILE; else env {BACKEND_AUTH_TOKEN_ENV}; else this server's own "
        f"token, from --auth-token-file or {AUTH_TOKEN_ENV}, so one shared token configures a stack)",
    )
    group.add_argument(
        "--backend-tls-ca",
        metavar="PEM",
        help="call the --backend grpc servers over TLS, trusting these certificates (env "
        "PARAKEET_BACKEND_TLS_CA; `all` with --tls-cert uses that certificate; default: plaintext)",
    )
    group.add_argument(
        "--backend-tls-server-name",
        metavar="NAME",
        help="the name the backends' TLS certificates must carry, instead of the host in their "
        "addresses (env PARAKEET_BACKEND_TLS_SERVER_NAME; e.g. localhost for `all` on 127.0.0.1)",
    )
    group.add_argument(
        "--transcription-endpoint-id",
        help="RunPod endpoint for --backend runpod (env TRANSCRIPTION_ENDPOINT_ID)",
    )
    group.add_argument(
        "--diarization-endpoint-id", help="RunPod endpoint for --backend runpod (env DIARIZATION_ENDPOINT_ID)"
    )
    group.add_argument(
        "--transcription-endpoint-url",
        help="full base URL of the transcription endpoint, overriding the RunPod API (tests, proxies; "
        "env TRANSCRIPTION_ENDPOINT_URL)",
    )
    group.add_argument(
        "--diarization-endpoint-url",
        help="full base URL of the diarization endpoint, overriding the RunPod API (tests, proxies; "
        "env DIARIZATION_ENDPOINT_URL)",
    )
    group.add_argument(
        "--runpod-api-base",
        help=f"RunPod serverless API (env RUNPOD_API_BASE; default: {_ORCHESTRATOR.runpod_api_base}); "
        "the key comes from env RUNPOD_API_KEY",
    )


def _add_gateway_options(command: argparse.ArgumentParser) -> None:
    """The gateway is HTTP, not gRPC: its own --host/--port/--auth-token-file/--grace."""
    group = command.add_argument_group("gateway")
    group.add_argument("--host", default=_GATEWAY.host, help="address to listen on (default: %(default)s)")
    group.add_argument(
        "--port",
        type=_flag(whole(minimum=0, maximum=65535)),
        help=f"HTTP port (env GATEWAY_PORT; default: {_GATEWAY.port})",
    )
    group.add_argument(
        "--orchestrator",
        metavar="HOST:PORT",
        help=f"the OrchestratorService to call (env ORCHESTRATOR_ADDRESS; default: {_GATEWAY.orchestrator})",
    )
    group.add_argument(
        "--request-timeout",
        type=_flag(real(above=0)),
        metavar="SECONDS",
        help="deadline of each orchestrator call "
        f"(env GATEWAY_REQUEST_TIMEOUT_S; default: {_GATEWAY.request_timeout_s:g})",
    )
    group.add_argument(
        "--max-upload-mb",
        type=_flag(real(above=0)),
        help="largest audio file accepted, MiB; larger ones get 413. Keep it below the orchestrator's "
        f"--max-message-mb (env GATEWAY_MAX_UPLOAD_MB; default: {_GATEWAY.max_upload_bytes / MIB:g})",
    )
    group.add_argument(
        "--model-id",
        help=f"the model id GET /v1/models lists (env GATEWAY_MODEL_ID; default: {_GATEWAY.model_id})",
    )
    group.add_argument(
        "--auth-token-file",
        help=f"file holding the bearer token clients must send (env {AUTH_TOKEN_FILE_ENV}; else env "
        f"{AUTH_TOKEN_ENV}; none: no check). It is also forwarded to the orchestrator",
    )
    group.add_argument(
        "--grace",
        type=_flag(real(minimum=0)),
        default=_GATEWAY.grace_s,
        help="seconds in-flight requests get on SIGTERM (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Every command and option; no defaults from the environment here (see the configs' from_env)."""
    parser = argparse.ArgumentParser(
        prog="parakeet-server",
        description="Run the parakeet gRPC services, with health checking and reflection.",
        # No prefixes: `--auth-token SECRET` must not be taken as `--auth-token-file SECRET`
        # (a token on the command line shows in `ps`, and would then be read as a path).
        allow_abbrev=False,
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: %(default)s)")
    parser.add_argument(
        "--log-format",
        type=_flag(one_of(LOG_FORMATS)),
        help="json: one object per line with the request id (env PARAKEET_LOG_FORMAT; default: text)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="SERVICE")
    for name, description in DESCRIPTIONS.items():
        command = commands.add_parser(name, help=description, description=description, allow_abbrev=False)
        _add_transport_options(command)
        engines = ENGINES_OF[name]
        _add_device_options(command, engines)
        if "transcription" in engines:
            _add_transcription_options(command)
        if "diarization" in engines:
            _add_diarization_options(command)
        if name in ("orchestrator", "all"):
            _add_orchestrator_options(command)
        ports = DEFAULT_PORTS if name == "all" else {name: DEFAULT_PORTS[name]}
        for service, port in ports.items():
            flag = "--port" if name != "all" else f"--{service}-port"
            command.add_argument(
                flag,
                dest=f"{service}_port",
                type=_flag(whole(minimum=0, maximum=65535)),
                default=port,
                help=f"{service} port (default: {port})",
            )
    gateway = commands.add_parser(
        "gateway", help=GATEWAY_DESCRIPTION, description=GATEWAY_DESCRIPTION, allow_abbrev=False
    )
    _add_gateway_options(gateway)
    return parser


# --- flags over the environment -> configs ---------------------------------------------------------


def _given(args: argparse.Namespace, name: str, otherwise: T) -> T:
    """The flag's value when it was given on the command line, else `otherwise` (the config's)."""
    value = getattr(args, name, None)
    return otherwise if value is None else value


def _limits(args: argparse.Namespace, limits: AudioLimits) -> AudioLimits:
    return replace(limits, max_duration_s=_given(args, "max_audio_seconds", limits.max_duration_s))


def transcription_config(args: argparse.Namespace, base: TranscriptionConfig) -> TranscriptionConfig:
    """`base` (from the environment) with the transcription flags given on the command line."""
    engine = base.engine
    window_batch_size = _given(args, "window_batch_size", engine.window_batch_size or 0) or None
    try:
        engine = replace(
            engine,
            model=_given(args, "model", engine.model),
            device=_given(args, "transcription_device", _given(args, "device", engine.device)),
            precision=_given(args, "precision", engine.precision),
            window_s=_given(args, "window_seconds", engine.window_s),
            window_overlap_s=_given(args, "window_overlap", engine.window_overlap_s),
            window_batch_size=window_batch_size,
        )
    except ValueError as error:  # the window and its overlap do not fit together
        raise ConfigError(f"--window-seconds / --window-overlap: {error}") from None
    batch = replace(
        base.batch,
        max_batch_size=_given(args, "max_batch_size", base.batch.max_batch_size),
        max_wait_ms=_given(args, "max_batch_wait_ms", base.batch.max_wait_ms),
    )
    return replace(base, engine=engine, batch=batch, limits=_limits(args, base.limits))


def diarization_config(args: argparse.Namespace, base: DiarizationConfig) -> DiarizationConfig:
    """`base` (from the environment) with the diarization flags given on the command line."""
    return replace(
        base,
        pipeline=_given(args, "pipeline", base.pipeline),
        device=_given(args, "diarization_device", _given(args, "device", base.device)),
        segmentation_batch_size=_given(args, "segmentation_batch_size", base.segmentation_batch_size),
        embedding_batch_size=_given(args, "embedding_batch_size", base.embedding_batch_size),
        fallback=_given(args, "fallback_offline", base.fallback),
        limits=_limits(args, base.limits),
    )


def server_token(args: argparse.Namespace, env: Env) -> str:
    """The token a server requires; from a file or the environment, never a command-line value."""
    return auth_token(env, getattr(args, "auth_token_file", None) or "")


def orchestrator_config(args: argparse.Namespace, env: Env, base: OrchestratorConfig) -> OrchestratorConfig:
    """`base` (from the environment) with the orchestrator's and its in-process engines' flags.

    In `all`, the backends are this process's own servers: their ports, and, when they serve TLS,
    their certificate as the CA to trust (unless --backend-tls-ca or its variable says otherwise)."""
    addresses = {}
    for name in ("transcription", "diarization"):
        default = getattr(base, f"{name}_address")
        if args.command == "all" and env.raw(f"{name.upper()}_ADDRESS") is None:
            default = f"127.0.0.1:{getattr(args, f'{name}_port')}"
        addresses[name] = _given(args, f"{name}_address", default)
    tls_ca = _given(args, "backend_tls_ca", base.backend_tls_ca)
    if args.command == "all" and args.tls_cert and not tls_ca:
        tls_ca = args.tls_cert
    return replace(
        base,
        backend=_given(args, "backend", base.backend),
        transcription_address=addresses["transcription"],
        diarization_address=addresses["diarization"],
        backend_auth_token=backend_auth_token(
            env, own_token=server_token(args, env), token_file=args.backend_auth_token_file or ""
        ),
        backend_tls_ca=tls_ca,
        backend_tls_server_name=_given(args, "backend_tls_server_name", base.backend_tls_server_name),
        transcription_endpoint_id=_given(args, "transcription_endpoint_id", base.transcription_endpoint_id),
        diarization_endpoint_id=_given(args, "diarization_endpoint_id", base.diarization_endpoint_id),
        transcription_endpoint_url=_given(
            args, "transcription_endpoint_url", base.transcription_endpoint_url
        ),
        diarization_endpoint_url=_given(args, "diarization_endpoint_url", base.diarization_endpoint_url),
        runpod_api_base=_given(args, "runpod_api_base", base.runpod_api_base),
        transcription=transcription_config(args, base.transcription),
        diarization=diarization_config(args, base.diarization),
    )


def service_configs(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> dict[str, ServiceConfig]:
    """The config of each service the command runs, by name: its variables, then its flags."""
    environ = os.environ if environ is None else environ
    env = Env(environ)
    if args.command == "transcription":
        return {"transcription": transcription_config(args, TranscriptionConfig.from_env(environ))}
    if args.command == "diarization":
        return {"diarization": diarization_config(args, DiarizationConfig.from_env(environ))}
    orchestrator = orchestrator_config(args, env, OrchestratorConfig.from_env(environ))
    if args.command == "orchestrator":
        return {"orchestrator": orchestrator}
    # `all`: the servers and the orchestrator's engines (with --backend inprocess) are configured alike.
    return {
        "transcription": orchestrator.transcription,
        "diarization": orchestrator.diarization,
        "orchestrator": orchestrator,
    }


def server_options(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> dict[str, ServerOptions]:
    """The transport of each server the command runs, by service name; same limits and token for all."""
    env = Env(environ)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    common = ServerOptions(
        host=args.host,
        max_workers=args.max_workers,
        max_message_bytes=args.max_message_mb * MIB,
        grace_s=args.grace,
        max_concurrent_requests=_given(
            args,
            "max_concurrent_requests",
            env.get(
                "PARAKEET_MAX_CONCURRENT_REQUESTS", ServerOptions.max_concurrent_requests, whole(minimum=1)
            ),
        ),
        max_live_streams=_given(
            args,
            "max_live_streams",
            env.get("PARAKEET_MAX_LIVE_STREAMS", ServerOptions.max_live_streams, whole(minimum=1)),
        ),
        auth_token=server_token(args, env),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )
    names = list(DEFAULT_PORTS) if args.command == "all" else [args.command]
    return {name: replace(common, port=getattr(args, f"{name}_port")) for name in names}


def gateway_config(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """GatewayConfig.from_env with the gateway flags given on the command line."""
    environ = os.environ if environ is None else environ
    base = GatewayConfig.from_env(environ)
    upload_mb = _given(args, "max_upload_mb", None)
    return replace(
        base,
        host=args.host,
        port=_given(args, "port", base.port),
        orchestrator=_given(args, "orchestrator", base.orchestrator),
        request_timeout_s=_given(args, "request_timeout", base.request_timeout_s),
        max_upload_bytes=base.max_upload_bytes if upload_mb is None else int(upload_mb * MIB),
        model_id=_given(args, "model_id", base.model_id),
        auth_token=server_token(args, Env(environ)),
        grace_s=args.grace,
    )


# --- configs -> servers ----------------------------------------------------------------------------


def hosted_service(config: ServiceConfig) -> HostedService:
    """The service a config describes, wired (not loaded: that is its warm-up) for a ServiceHost."""
    if isinstance(config, TranscriptionConfig):
        return transcription_server.hosted_service(transcription_wiring.build_servicer(config))
    if isinstance(config, DiarizationConfig):
        return diarization_server.hosted_service(
            diarization_wiring.engine_for(config), config.limits, config.live_limits
        )
    return orchestrator_server.hosted_service(orchestrator_wiring.build_servicer(config))


def build_hosts(
    configs: Mapping[str, ServiceConfig], options: Mapping[str, ServerOptions]
) -> list[ServiceHost]:
    """One ServiceHost per service, each on its own port."""
    return [ServiceHost([hosted_service(config)], options[name]) for name, config in configs.items()]


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    try:
        log_format = _given(
            args, "log_format", Env(environ).get("PARAKEET_LOG_FORMAT", "text", one_of(LOG_FORMATS))
        )
        if args.command == "gateway":
            gateway = gateway_config(args, environ)
        else:
            configs = service_configs(args, environ)
            options = server_options(args, environ)
    except ConfigError as error:
        print(f"parakeet-server: error: {error}", file=sys.stderr)
        return 2
    prepare_process()  # before any model library loads: no telemetry, no temp files left behind
    configure_logging(args.log_level, json_logs=log_format == "json")
    if args.command == "gateway":
        from parakeet_server.gateway.server import run  # uvicorn and FastAPI only for the gateway

        return run(gateway)
    try:
        hosts = build_hosts(configs, options)
    except ConfigError as error:  # a file a setting names cannot be read (--backend-tls-ca)
        print(f"parakeet-server: error: {error}", file=sys.stderr)
        return 2
    if args.metrics_port:
        serve_metrics(args.metrics_port, args.host)
    serve_forever(hosts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
