"""Accuracy evaluation: a synthesized speech corpus with exact references, for ASR and diarization."""
