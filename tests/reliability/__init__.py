"""Reliability and security tests: bad-input corpus, fuzzing, faults with real processes, load."""
