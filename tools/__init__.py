"""Developer tooling (code generation); not imported by any running service."""
