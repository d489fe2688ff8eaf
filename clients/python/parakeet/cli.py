"""`parakeet`: the command-line client.

parakeet health --server HOST:PORT     ask a server which services are SERVING
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICES = (
    "parakeet.v1.TranscriptionService",
    "parakeet.v1.DiarizationService",
    "parakeet.v1.OrchestratorService",
)


def health(server: str, timeout_s: float) -> int:
    """Print each parakeet service's health on `server`; exit 0 only if one is SERVING."""
    serving = 0
    with grpc.insecure_channel(server) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in SERVICES:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s).status
                state = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.NOT_FOUND:
                    continue
                state = f"{error.code().name}: {error.details()}"
                status = None
            serving += status == health_pb2.HealthCheckResponse.SERVING
            print(f"{service}: {state}")
    return 0 if serving else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parakeet", description="Client for the parakeet-grpc services.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser("health", help="show which services a server is SERVING")
    check.add_argument("--server", default="127.0.0.1:50053", help="HOST:PORT (default: %(default)s)")
    check.add_argument("--timeout", type=float, default=5.0, help="seconds (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return health(args.server, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
