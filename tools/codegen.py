"""Generate the Python stubs for proto/parakeet/v1 with grpcio-tools.

`--check` regenerates into a scratch directory and fails when the committed stubs differ,
so a proto change without `make proto` cannot land.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path("proto")
PACKAGE_DIR = Path("parakeet") / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files(proto_root: Path = PROTO_ROOT) -> list[Path]:
    """The contract files, in a stable order so generated output is reproducible."""
    return sorted((proto_root / PACKAGE_DIR).glob("*.proto"))


def generate(out_dir: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Run protoc (python, pyi and grpc_python outputs) and return the generated files."""
    (out_dir / PACKAGE_DIR).mkdir(parents=True, exist_ok=True)
    well_known = resources.files("grpc_tools") / "_proto"
    files = proto_files(proto_root)
    if not files:
        raise SystemExit(f"no .proto files under {proto_root / PACKAGE_DIR}")
    args = [
        "grpc_tools.protoc",
        f"--proto_path={proto_root}",
        f"--proto_path={well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(path) for path in files),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    return generated_files(out_dir)


def generated_files(out_dir: Path) -> list[Path]:
    """Every generated stub under out_dir, relative to it."""
    return sorted(
        path.relative_to(out_dir)
        for path in (out_dir / PACKAGE_DIR).iterdir()
        if path.name.endswith(GENERATED_SUFFIXES)
    )


def stale_files(out_dir: Path, proto_root: Path = PROTO_ROOT) -> list[str]:
    """Paths whose committed content differs from a fresh generation (missing or extra included)."""
    with tempfile.TemporaryDirectory() as scratch:
        fresh_dir = Path(scratch)
        fresh = set(generate(fresh_dir, proto_root))
        committed = set(generated_files(out_dir)) if (out_dir / PACKAGE_DIR).exists() else set()
        stale = {str(path) for path in fresh ^ committed}
        stale.update(
            str(path)
            for path in fresh & committed
            if not filecmp.cmp(fresh_dir / path, out_dir / path, shallow=False)
        )
    return sorted(stale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="package root that holds parakeet/v1")
    parser.add_argument("--check", action="store_true", help="fail if the stubs in --out are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.out)
        if stale:
            print("generated stubs are stale; run `make proto`:", *stale, sep="\n  ", file=sys.stderr)
            return 1
        print(f"generated stubs in {args.out / PACKAGE_DIR} are up to date")
        return 0
    for path in generate(args.out):
        print(f"generated {args.out / path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
