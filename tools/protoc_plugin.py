"""A protoc plugin (for `buf generate`) that runs grpcio-tools' built-in generators.

buf knows protoc's `python` and `pyi` generators but not `grpc_python`, which only exists
inside grpcio-tools. This plugin replays buf's request through grpcio-tools' protoc so
`buf generate` and `make proto` produce byte-identical stubs.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc


def respond(request: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    """Generate python, pyi and grpc_python outputs for the files buf asks for."""
    response = plugin_pb2.CodeGeneratorResponse()
    response.supported_features = plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        descriptors = root / "descriptors.binpb"
        out = root / "out"
        out.mkdir()
        descriptor_set = descriptor_pb2.FileDescriptorSet(file=request.proto_file)
        for file in descriptor_set.file:
            _drop_default_json_names(file.message_type)
        descriptors.write_bytes(descriptor_set.SerializeToString())
        args = [
            "grpc_tools.protoc",
            f"--descriptor_set_in={descriptors}",
            f"--proto_path={resources.files('grpc_tools') / '_proto'}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *request.file_to_generate,
        ]
        if protoc.main(args) != 0:
            response.error = "grpcio-tools protoc failed on " + ", ".join(request.file_to_generate)
            return response
        for path in sorted(out.rglob("*")):
            if path.is_file():
                response.file.add(name=str(path.relative_to(out)), content=path.read_text())
    return response


def _drop_default_json_names(messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
    """buf fills in json_name; protoc leaves it unset, and the embedded descriptor must match."""
    for message in messages:
        for field in message.field:
            field.ClearField("json_name")
        _drop_default_json_names(message.nested_type)


def main() -> None:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    sys.stdout.buffer.write(respond(request).SerializeToString())


if __name__ == "__main__":
    main()
