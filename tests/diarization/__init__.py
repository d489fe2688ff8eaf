"""Diarization service: engine, servicer, gRPC server and RunPod worker, on random-weight models."""
