"""Benchmarks: scripts that print ratios measured side by side (not timed tests)."""
