"""Where the orchestrator sends its two halves: in-process servicers, gRPC servers or RunPod endpoints.

All three speak the same proto messages behind one small interface, so the orchestrator's logic
does not know (or care) which architecture it runs in:

- in-process: the single-endpoint worker and the embedded CLI call the servicers directly;
- gRPC: the generated stubs over reused channels, with the caller's deadline propagated, a bearer
  token and TLS when configured, and the backends' health polled for the orchestrator's own;
- RunPod: `/runsync` on the two split endpoints, falling back to `/status` polling when a job
  outlives runsync's wait.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from parakeet.errors import REASONS, ParakeetError, default_reason, reason_of
from parakeet.runpod import RunPodEndpoint, RunPodJobs, request_to_json, response_from_json
from parakeet.v1 import (
    diarization_pb2,
    diarization_pb2_grpc,
    streaming_pb2,
    transcription_pb2,
    transcription_pb2_grpc,
)
from parakeet_server.core.context import CallContext, remaining_seconds
from parakeet_server.core.errors import (
    DeadlineExceeded,
    PreconditionFailed,
    ServiceError,
    ServiceUnavailable,
    error_for_reason,
)
from parakeet_server.core.live import LiveOutput, LiveSession, Opener
from parakeet_server.core.logs import REQUEST_ID_KEY, current_request_id
from parakeet_server.orchestrator.live import GrpcStreamSession

ResponseT = TypeVar("ResponseT", bound=Message)

TRANSCRIPTION = "transcription"
DIARIZATION = "diarization"
SERVICE_NAMES = {
    TRANSCRIPTION: transcription_pb2.DESCRIPTOR.services_by_name["TranscriptionService"].full_name,
    DIARIZATION: diarization_pb2.DESCRIPTOR.services_by_name["DiarizationService"].full_name,
}
# Where the token the orchestrator sends its gRPC backends comes from (parakeet_server/orchestrator/config.py).
BACKEND_AUTH_TOKEN_ENV = "PARAKEET_BACKEND_AUTH_TOKEN"
BACKEND_AUTH_TOKEN_FLAG = "--backend-auth-token-file"


class Backends(Protocol):
    """The two calls the orchestrator makes; each raises a parakeet_server.core.errors type on failure."""

    def transcribe(
        self, request: transcription_pb2.TranscribeRequest, context: CallContext
    ) -> transcription_pb2.TranscribeResponse: ...

    def diarize(
        self, request: diarization_pb2.DiarizeRequest, context: CallContext
    ) -> diarization_pb2.DiarizeResponse: ...

    def enroll(
        self, request: diarization_pb2.EnrollRequest, context: CallContext
    ) -> diarization_pb2.EnrollResponse:
        """A voiceprint from the diarization backend's engine (so it matches in its Diarize)."""
        ...

    def warm_up(self) -> None: ...


@runtime_checkable
class ReportsReadiness(Protocol):
    """Backends that can say whether they serve right now (the gRPC ones, through their health)."""

    def not_ready(self) -> str | None:
        """None while both backends serve, else why not (for the orchestrator's health)."""
        ...


TranscribeFn = Callable[
    [transcription_pb2.TranscribeRequest, CallContext], transcription_pb2.TranscribeResponse
]
DiarizeFn = Callable[[diarization_pb2.DiarizeRequest, CallContext], diarization_pb2.DiarizeResponse]
EnrollFn = Callable[[diarization_pb2.EnrollRequest, CallContext], diarization_pb2.EnrollResponse]


class InProcessBackends:
    """Both servicers in this process (single-endpoint worker, embedded CLI, `--backend inprocess`);
    live streams go to the servicers' own sessions when they have them."""

    def __init__(
        self,
        transcribe: TranscribeFn,
        diarize: DiarizeFn,
        warm_up: Callable[[], None],
        stream_transcription: Opener[transcription_pb2.StreamingTranscribeResponse] | None = None,
        stream_diarization: Opener[diarization_pb2.StreamingDiarizeResponse] | None = None,
        enroll: EnrollFn | None = None,
    ) -> None:
        self._transcribe = transcribe
        self._diarize = diarize
        self._enroll = enroll
        self._warm_up = warm_up
        self._stream_transcription = stream_transcription
        self._stream_diarization = stream_diarization

    def open_transcription_stream(
        self,
        config: streaming_pb2.StreamingConfig,
        output: LiveOutput[transcription_pb2.StreamingTranscribeResponse],
    ) -> LiveSession:
        if self._stream_transcription is None:
            raise PreconditionFailed(
                "live transcription is not enabled in this process", reason="FAILED_PRECONDITION"
            )
        return self._stream_transcription(config, output)

    def open_diarization_stream(
        self,
        config: streaming_pb2.StreamingConfig,
        output: LiveOutput[diarization_pb2.StreamingDiarizeResponse],
    ) -> LiveSession:
        if self._stream_diarization is None:
            raise PreconditionFailed(
                "live diarization is not enabled in this process", reason="FAILED_PRECONDITION"
            )
        return self._stream_diarization(config, output)

    def transcribe(
        self, request: transcription_pb2.TranscribeRequest, context: CallContext
    ) -> transcription_pb2.TranscribeResponse:
        return self._transcribe(request, context)

    def diarize(
        self, request: diarization_pb2.DiarizeRequest, context: CallContext
    ) -> diarization_pb2.DiarizeResponse:
        return self._diarize(request, context)

    def enroll(
        self, request: diarization_pb2.EnrollRequest, context: CallContext
    ) -> diarization_pb2.EnrollResponse:
        if self._enroll is None:
            raise PreconditionFailed("enrolment is not enabled in this process", reason="FAILED_PRECONDITION")
        return self._enroll(request, context)

    def warm_up(self) -> None:
        self._warm_up()


def backend_timeout(context: CallContext) -> float | None:
    """The caller's remaining time less a margin, so a slow backend times out first and the
    orchestrator can still answer in time, naming the backend (or, with speakers_optional,
    returning the transcript without speakers)."""
    remaining = remaining_seconds(context)
    if remaining is None:
        return None
    return max(remaining - min(0.5, 0.1 * remaining), 0.001)


def backend_error(backend: str, code_name: str, message: str, reason: str | None = None) -> ServiceError:
    """A backend's failure as our error, keeping the backend's reason (`parakeet.errors.REASONS`).

    The caller's mistakes (INVALID_ARGUMENT, RESOURCE_EXHAUSTED) pass on as they are; other known
    codes keep code and reason, their message naming the backend; a backend refusing the
    orchestrator's credentials is a configuration error (BACKEND_CREDENTIALS), not an outage:
    retrying cannot help. Anything else (a backend's bug, a status we do not know) is
    BACKEND_UNAVAILABLE, unless an UNAVAILABLE backend named a reason of its own (WARMING_UP).
    A backend without ErrorInfo gets its code's default reason."""
    code = getattr(grpc.StatusCode, code_name, grpc.StatusCode.UNKNOWN)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return PreconditionFailed(f"{backend} backend: {message}", reason="BACKEND_CREDENTIALS")
    if reason not in REASONS or REASONS[reason].code != code:
        reason = default_reason(code)
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED):
        return error_for_reason(reason, message)
    if code in _KEPT_CODES:
        return error_for_reason(reason, f"{backend} backend: {message}")
    # UNAVAILABLE keeps a specific reason (WARMING_UP); a bug or a bare status is BACKEND_UNAVAILABLE.
    specific = code == grpc.StatusCode.UNAVAILABLE and reason != default_reason(code)
    return ServiceUnavailable(
        f"{backend} backend unavailable: {message}", reason=reason if specific else "BACKEND_UNAVAILABLE"
    )


# The backend codes whose reason the orchestrator passes on with the backend named in the message.
_KEPT_CODES = frozenset(
    {
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


@dataclass(frozen=True)
class GrpcAddresses:
    transcription: str = "127.0.0.1:50051"
    diarization: str = "127.0.0.1:50052"


class GrpcBackends:
    """The split gRPC services; one channel each, reused for every call.

    `auth_token` goes to both as `authorization: Bearer <token>`; `root_certificates` (PEM) makes
    the channels TLS, verifying the backends' certificates against them and against
    `tls_server_name` when given (else the host in the address). `not_ready` asks both for
    their health, for the orchestrator's own.
    """

    def __init__(
        self,
        addresses: GrpcAddresses,
        max_message_bytes: int = 64 * 1024 * 1024,
        auth_token: str = "",
        root_certificates: bytes | None = None,
        tls_server_name: str = "",
        health_timeout_s: float = 1.0,
    ) -> None:
        options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            # A backend that was down (or not yet listening) is reconnected to within 2 s of its
            # return, not after gRPC's default backoff of up to 2 minutes: health follows it.
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        if root_certificates is not None and tls_server_name:
            options.append(("grpc.ssl_target_name_override", tls_server_name))
        self.addresses = {TRANSCRIPTION: addresses.transcription, DIARIZATION: addresses.diarization}
        self.tls = root_certificates is not None
        self._has_token = bool(auth_token)
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {auth_token}"),) if auth_token else ()
        )
        self._health_timeout_s = health_timeout_s

        def channel(address: str) -> grpc.Channel:
            if root_certificates is None:
                return grpc.insecure_channel(address, options=options)
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            return grpc.secure_channel(address, credentials, options=options)

        self._channels = {name: channel(address) for name, address in self.addresses.items()}
        self._transcription = transcription_pb2_grpc.TranscriptionServiceStub(self._channels[TRANSCRIPTION])
        self._diarization = diarization_pb2_grpc.DiarizationServiceStub(self._channels[DIARIZATION])
        self._health = {name: health_pb2_grpc.HealthStub(channel) for name, channel in self._channels.items()}

    def _credentials_error(self, backend: str, code: grpc.StatusCode, details: str) -> PreconditionFailed:
        sent = "its token" if self._has_token else "no token"
        return PreconditionFailed(
            f"the {backend} backend at {self.addresses[backend]} refused the orchestrator's credentials "
            f"({code.name}: {details}); the orchestrator sent {sent}: set {BACKEND_AUTH_TOKEN_ENV} "
            f"(or {BACKEND_AUTH_TOKEN_FLAG}) on the orchestrator to the token the {backend} server expects",
            reason="BACKEND_CREDENTIALS",
        )

    def _call(
        self, backend: str, method: Callable[..., ResponseT], request: Message, context: CallContext
    ) -> ResponseT:
        try:
            request_id = current_request_id()
            metadata = self._metadata + (((REQUEST_ID_KEY, request_id),) if request_id else ())
            return method(
                request, timeout=backend_timeout(context), metadata=metadata or None, wait_for_ready=False
            )
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise DeadlineExceeded(
                    f"the deadline passed while waiting for the {backend} backend"
                ) from None
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                raise self._credentials_error(backend, code, error.details() or code.name) from None
            raise backend_error(backend, code.name, error.details() or code.name, reason_of(error)) from None

    def transcribe(
        self, request: transcription_pb2.TranscribeRequest, context: CallContext
    ) -> transcription_pb2.TranscribeResponse:
        response: transcription_pb2.TranscribeResponse = self._call(
            TRANSCRIPTION, self._transcription.Transcribe, request, context
        )
        return response

    def diarize(
        self, request: diarization_pb2.DiarizeRequest, context: CallContext
    ) -> diarization_pb2.DiarizeResponse:
        response: diarization_pb2.DiarizeResponse = self._call(
            DIARIZATION, self._diarization.Diarize, request, context
        )
        return response

    def enroll(
        self, request: diarization_pb2.EnrollRequest, context: CallContext
    ) -> diarization_pb2.EnrollResponse:
        response: diarization_pb2.EnrollResponse = self._call(
            DIARIZATION, self._diarization.Enroll, request, context
        )
        return response

    def open_transcription_stream(
        self,
        config: streaming_pb2.StreamingConfig,
        output: LiveOutput[transcription_pb2.StreamingTranscribeResponse],
    ) -> LiveSession:
        return GrpcStreamSession(
            TRANSCRIPTION,
            self._transcription.StreamingTranscribe,
            transcription_pb2.StreamingTranscribeRequest,
            config,
            output,
            self._metadata,
            self._stream_error,
        )

    def open_diarization_stream(
        self,
        config: streaming_pb2.StreamingConfig,
        output: LiveOutput[diarization_pb2.StreamingDiarizeResponse],
    ) -> LiveSession:
        return GrpcStreamSession(
            DIARIZATION,
            self._diarization.StreamingDiarize,
            diarization_pb2.StreamingDiarizeRequest,
            config,
            output,
            self._metadata,
            self._stream_error,
        )

    def _stream_error(self, backend: str, error: grpc.RpcError) -> ServiceError:
        """A backend stream's failure as ours: credentials named, reasons kept, the backend named."""
        code: grpc.StatusCode = error.code()
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return self._credentials_error(backend, code, error.details() or code.name)
        return backend_error(backend, code.name, error.details() or code.name, reason_of(error))

    def warm_up(self) -> None:
        """Nothing to load: the backends warm themselves up and report it through health."""

    def not_ready(self) -> str | None:
        """None while both backends report SERVING, else why not, naming each that does not.

        Both must serve, even though a call with diarize=false needs only transcription: a load
        balancer routes by this, and most calls want speakers. A backend without a health service
        (UNIMPLEMENTED: not one of ours) cannot be asked; its calls will tell."""
        checks = {
            backend: stub.Check.future(
                health_pb2.HealthCheckRequest(service=SERVICE_NAMES[backend]),
                timeout=self._health_timeout_s,
                metadata=self._metadata or None,
            )
            for backend, stub in self._health.items()
        }
        reasons: list[str] = []
        for backend, check in checks.items():
            where = f"the {backend} backend at {self.addresses[backend]}"
            try:
                status = check.result().status
            except grpc.RpcError as error:
                code: grpc.StatusCode = error.code()
                if code == grpc.StatusCode.UNIMPLEMENTED:
                    continue
                if code == grpc.StatusCode.NOT_FOUND:
                    reasons.append(f"{where} does not host {SERVICE_NAMES[backend]} (check its address)")
                else:
                    reasons.append(f"{where} does not answer health checks ({code.name}: {error.details()})")
                continue
            if status != health_pb2.HealthCheckResponse.SERVING:
                name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
                reasons.append(f"{where} is {name}")
        return "; ".join(reasons) or None

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()


class RunPodBackends:
    """The split architecture's two RunPod endpoints, called with the client's job client
    (`parakeet.runpod`); its errors become ours with their reasons, naming the backend."""

    def __init__(
        self,
        transcription: RunPodEndpoint,
        diarization: RunPodEndpoint,
        api_key: str,
        poll_interval_s: float = 1.0,
        max_wait_s: float = 3600.0,
    ) -> None:
        self.endpoints = {TRANSCRIPTION: transcription, DIARIZATION: diarization}
        self._jobs = RunPodJobs(api_key, poll_interval_s=poll_interval_s, max_wait_s=max_wait_s)

    def run_job(
        self,
        backend: str,
        endpoint: RunPodEndpoint,
        request: Message,
        response_type: type[ResponseT],
        context: CallContext,
    ) -> ResponseT:
        """One job on `endpoint` (named `backend` in errors), as the existing JSON clients send it."""
        try:
            result = self._jobs.submit(
                endpoint, request_to_json(request), backend_timeout(context), label=f"the {backend} backend"
            )
        except ParakeetError as error:  # the endpoint was not reached, or not in time
            raise error_for_reason(error.reason, error.details) from None
        if not result.completed:
            raise backend_error(backend, result.error_code or "UNAVAILABLE", result.error, result.reason)
        try:
            return response_from_json(result.output, response_type)
        except (ValueError, json_format.ParseError) as error:
            raise ServiceUnavailable(
                f"{backend} backend unavailable: its output cannot be read ({error})",
                reason="BACKEND_UNAVAILABLE",
            ) from None

    def transcribe(
        self, request: transcription_pb2.TranscribeRequest, context: CallContext
    ) -> transcription_pb2.TranscribeResponse:
        return self.run_job(
            TRANSCRIPTION,
            self.endpoints[TRANSCRIPTION],
            request,
            transcription_pb2.TranscribeResponse,
            context,
        )

    def diarize(
        self, request: diarization_pb2.DiarizeRequest, context: CallContext
    ) -> diarization_pb2.DiarizeResponse:
        return self.run_job(
            DIARIZATION, self.endpoints[DIARIZATION], request, diarization_pb2.DiarizeResponse, context
        )

    def enroll(
        self, request: diarization_pb2.EnrollRequest, context: CallContext
    ) -> diarization_pb2.EnrollResponse:
        """An enroll job on the diarization endpoint (its engine makes the print its jobs match)."""
        try:
            return self._jobs.enroll(
                self.endpoints[DIARIZATION],
                request,
                backend_timeout(context),
                label="the diarization backend",
            )
        except ParakeetError as error:
            raise error_for_reason(error.reason, error.details) from None

    def warm_up(self) -> None:
        """RunPod scales its workers itself; there is nothing to load here."""
