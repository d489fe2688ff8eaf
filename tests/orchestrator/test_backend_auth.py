"""The orchestrator's credentials for its gRPC backends: the bearer token it forwards, what a
refused token becomes (FAILED_PRECONDITION naming the backend and the setting, not UNAVAILABLE,
which tells clients to retry), where the token comes from, and TLS to the backends."""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from parakeet.v1 import diarization_pb2_grpc
from parakeet_server import cli
from parakeet_server.core.errors import PreconditionFailed, ServiceUnavailable
from parakeet_server.core.settings import ConfigError
from parakeet_server.orchestrator import server as orchestrator_server
from parakeet_server.orchestrator.backends import GrpcAddresses, GrpcBackends, backend_error
from parakeet_server.orchestrator.config import OrchestratorConfig
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from parakeet_server.orchestrator.wiring import build_backends
from tests.orchestrator.grpc_stack import (
    DIARIZATION,
    ORCHESTRATOR,
    TRANSCRIPTION,
    diarization_service,
    orchestrate,
    transcription_service,
)
from tests.orchestrator.test_servicer import transcript
from tests.support.servers import wait_for_health

TOKEN = "s3cret"


def refused_message(backend: str, address: str, sent: str) -> str:
    return (
        f"the {backend} backend at {address} refused the orchestrator's credentials (UNAUTHENTICATED: "
        "this server needs an 'authorization: Bearer <token>' header); the orchestrator sent "
        f"{sent}: set PARAKEET_BACKEND_AUTH_TOKEN (or --backend-auth-token-file) on the orchestrator "
        f"to the token the {backend} server expects"
    )


@pytest.fixture
def backends_with_token(start_host) -> tuple[str, str]:
    """A transcription and a diarization server that both require TOKEN."""
    transcription = start_host([transcription_service()], auth_token=TOKEN)
    diarization = start_host([diarization_service()], auth_token=TOKEN)
    wait_for_health(transcription.address, TRANSCRIPTION)
    wait_for_health(diarization.address, DIARIZATION)
    return transcription.address, diarization.address


def orchestrator(start_host, addresses: tuple[str, str], backend_token: str, **options) -> str:
    backends = GrpcBackends(GrpcAddresses(*addresses), auth_token=backend_token, **options)
    host = start_host([orchestrator_server.hosted_service(OrchestratorServicer(backends))], auth_token=TOKEN)
    wait_for_health(host.address, ORCHESTRATOR, timeout=10)  # health needs no token
    return host.address


def test_the_backend_token_is_forwarded(start_host, backends_with_token) -> None:
    address = orchestrator(start_host, backends_with_token, backend_token=TOKEN)
    response = orchestrate(address, token=TOKEN)
    assert response.text == transcript().text and response.num_speakers == 2


@pytest.mark.parametrize(("backend_token", "sent"), [("wrong", "its token"), ("", "no token")])
def test_a_refused_token_is_failed_precondition_naming_the_backend(
    start_host, backends_with_token, backend_token: str, sent: str
) -> None:
    address = orchestrator(start_host, backends_with_token, backend_token=backend_token)
    with pytest.raises(grpc.RpcError) as refused:
        orchestrate(address, token=TOKEN)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.details() == refused_message("transcription", backends_with_token[0], sent)


def test_a_refused_diarization_token_names_diarization(start_host, backends_with_token) -> None:
    transcription, _ = backends_with_token
    open_diarization = start_host([diarization_service()], auth_token="another")
    wait_for_health(open_diarization.address, DIARIZATION)
    address = orchestrator(start_host, (transcription, open_diarization.address), backend_token=TOKEN)
    with pytest.raises(grpc.RpcError) as refused:
        orchestrate(address, token=TOKEN)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.details() == refused_message("diarization", open_diarization.address, "its token")
    # Without speakers, the transcription backend (which takes the token) answers.
    assert orchestrate(address, diarize=False, token=TOKEN).text == transcript().text


class Forbidding(diarization_pb2_grpc.DiarizationServiceServicer):
    def Diarize(self, request, context):
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "this token may not diarize")


@pytest.fixture
def forbidding_diarizer() -> Iterator[str]:
    """A plain gRPC server (not a ServiceHost) that answers every Diarize with PERMISSION_DENIED."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    diarization_pb2_grpc.add_DiarizationServiceServicer_to_server(Forbidding(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def test_permission_denied_is_failed_precondition_too(
    start_host, backends_with_token, forbidding_diarizer
) -> None:
    transcription, _ = backends_with_token
    backends = GrpcBackends(GrpcAddresses(transcription, forbidding_diarizer), auth_token=TOKEN)
    servicer = OrchestratorServicer(backends)
    host = start_host([orchestrator_server.hosted_service(servicer)])
    with pytest.raises(grpc.RpcError) as refused:
        orchestrate(host.address)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.details() == (
        f"the diarization backend at {forbidding_diarizer} refused the orchestrator's credentials "
        "(PERMISSION_DENIED: this token may not diarize); the orchestrator sent its token: set "
        "PARAKEET_BACKEND_AUTH_TOKEN (or --backend-auth-token-file) on the orchestrator to the token "
        "the diarization server expects"
    )


def test_backend_error_maps_credentials_to_failed_precondition() -> None:
    """The mapping RunPod job errors go through: auth codes are configuration errors there too."""
    for code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        error = backend_error("diarization", code, "bad key")
        assert type(error) is PreconditionFailed and error.message == "diarization backend: bad key"
    assert type(backend_error("diarization", "INTERNAL", "boom")) is ServiceUnavailable


# --- where the backend token comes from ----------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(list(argv))


def backend_token(environ: dict[str, str], *argv: str) -> str:
    """The token the orchestrator of `parakeet-server <argv>` sends its backends."""
    config = cli.service_configs(parse(*argv), environ)["orchestrator"]
    assert isinstance(config, OrchestratorConfig)
    return config.backend_auth_token


def test_the_backend_token_defaults_to_the_servers_own(tmp_path: Path) -> None:
    assert backend_token({}, "all") == ""
    own = {"PARAKEET_AUTH_TOKEN": "own"}
    assert backend_token(own, "all") == "own"
    assert backend_token(own, "orchestrator") == "own"
    assert OrchestratorConfig.from_env(own).backend_auth_token == "own"
    own_file = tmp_path / "own.token"
    own_file.write_text("from-file\n")
    assert backend_token(own, "all", "--auth-token-file", str(own_file)) == "from-file"

    backend = {**own, "PARAKEET_BACKEND_AUTH_TOKEN": "backend"}
    assert backend_token(backend, "all", "--auth-token-file", str(own_file)) == "backend"
    assert OrchestratorConfig.from_env(backend).backend_auth_token == "backend"
    backend_file = tmp_path / "backend.token"
    backend_file.write_text("  backend-from-file\n")
    assert backend_token(backend, "orchestrator", "--backend-auth-token-file", str(backend_file)) == (
        "backend-from-file"
    )
    from_file = {**backend, "PARAKEET_BACKEND_AUTH_TOKEN_FILE": str(backend_file)}
    assert backend_token(from_file, "orchestrator") == "backend-from-file"
    assert OrchestratorConfig.from_env(from_file).backend_auth_token == "backend-from-file"
    assert "backend-from-file" not in repr(OrchestratorConfig.from_env(from_file))


def test_an_unreadable_token_file_is_a_startup_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing.token"
    with pytest.raises(ConfigError, match=f"^PARAKEET_BACKEND_AUTH_TOKEN_FILE='{missing}': cannot read"):
        OrchestratorConfig.from_env({"PARAKEET_BACKEND_AUTH_TOKEN_FILE": str(missing)})
    with pytest.raises(ConfigError, match=f"^'{missing}': cannot read the token file"):
        backend_token({}, "orchestrator", "--auth-token-file", str(missing))


def test_the_token_is_never_a_command_line_value() -> None:
    for command in ("all", "orchestrator"):
        options = [
            option
            for action in cli.build_parser()._subparsers._group_actions[0].choices[command]._actions  # type: ignore[union-attr]
            for option in action.option_strings
            if "token" in option
        ]
        assert options == ["--auth-token-file", "--backend-auth-token-file"]


# --- TLS to the backends ------------------------------------------------------------------------


def self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_backends(start_host, tmp_path: Path) -> tuple[tuple[str, str], Path]:
    """Backends serving TLS with a certificate for 'speech.internal' (not 127.0.0.1), and TOKEN."""
    cert, key = self_signed(tmp_path, "speech.internal")
    tls = {"tls_cert": str(cert), "tls_key": str(key), "auth_token": TOKEN}
    transcription = start_host([transcription_service()], **tls)
    diarization = start_host([diarization_service()], **tls)
    assert transcription.wait_until_warm(5) and diarization.wait_until_warm(5)
    return (transcription.address, diarization.address), cert


def test_tls_backends_are_called_over_tls_verifying_the_name(start_host, tls_backends) -> None:
    addresses, cert = tls_backends
    trusted = GrpcBackends(
        GrpcAddresses(*addresses),
        auth_token=TOKEN,
        root_certificates=cert.read_bytes(),
        tls_server_name="speech.internal",
    )
    assert trusted.not_ready() is None
    address = orchestrator(start_host, addresses, backend_token=TOKEN, root_certificates=cert.read_bytes(),
                           tls_server_name="speech.internal")  # fmt: skip
    assert orchestrate(address, token=TOKEN).num_speakers == 2

    # The certificate does not name 127.0.0.1: without the server name, verification fails.
    unnamed = GrpcBackends(GrpcAddresses(*addresses), auth_token=TOKEN, root_certificates=cert.read_bytes())
    plaintext = GrpcBackends(GrpcAddresses(*addresses), auth_token=TOKEN)
    for backends in (unnamed, plaintext):
        reason = backends.not_ready() or ""
        assert reason.startswith(
            f"the transcription backend at {addresses[0]} does not answer health checks (UNAVAILABLE"
        ), reason
    for backends in (trusted, unnamed, plaintext):
        backends.close()


def test_all_with_tls_calls_its_backends_over_tls_with_its_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "localhost")
    tls = ("--tls-cert", str(cert), "--tls-key", str(key))

    def orchestrator_of(*argv: str) -> OrchestratorConfig:
        config = cli.service_configs(parse(*argv), {})["orchestrator"]
        assert isinstance(config, OrchestratorConfig)
        return config

    stack = orchestrator_of("all", *tls, "--backend-tls-server-name", "localhost")
    assert stack.backend_tls_ca == str(cert)
    backends = build_backends(stack)
    assert isinstance(backends, GrpcBackends) and backends.tls
    backends.close()
    # A lone orchestrator's own certificate says nothing about its backends: plaintext unless told.
    alone = orchestrator_of("orchestrator", *tls)
    assert alone.backend_tls_ca == ""
    plain = build_backends(alone)
    assert isinstance(plain, GrpcBackends) and not plain.tls
    plain.close()
    explicit = orchestrator_of("all", *tls, "--backend-tls-ca", str(tmp_path / "other.pem"))
    assert explicit.backend_tls_ca == str(tmp_path / "other.pem")
    with pytest.raises(ConfigError, match=r"^--backend-tls-ca '.*other\.pem': cannot read it"):
        build_backends(explicit)
