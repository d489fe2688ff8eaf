"""Helpers the test suites, the load script and the benchmarks share, each defined once here.

Fixtures stay in conftest.py files and call these; modules import helpers from here, never from a
conftest (pytest owns those modules, and bench/ must run without pytest's plugins)."""
