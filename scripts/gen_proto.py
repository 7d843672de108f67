"""Regenerate the committed Python stubs from proto/ (``--check`` fails on drift instead)."""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "gen" / "python"


def generate(out: Path) -> None:
    """Run protoc (from grpcio-tools) over every .proto into `out`, adding package __init__ files."""
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for d in [out / "vigil", *(p for p in (out / "vigil").rglob("*") if p.is_dir())]:
        (d / "__init__.py").touch()


def _tree(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def main() -> int:
    """Generate into gen/python, or compare a fresh generation against it with --check."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="fail if the committed stubs differ from proto/")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        if args.check:
            committed = _tree(OUT_DIR) if OUT_DIR.exists() else set()
            new = _tree(fresh)
            drift = sorted(committed ^ new) + sorted(
                f for f in committed & new if not filecmp.cmp(fresh / f, OUT_DIR / f, shallow=False)
            )
            if drift:
                print("generated protobuf code is stale; run `make proto`:", *drift, sep="\n  ", file=sys.stderr)
                return 1
            print("protobuf stubs up to date")
            return 0
        if (OUT_DIR / "vigil").exists():
            shutil.rmtree(OUT_DIR / "vigil")
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copytree(fresh / "vigil", OUT_DIR / "vigil")
    print(f"wrote stubs to {OUT_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
