"""OpenAI-compatible HTTP gateway in front of the OrchestratorService.

A thin translator: OpenAI's `/v1/audio/transcriptions` form becomes an `OrchestrateRequest`,
the `OrchestrateResponse` becomes OpenAI's response shapes, and gRPC status codes become HTTP
errors with OpenAI's error body. Every decision about the audio (decoding, limits, language,
speakers, rendering) stays in the orchestrator, so the HTTP and gRPC paths cannot drift.
"""
