"""The parakeet-grpc services: transcription, diarization and the orchestrator that joins them."""
