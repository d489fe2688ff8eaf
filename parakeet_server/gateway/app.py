"""The FastAPI app: OpenAI's audio routes over the OrchestratorService; translation only.

- `POST /v1/audio/transcriptions`: OpenAI's multipart form (plus `diarize`, `num_speakers`,
  `min_speakers`, `max_speakers`, `speakers_optional`, `timestamps`, `hotwords[]`, `multichannel`,
  `speaker_match_threshold`: the OrchestrateRequest fields of those names) -> one Orchestrate
  call -> OpenAI's response shapes. OpenAI's `known_speaker_names[]` + `known_speaker_references[]`
  (data URLs only, never fetched) and this API's `known_speaker_voiceprints[]` become
  `known_speakers` (gateway/known_speakers.py); they need diarized_json or diarize=true.
  `prompt` and `temperature` are accepted and ignored (`x-parakeet-ignored` says so).
- `GET /v1/models`, `GET /v1/models/{id}`: the one model this gateway serves.
- `GET /health`: 200 while the orchestrator's gRPC health says SERVING, else 503 (no token needed).

The gateway checks only what it must before the call: the bearer token (constant-time), the
upload size, and the form values that choose the response's shape (response_format, read through
the one table of formats `parakeet.formats`, so its refusals read as the orchestrator's;
granularities; timestamps).
Everything else, from decoding to speaker counts to language, is the orchestrator's to refuse,
and its message comes back with the HTTP status its reason maps to (`errors.http_status_for`). The bearer token and the
request id (`x-request-id`, made up when absent) go on to the orchestrator as gRPC metadata.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException

from parakeet import formats
from parakeet.v1 import audio_pb2, orchestrator_pb2
from parakeet_server.core.logs import REQUEST_ID_KEY
from parakeet_server.gateway import known_speakers, openai_shapes, page, sse
from parakeet_server.gateway.config import GatewayConfig
from parakeet_server.gateway.errors import GatewayError
from parakeet_server.gateway.middleware import TRANSCRIPTIONS_PATH, RequestIds, UploadLimit, UploadTooLarge
from parakeet_server.gateway.orchestrator_client import OrchestratorClient

log = logging.getLogger(__name__)

# Multipart boundaries, part headers and the small form fields, on top of the file itself.
FORM_OVERHEAD_BYTES = 64 * 1024
# How much of a refused upload is read and discarded so the client sees the 413 (middleware.py):
# four times the limit, and at least 64 MiB so a small limit still answers typical uploads.
DRAIN_FACTOR = 4
MIN_DRAIN_BYTES = 64 * 1024 * 1024
# Response headers: what served the request, what it asked for, what was accepted but ignored.
MODEL_HEADER = "x-parakeet-model"
REQUESTED_MODEL_HEADER = "x-parakeet-requested-model"
IGNORED_HEADER = "x-parakeet-ignored"
WARNINGS_HEADER = "x-parakeet-warnings"
_MIB = 1024 * 1024


def _header_value(text: str, limit: int = 256) -> str:
    """Text safe for a response header: one line, ASCII (other characters escaped), bounded."""
    return " ".join(text.split()).encode("ascii", "backslashreplace").decode()[:limit]


def _error_response(error: GatewayError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers())


def _forwarded_authorization(header: str) -> str:
    """The Authorization header as the gRPC services compare it ("Bearer <token>"), or "" if unusable."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        header = f"Bearer {token.strip()}"
    return header if header.isascii() and header.isprintable() else ""


def _settings(request: Request) -> GatewayConfig:
    settings = request.app.state.settings
    assert isinstance(settings, GatewayConfig)
    return settings


def _orchestrator(request: Request) -> OrchestratorClient:
    client = request.app.state.orchestrator
    assert isinstance(client, OrchestratorClient)
    return client


async def authorise(request: Request) -> str:
    """The dependency of every /v1 route: checks the token when one is set, returns what to forward."""
    return check_authorization(request.headers.get("authorization", ""), _settings(request))


def check_authorization(header: str, settings: GatewayConfig) -> str:
    """An Authorization header checked against the token (when one is set); what to forward."""
    expected = settings.auth_token.encode()
    if expected:
        scheme, _, token = header.strip().partition(" ")
        valid = scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected)
        if not valid:
            raise GatewayError.for_code(
                grpc.StatusCode.UNAUTHENTICATED,
                "this server needs an 'Authorization: Bearer <token>' header with its token "
                "(the openai client sends its api_key so)",
            )
    return _forwarded_authorization(header)


def _install_error_handlers(app: FastAPI, settings: GatewayConfig) -> None:
    """Every error leaves as OpenAI's `{"error": {...}}` body, whichever layer raised it."""

    async def gateway_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, GatewayError)
        log.info("%s %s -> %d: %s", request.method, request.url.path, error.status, error.message)
        return _error_response(error)

    async def invalid_form(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        problems = list(error.errors())
        first = problems[0] if problems else {}
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "header")]
        param = location[0] if location else None
        message = "; ".join(
            f"{'.'.join(str(p) for p in problem.get('loc', ())[1:]) or 'request'}: {problem.get('msg', 'invalid')}"
            for problem in problems
        )
        return _error_response(GatewayError.for_reason("INVALID_FIELD", message or "invalid request", param))

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        if isinstance(error, UploadTooLarge) or error.status_code == 413:
            limit = settings.max_upload_bytes
            return _error_response(
                GatewayError.for_reason(
                    "PAYLOAD_TOO_LARGE",
                    f"the upload is larger than this server's limit of {limit} bytes ({limit / _MIB:.1f} MiB)",
                    param="file",
                )
            )
        return _error_response(GatewayError.for_http_status(error.status_code, str(error.detail)))

    async def unexpected(request: Request, error: Exception) -> Response:
        request_id = getattr(request.state, "request_id", "?")
        log.error("unhandled error in %s (request %s)", request.url.path, request_id, exc_info=error)
        return _error_response(
            GatewayError.for_code(
                grpc.StatusCode.INTERNAL, f"internal error in the gateway (request {request_id}); see its log"
            )
        )

    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(RequestValidationError, invalid_form)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def _ignored(prompt: str | None, temperature: float | None) -> list[str]:
    """OpenAI fields this API accepts for compatibility but has no use for (parakeet takes no prompt)."""
    return [name for name, value in (("prompt", prompt), ("temperature", temperature)) if value is not None]


def _response_headers(
    response: orchestrator_pb2.OrchestrateResponse, requested_model: str, ignored: list[str]
) -> dict[str, str]:
    """What served the request, the model it named, what it sent in vain, the orchestrator's warnings."""
    headers = {MODEL_HEADER: _header_value(response.model)}
    if requested_model:
        headers[REQUESTED_MODEL_HEADER] = _header_value(requested_model)
    if ignored:
        headers[IGNORED_HEADER] = ", ".join(ignored)
    if response.warnings:
        headers[WARNINGS_HEADER] = _header_value("; ".join(response.warnings), limit=1024)
    return headers


router = APIRouter()


@router.post(TRANSCRIPTIONS_PATH, response_model=None)
async def create_transcription(
    request: Request,
    authorization: Annotated[str, Depends(authorise)],
    file: Annotated[UploadFile, File(description="the audio file (any format PyAV decodes)")],
    model: Annotated[str, Form(description="accepted with any value; echoed back")] = "",
    language: Annotated[str, Form()] = "",
    prompt: Annotated[str | None, Form(description="accepted and ignored")] = None,
    response_format: Annotated[
        str, Form(description=", ".join(formats.names(formats.Rpc.ORCHESTRATE)))
    ] = "json",
    granularities: Annotated[list[str] | None, Form(alias="timestamp_granularities[]")] = None,
    granularities_plain: Annotated[list[str] | None, Form(alias="timestamp_granularities")] = None,
    temperature: Annotated[float | None, Form(description="accepted and ignored")] = None,
    diarize: Annotated[bool, Form(description="attribute every word to a speaker")] = False,
    num_speakers: Annotated[int | None, Form()] = None,
    min_speakers: Annotated[int | None, Form()] = None,
    max_speakers: Annotated[int | None, Form()] = None,
    timestamps: Annotated[
        bool | None, Form(description="false: no segments (default: as granularities say)")
    ] = None,
    speakers_optional: Annotated[
        bool, Form(description="answer without speakers (and say why) when diarization fails")
    ] = False,
    stream: Annotated[bool, Form(description="true: server-sent events as the transcript is made")] = False,
    hotwords: Annotated[
        list[str] | None, Form(alias="hotwords[]", description="PHRASE[:BOOST] to favour (repeat)")
    ] = None,
    hotwords_plain: Annotated[list[str] | None, Form(alias="hotwords")] = None,
    multichannel: Annotated[
        bool, Form(description="transcribe each channel on its own: speakers CHANNEL_0, CHANNEL_1, ...")
    ] = False,
    known_speaker_names: Annotated[
        list[str] | None, Form(alias=known_speakers.NAMES, description="names of known speakers (repeat)")
    ] = None,
    known_speaker_references: Annotated[
        list[str] | None,
        Form(alias=known_speakers.REFERENCES, description="each name's voice as a data URL, in order"),
    ] = None,
    known_speaker_voiceprints: Annotated[
        list[str] | None,
        Form(alias=known_speakers.VOICEPRINTS, description="voiceprint files' JSON (parakeet enroll)"),
    ] = None,
    speaker_match_threshold: Annotated[
        float | None, Form(description="minimum similarity to name a known speaker (default: the engine's)")
    ] = None,
) -> Response:
    """OpenAI's "create transcription", with speakers when `diarize` is true."""
    settings = _settings(request)
    if file.size is not None and file.size > settings.max_upload_bytes:
        raise UploadTooLarge
    metadata = [(REQUEST_ID_KEY, str(request.state.request_id))]
    if authorization:
        metadata.append(("authorization", authorization))
    phrases = [*(hotwords or ()), *(hotwords_plain or ())]
    known = known_speakers.known_speakers(
        known_speaker_names or (), known_speaker_references or (), known_speaker_voiceprints or ()
    )
    diarized_json = openai_shapes.is_diarized_json(response_format)
    known_speakers.require_diarization(known, diarize or diarized_json)
    if stream:
        if multichannel:
            raise GatewayError.for_reason(
                "INVALID_FIELD",
                "multichannel is not available with stream=true (a live stream is one mixed channel); "
                "leave stream out to use it",
                param="multichannel",
            )
        streamed = sse.stream_form(
            await file.read(),
            response_format,
            language=language,
            diarize=diarize,
            num_speakers=num_speakers,
            min_speakers=min_speakers,
            max_speakers=max_speakers,
            speakers_optional=speakers_optional,
            hotwords=tuple(phrases),
            known_speakers=tuple(known),
            speaker_match_threshold=speaker_match_threshold,
        )
        return await sse.respond(_orchestrator(request), streamed, metadata)
    rendered_as = openai_shapes.parse_response_format(response_format, diarize or multichannel)
    if diarized_json and timestamps is False:
        raise GatewayError.for_reason(
            "INVALID_FIELD",
            "diarized_json is made of timed segments: drop timestamps=false",
            param="timestamps",
        )
    chosen = openai_shapes.parse_granularities([*(granularities or ()), *(granularities_plain or ())])
    openai_shapes.check_timestamps(timestamps, chosen)
    form = openai_shapes.TranscriptionForm(
        audio=await file.read(),
        response_format=rendered_as,
        timestamp_granularities=chosen,
        language=language,
        diarize=diarize or diarized_json,
        num_speakers=num_speakers,
        min_speakers=min_speakers,
        max_speakers=max_speakers,
        timestamps=timestamps,
        speakers_optional=speakers_optional,
        hotwords=tuple(phrases),
        multichannel=multichannel,
        known_speakers=tuple(known),
        speaker_match_threshold=speaker_match_threshold,
        diarized_json=diarized_json,
    )
    ignored = _ignored(prompt, temperature)
    if ignored:
        log.info("ignoring %s: accepted for OpenAI compatibility, unused by parakeet", ", ".join(ignored))
    response = await _orchestrator(request).orchestrate(openai_shapes.orchestrate_request(form), metadata)
    headers = _response_headers(response, model, ignored)
    if form.response_format.document:
        return PlainTextResponse(response.document, headers=headers)
    if form.diarized_json:
        body = openai_shapes.transcription_diarized_json(response)
    elif form.response_format.value == audio_pb2.RESPONSE_FORMAT_VERBOSE_JSON:
        body = openai_shapes.transcription_verbose_json(
            response, form.timestamp_granularities, timestamps=form.timestamps is not False
        )
    else:
        body = openai_shapes.transcription_json(response)
    return JSONResponse(body, headers=headers)


@router.get("/v1/models", dependencies=[Depends(authorise)])
async def list_models(request: Request) -> dict[str, Any]:
    """The one model this gateway serves (any `model` value is accepted for transcriptions)."""
    return openai_shapes.model_list(_settings(request).model_id, request.app.state.created)


@router.get("/v1/models/{model_id:path}", dependencies=[Depends(authorise)])
async def retrieve_model(request: Request, model_id: str) -> dict[str, Any]:
    served = _settings(request).model_id
    if model_id != served:
        raise GatewayError.for_code(
            grpc.StatusCode.NOT_FOUND,
            f"the model {model_id!r} does not exist; this server serves {served!r}",
            param="model",
        )
    return openai_shapes.model_object(served, request.app.state.created)


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """200 while the orchestrator reports SERVING; 503 with its status (or why it is unreachable)."""
    serving, status = await _orchestrator(request).health(_settings(request).health_timeout_s)
    return JSONResponse({"status": status}, status_code=200 if serving else 503)


def create_app(settings: GatewayConfig, client: OrchestratorClient | None = None) -> FastAPI:
    """The gateway app; it opens (and at shutdown closes) its orchestrator channel unless given one."""
    orchestrator = client or OrchestratorClient(
        settings.orchestrator, settings.request_timeout_s, settings.max_upload_bytes
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if client is None:
            await orchestrator.aclose()

    app = FastAPI(
        title="parakeet OpenAI-compatible gateway",
        summary="OpenAI's /v1/audio/transcriptions over the parakeet OrchestratorService",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.orchestrator = orchestrator
    app.state.created = int(time.time())
    app.include_router(router)
    from parakeet_server.gateway.realtime import router as realtime_router  # it imports this module

    app.include_router(realtime_router)
    app.include_router(page.router)
    _install_error_handlers(app, settings)
    max_body_bytes = settings.max_upload_bytes + FORM_OVERHEAD_BYTES
    app.add_middleware(
        UploadLimit,
        max_body_bytes=max_body_bytes,
        drain_bytes=max(DRAIN_FACTOR * max_body_bytes, MIN_DRAIN_BYTES),
    )
    app.add_middleware(RequestIds)
    return app
