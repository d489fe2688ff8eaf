"""Generated gRPC stubs for parakeet.v1 (by `make proto`; do not edit)."""
