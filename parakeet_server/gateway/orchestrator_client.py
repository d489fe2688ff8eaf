"""The gateway's one connection to the OrchestratorService, awaited from the event loop.

One channel, opened at start-up and reused by every request (gRPC multiplexes calls over it).
Calls use the blocking stubs' `.future()` form, bridged to asyncio by a done-callback: no thread
is held while the orchestrator works, the channel is not tied to one event loop (a `grpc.aio`
channel is), and a request task that is cancelled (shutdown past its grace) cancels its RPC.

Live streams (`stream`) are the exception: a blocking stub would hold a thread per stream to feed
its requests, so StreamingOrchestrate goes over a `grpc.aio` channel, opened lazily in the running
loop (one per loop; the gateway has one) and closed by `aclose`. grpc.aio writes each request only
when HTTP/2 flow control lets it, so a slow orchestrator slows the reading of the requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from parakeet.aio_status import StatusKeeper
from parakeet.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from parakeet_server.core.grpc_server import DEFAULT_MAX_MESSAGE_BYTES
from parakeet_server.gateway.errors import GatewayError, from_rpc_error

SERVICE_NAME: str = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name
# What an OrchestrateRequest carries besides the audio bytes, with room to spare.
REQUEST_OVERHEAD_BYTES = 1024 * 1024
# gRPC's own text for a deadline that passed on the client side, before any server said so.
_LOCAL_DEADLINE = "Deadline Exceeded"

Metadata = Sequence[tuple[str, str]]


# grpcio's numeric status codes -> grpc.StatusCode.
async def settled(call: Any) -> Any:
    """The result of a `grpc.Future`, awaited without blocking the loop; its RpcError if it failed."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def mark_done() -> None:
        if not done.done():
            done.set_result(None)

    def wake(_call: Any) -> None:
        # Runs on a gRPC thread (or at once, here, when the call has already finished).
        with contextlib.suppress(RuntimeError):  # the loop closed while the call ran: nobody waits
            loop.call_soon_threadsafe(mark_done)

    call.add_done_callback(wake)
    try:
        await done
    except asyncio.CancelledError:
        call.cancel()
        raise
    return call.result()


class OrchestratorClient:
    """Orchestrate and health-check calls over one reused channel, with the gateway's deadline."""

    def __init__(self, address: str, timeout_s: float, max_upload_bytes: int) -> None:
        options = [
            ("grpc.max_send_message_length", max_upload_bytes + REQUEST_OVERHEAD_BYTES),
            ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_BYTES),
        ]
        self.address = address
        self.timeout_s = timeout_s
        self._channel = grpc.insecure_channel(address, options=options)
        self._orchestrator = orchestrator_pb2_grpc.OrchestratorServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        # grpc.aio channels belong to the loop that made them: one per running loop, made on first use.
        self._aio: dict[asyncio.AbstractEventLoop, tuple[grpc.aio.Channel, Any]] = {}

    def _aio_stub(self) -> orchestrator_pb2_grpc.OrchestratorServiceStub:
        loop = asyncio.get_running_loop()
        for other in [other for other in self._aio if other.is_closed()]:
            del self._aio[other]  # its loop is gone; so are the channel's resources
        if loop not in self._aio:
            options = [("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_BYTES)]
            channel = grpc.aio.insecure_channel(self.address, options=options)
            self._aio[loop] = (channel, orchestrator_pb2_grpc.OrchestratorServiceStub(channel))
        stub: orchestrator_pb2_grpc.OrchestratorServiceStub = self._aio[loop][1]
        return stub

    async def orchestrate(
        self, request: orchestrator_pb2.OrchestrateRequest, metadata: Metadata
    ) -> orchestrator_pb2.OrchestrateResponse:
        """The orchestrator's response, or the GatewayError its status code maps to."""
        call = self._orchestrator.Orchestrate.future(request, timeout=self.timeout_s, metadata=metadata)
        try:
            response: orchestrator_pb2.OrchestrateResponse = await settled(call)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and error.details() == _LOCAL_DEADLINE:
                raise GatewayError.for_code(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"the orchestrator did not answer within the gateway's request timeout of "
                    f"{self.timeout_s:g} s",
                ) from None
            raise from_rpc_error(error) from None
        return response

    async def stream(
        self,
        requests: AsyncIterator[orchestrator_pb2.StreamingOrchestrateRequest],
        metadata: Metadata,
    ) -> AsyncGenerator[orchestrator_pb2.StreamingOrchestrateResponse, None]:
        """The orchestrator's StreamingOrchestrate responses as they come; a failed stream raises the
        GatewayError its status maps to. `requests` (a config, then audio) is read only as fast as
        flow control allows. Closing this generator (or cancelling its task) cancels the RPC at
        once, so the orchestrator drops the stream; use `contextlib.aclosing` to close it promptly.
        No deadline: a live stream lasts as long as the talk, bounded by the orchestrator's own
        live limits (idle timeout, maximum stream seconds)."""
        call = self._aio_stub().StreamingOrchestrate(requests, metadata=metadata)
        statuses = StatusKeeper(call)  # grpcio may hide the orchestrator's refusal (aio_status)
        try:
            async for response in call:
                yield response
        except grpc.RpcError as error:
            raise from_rpc_error(statuses.server_error(error)) from None
        finally:
            call.cancel()  # a no-op once the call has ended

    async def health(self, timeout_s: float) -> tuple[bool, str]:
        """(SERVING?, the status name): the orchestrator's own health, or why it could not be asked."""
        request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        try:
            response = await settled(self._health.Check.future(request, timeout=timeout_s))
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            return False, code.name
        status: int = response.status
        return (
            status == health_pb2.HealthCheckResponse.SERVING,
            health_pb2.HealthCheckResponse.ServingStatus.Name(status),
        )

    def close(self) -> None:
        """Closes the blocking channel; `aclose` also closes the streams' channels."""
        self._channel.close()

    async def aclose(self) -> None:
        """Closes every channel; an aio channel only from its own loop (others end with their loop)."""
        self.close()
        loop = asyncio.get_running_loop()
        entry = self._aio.pop(loop, None)
        if entry is not None:
            await entry[0].close()
