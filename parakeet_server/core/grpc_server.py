"""gRPC server bootstrap shared by every service: health, reflection, error mapping, warm-up, drain.

A server starts listening at once (so probes get an answer) but each hosted service reports
NOT_SERVING, and its RPCs are refused with UNAVAILABLE, until its warm-up (model load and one
forward pass) has finished. A service that depends on others (the orchestrator on its gRPC
backends) also gives a readiness probe, which the host polls after warm-up: health is SERVING
only while the probe says ready. SIGTERM flips health to NOT_SERVING, lets in-flight calls
finish within the grace period and refuses new ones.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple

import grpc
from google.protobuf import any_pb2
from google.rpc import status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from parakeet.errors import error_info
from parakeet_server.core.errors import (
    InvalidRequest,
    LimitExceeded,
    PreconditionFailed,
    ServiceError,
    ServiceUnavailable,
    Unauthenticated,
)
from parakeet_server.core.live import LiveRegistry, hosted_streams
from parakeet_server.core.logs import REQUEST_ID_KEY, request_scope
from parakeet_server.core.metrics import IN_FLIGHT, LATENCY, REQUESTS

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# The trailer grpcio-status (grpc_status.rpc_status) reads a `google.rpc.Status` from.
GRPC_DETAILS_METADATA_KEY = "grpc-status-details-bin"


def _no_warm_up() -> None:
    """Services without a model are ready as soon as they listen."""


Probe = Callable[[], str | None]


@dataclass(frozen=True)
class HostedService:
    """A servicer to host: its full proto name, how to add it to a server, how to warm it up and,
    optionally, how to tell whether it can serve right now.

    `probe` is for services whose readiness is not theirs alone (the orchestrator's gRPC backends
    warm up and drain on their own): after warm-up the host calls it every `probe_interval_s`
    seconds, and health reports SERVING only while it returns None (else it returns why not,
    which is logged). It drives health, so that load balancers route only to a service that can
    serve; calls are still let through, so whatever the service can do meanwhile (a transcript
    without speakers, say) is done, and the rest fails with the dependency's own error.
    """

    name: str
    register: Callable[[grpc.Server], None]
    warm_up: Callable[[], None] = _no_warm_up
    probe: Probe | None = None
    probe_interval_s: float = 1.0


@dataclass(frozen=True)
class ServerOptions:
    """Transport settings; limits are explicit so a default never surprises a deployment."""

    host: str = "0.0.0.0"
    port: int = 0
    max_workers: int = 16
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    grace_s: float = 30.0
    max_concurrent_requests: int = 64
    # Live streams (Streaming* RPCs) at once; each holds a thread for its whole life.
    max_live_streams: int = 32
    auth_token: str = ""
    tls_cert: str = ""
    tls_key: str = ""


@dataclass
class _Readiness:
    """Per-service state behind the interceptor's gate: ready, or the reason it is not."""

    ready: set[str] = field(default_factory=set)
    failures: dict[str, ServiceError] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, service: str) -> None:
        with self.lock:
            if service in self.ready:
                return
            failure = self.failures.get(service)
        if failure is not None:
            raise failure
        raise ServiceUnavailable(
            f"{service} is warming up; retry once health reports SERVING", reason="WARMING_UP"
        )


def _service_of(method: str) -> str:
    """'/parakeet.v1.TranscriptionService/Transcribe' -> 'parakeet.v1.TranscriptionService'."""
    return method.strip("/").split("/", 1)[0]


class _MalformedRequest(NamedTuple):
    """Stands in for a request whose bytes did not parse, so the caller gets INVALID_ARGUMENT.

    grpcio answers a deserializer that raises with INTERNAL, the code for a server bug.
    """

    problem: str


def _lenient(deserializer: Callable[[bytes], Any] | None, method: str) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    strict = deserializer

    def deserialize(data: bytes) -> Any:
        try:
            return strict(data)
        except Exception as error:  # DecodeError, or anything a malformed message raises
            return _MalformedRequest(
                f"the request is not a valid {method} message ({type(error).__name__}); "
                "send the protobuf message the method declares"
            )

    return deserialize


@dataclass(frozen=True)
class _RichStatus(grpc.Status):  # type: ignore[misc]
    """What `abort_with_status` takes: code, message, and trailers carrying the status details."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


def _status(error: ServiceError, request_id: str) -> _RichStatus:
    """The error as a rich status: its code and message, and a `google.rpc.Status` in the
    `grpc-status-details-bin` trailer holding an ErrorInfo with its reason (grpcio-status's
    format, which `grpc_status.rpc_status.from_call` reads). abort_with_status replaces the
    trailers already set, so the request id goes in again."""
    detail = any_pb2.Any()
    detail.Pack(error_info(error.reason, error.metadata))
    status = status_pb2.Status(code=error.code.value[0], message=error.message, details=[detail])
    return _RichStatus(
        error.code,
        error.message,
        ((REQUEST_ID_KEY, request_id), (GRPC_DETAILS_METADATA_KEY, status.SerializeToString())),
    )


class ServiceInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """The one gate in front of every hosted RPC: auth, readiness, concurrency limit, errors, metrics.

    - a bearer token, when configured, is compared in constant time (UNAUTHENTICATED otherwise);
    - calls before warm-up get UNAVAILABLE, after a failed warm-up its FAILED_PRECONDITION;
    - more than `max_concurrent` calls at once get RESOURCE_EXHAUSTED instead of queueing forever;
    - ServiceError maps to its status code with an ErrorInfo naming its reason (rich status
      details), anything else to INTERNAL without a traceback;
    - every call is counted and timed, and logged with its request id (x-request-id metadata).

    Health and reflection pass through untouched, so probes work without a token.
    """

    def __init__(
        self,
        hosted: set[str],
        readiness: _Readiness,
        auth_token: str = "",
        max_concurrent: int = 0,
        max_streams: int = 0,
    ) -> None:
        self._hosted = hosted
        self._readiness = readiness
        self._expected = f"Bearer {auth_token}".encode() if auth_token else b""
        self._requests = _Limit(max_concurrent, "concurrent requests") if max_concurrent > 0 else None
        self._streams = _Limit(max_streams, "live streams") if max_streams > 0 else None
        self.live_streams = LiveRegistry()  # this server's live streams, finished when it drains

    def _authorised(self, metadata: dict[str, str]) -> bool:
        if not self._expected:
            return True
        return hmac.compare_digest(metadata.get("authorization", "").encode(), self._expected)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        service = _service_of(handler_call_details.method)
        if handler is None or service not in self._hosted:
            return handler
        if handler.unary_unary is not None:
            return self._unary(handler, handler_call_details)
        if handler.stream_stream is not None:
            return self._streaming(handler, handler_call_details)
        return handler

    def _admit(self, metadata: dict[str, str], service: str) -> None:
        """Auth first (so nothing leaks to a caller without the token), then readiness."""
        if not self._authorised(metadata):
            raise Unauthenticated("this server needs an 'authorization: Bearer <token>' header")
        self._readiness.check(service)

    @staticmethod
    def _metadata(details: grpc.HandlerCallDetails) -> dict[str, str]:
        return {key: value for key, value in (details.invocation_metadata or ()) if isinstance(value, str)}

    @contextlib.contextmanager
    def _guarded_call(
        self,
        context: grpc.ServicerContext,
        details: grpc.HandlerCallDetails,
        limit: _Limit | None,
        request: Any = None,
    ) -> Iterator[None]:
        """One call's gate, whatever its shape: request id, auth, readiness, a malformed request,
        the call's limit, errors as rich statuses, metrics."""
        method = details.method
        short = method.rsplit("/", 1)[-1]
        metadata = self._metadata(details)
        request_id = metadata.get(REQUEST_ID_KEY) or uuid.uuid4().hex
        context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
        started = time.monotonic()
        code = grpc.StatusCode.OK
        acquired = False
        IN_FLIGHT.labels(short).inc()
        try:
            self._admit(metadata, _service_of(method))
            if isinstance(request, _MalformedRequest):
                raise InvalidRequest(request.problem, reason="MALFORMED_REQUEST")
            if limit is not None:
                acquired = limit.acquire()
            with request_scope(request_id):
                yield
        except ServiceError as error:
            code = error.code
            log.info("%s %s -> %s (%s): %s", short, request_id, code.name, error.reason, error.message)
            context.abort_with_status(_status(error, request_id))
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("unhandled error in %s (request %s)", method, request_id)
            context.abort_with_status(_status(_internal(method, request_id), request_id))
        finally:
            if acquired and limit is not None:
                limit.release()
            IN_FLIGHT.labels(short).dec()
            REQUESTS.labels(short, code.name).inc()
            LATENCY.labels(short).observe(time.monotonic() - started)

    def _unary(
        self, handler: grpc.RpcMethodHandler, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        behaviour = handler.unary_unary

        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            with self._guarded_call(context, details, self._requests, request):
                return behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=_lenient(handler.request_deserializer, details.method),
            response_serializer=handler.response_serializer,
        )

    def _streaming(
        self, handler: grpc.RpcMethodHandler, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        """The same gate for a bidirectional stream, counted against the live-stream limit instead
        of the request limit (a stream holds its slot for its whole life)."""
        behaviour = handler.stream_stream

        def checked(requests: Iterator[Any]) -> Iterator[Any]:
            for request in requests:
                if isinstance(request, _MalformedRequest):
                    raise InvalidRequest(request.problem, reason="MALFORMED_REQUEST")
                yield request

        def guarded(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            with self._guarded_call(context, details, self._streams), hosted_streams(self.live_streams):
                yield from behaviour(checked(requests), context)

        return grpc.stream_stream_rpc_method_handler(
            guarded,
            request_deserializer=_lenient(handler.request_deserializer, details.method),
            response_serializer=handler.response_serializer,
        )


@dataclass
class _Limit:
    """How many calls of a kind may run at once; past it, RESOURCE_EXHAUSTED (CONCURRENCY_LIMIT)."""

    limit: int
    what: str  # "concurrent requests", "live streams"
    slots: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        self.slots = threading.BoundedSemaphore(self.limit)

    def acquire(self) -> bool:
        if not self.slots.acquire(blocking=False):
            raise LimitExceeded(
                f"the server is serving its limit of {self.limit} {self.what}; retry with backoff",
                reason="CONCURRENCY_LIMIT",
                metadata={"limit": str(self.limit)},
            )
        return True

    def release(self) -> None:
        self.slots.release()


def _internal(method: str, request_id: str) -> ServiceError:
    return ServiceError(f"internal error in {method} (request {request_id}); see the server log")


class ServiceHost:
    """One gRPC server hosting one or more services, with health and reflection."""

    def __init__(self, services: Sequence[HostedService], options: ServerOptions | None = None) -> None:
        self.options = options or ServerOptions()
        self.services = list(services)
        self._readiness = _Readiness()
        self.health = health.HealthServicer(experimental_non_blocking=True)
        # What each probe last said (None: ready); health is SERVING when warm and not listed here.
        self._probe_reasons: dict[str, str] = {}
        self._serving: dict[str, bool] = {}
        self._stopping = threading.Event()
        names = [service.name for service in self.services]
        self._interceptor = ServiceInterceptor(
            set(names),
            self._readiness,
            auth_token=self.options.auth_token,
            max_concurrent=self.options.max_concurrent_requests,
            max_streams=self.options.max_live_streams,
        )
        self.live_streams = self._interceptor.live_streams
        self.server = grpc.server(
            # Enough threads for every admitted call plus probes: calls past the limit must reach the
            # interceptor (and get RESOURCE_EXHAUSTED) instead of waiting in the executor's queue.
            futures.ThreadPoolExecutor(
                max_workers=max(
                    self.options.max_workers,
                    self.options.max_concurrent_requests + self.options.max_live_streams + 4,
                )
            ),
            interceptors=[self._interceptor],
            options=[
                ("grpc.max_receive_message_length", self.options.max_message_bytes),
                ("grpc.max_send_message_length", self.options.max_message_bytes),
            ],
        )
        for service in self.services:
            service.register(self.server)
            self.health.set(service.name, NOT_SERVING)
        self.health.set("", NOT_SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*names, health.SERVICE_NAME, reflection.SERVICE_NAME],
            self.server,
        )
        address = f"{self.options.host}:{self.options.port}"
        if self.options.tls_cert and self.options.tls_key:
            credentials = grpc.ssl_server_credentials(
                [(Path(self.options.tls_key).read_bytes(), Path(self.options.tls_cert).read_bytes())]
            )
            self.port: int = self.server.add_secure_port(address, credentials)
        else:
            self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.options.host}:{self.options.port}")
        self._warm_up_thread = threading.Thread(target=self._warm_up, name="warm-up", daemon=True)
        self._probe_thread = threading.Thread(target=self._poll_probes, name="readiness-probes", daemon=True)

    @property
    def address(self) -> str:
        host = "127.0.0.1" if self.options.host in ("0.0.0.0", "[::]", "::") else self.options.host
        return f"{host}:{self.port}"

    def start(self) -> None:
        """Listen now; warm the services up in the background."""
        self.server.start()
        log.info("listening on %s for %s", self.address, ", ".join(s.name for s in self.services))
        self._warm_up_thread.start()

    def wait_until_warm(self, timeout: float | None = None) -> bool:
        """True once every warm-up has returned (successfully or not)."""
        self._warm_up_thread.join(timeout)
        return not self._warm_up_thread.is_alive()

    def _warm_up(self) -> None:
        for service in self.services:
            try:
                service.warm_up()
            except ServiceError as error:
                self._record_failure(service.name, error)
                continue
            except Exception as error:
                log.exception("warm-up of %s failed", service.name)
                reason = PreconditionFailed(
                    f"{service.name} could not load its model ({type(error).__name__}); see the server log",
                    reason="MODEL_NOT_LOADED",
                )
                self._record_failure(service.name, reason)
                continue
            with self._readiness.lock:
                self._readiness.ready.add(service.name)
            if service.probe is not None:
                self._probe(service)
            self._publish()
        if any(s.probe is not None and s.name in self._readiness.ready for s in self.services):
            self._probe_thread.start()

    def _probe(self, service: HostedService) -> None:
        """Ask `service`'s probe once and remember the answer (a probe that raises is not ready)."""
        assert service.probe is not None
        try:
            reason = service.probe()
        except Exception as error:
            log.exception("the readiness probe of %s failed", service.name)
            reason = f"its readiness probe failed ({type(error).__name__}); see the server log"
        with self._readiness.lock:
            before = self._probe_reasons.get(service.name)
            if reason is None:
                self._probe_reasons.pop(service.name, None)
            else:
                self._probe_reasons[service.name] = reason
        if reason is not None and reason != before:
            log.warning("%s is not ready: %s", service.name, reason)

    def _poll_probes(self) -> None:
        probed = [s for s in self.services if s.probe is not None and s.name in self._readiness.ready]
        interval = min(s.probe_interval_s for s in probed)
        while not self._stopping.wait(interval):
            for service in probed:
                self._probe(service)
            self._publish()

    def _publish(self) -> None:
        """Set health from warm-up and probes: each service, and the server ("") once all serve."""
        with self._readiness.lock:
            serving = {
                s.name: s.name in self._readiness.ready and s.name not in self._probe_reasons
                for s in self.services
            }
            # Every service starts NOT_SERVING (set in __init__).
            changed = {name: now for name, now in serving.items() if self._serving.get(name, False) != now}
            self._serving = serving
        if self._stopping.is_set():
            return
        for name, now in changed.items():
            self.health.set(name, SERVING if now else NOT_SERVING)
            log.info("%s is %s", name, "SERVING" if now else "NOT_SERVING")
        if changed:
            self.health.set("", SERVING if all(serving.values()) else NOT_SERVING)

    def _record_failure(self, name: str, error: ServiceError) -> None:
        log.error("%s stays NOT_SERVING: %s", name, error.message)
        with self._readiness.lock:
            self._readiness.failures[name] = error

    def drain(self, grace_s: float | None = None) -> None:
        """Report NOT_SERVING, refuse new calls, let in-flight calls finish within the grace period."""
        self._stopping.set()
        self.health.enter_graceful_shutdown()
        self.live_streams.finish_all()  # live streams end their audio now and send their finals
        grace = self.options.grace_s if grace_s is None else grace_s
        self.server.stop(grace).wait()
        log.info("%s drained", self.address)


def serve_forever(hosts: Sequence[ServiceHost]) -> None:
    """Start every host, drain them all on SIGTERM or SIGINT, return once they have stopped."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; draining", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    for host in hosts:
        host.start()
    stop.wait()
    drainers = [threading.Thread(target=host.drain) for host in hosts]
    for drainer in drainers:
        drainer.start()
    for drainer in drainers:
        drainer.join()
