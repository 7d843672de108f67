"""`vigil adapter`: publish a LoRA adapter to the cloud registry; see, list and roll back what the edge runs."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from services.cli import grpc_flags
from services.cli.settings import CliError
from services.common.grpc_runtime import open_channel
from services.models.adapter_bundle import BadBundle, pack
from vigil.adapter.v1 import adapter_pb2, adapter_pb2_grpc

CHUNK = 1024 * 1024


def register(sub: Any) -> None:
    """Add `vigil adapter publish|list|status|rollback`."""
    adapter = sub.add_parser("adapter", help="LoRA adapters: publish to the cloud, status and rollback on an edge")
    cmds = adapter.add_subparsers(dest="adapter_command", required=True)
    publish = cmds.add_parser("publish", help="bundle an adapter directory and publish it to the registry")
    publish.add_argument("adapter_dir", type=Path, help="a PEFT adapter (e.g. `vigil train structurer`'s OUT/adapter)")
    publish.add_argument("--version", required=True, help="a new version name, e.g. 2026-12-04.1")
    publish.add_argument("--registry", required=True, metavar="HOST:PORT", help="the adapter registry")
    listing = cmds.add_parser("list", help="every adapter the registry holds")
    listing.add_argument("--registry", required=True, metavar="HOST:PORT")
    for name, text in (("status", "which adapter an edge gating runs"), ("rollback", "go back to the previous one")):
        p = cmds.add_parser(name, help=text)
        p.add_argument("--gating", required=True, metavar="HOST:PORT", help="the edge gating service")
    for p in (publish, listing, *(cmds.choices[n] for n in ("status", "rollback"))):
        p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the service")
        p.add_argument("--json", action="store_true", help="print the reply as JSON")
        grpc_flags.add_flags(p)
    adapter.set_defaults(func=cmd_adapter)


def _chunks(version: str, data: bytes) -> Iterator[adapter_pb2.PublishChunk]:
    yield adapter_pb2.PublishChunk(header=adapter_pb2.PublishHeader(version=version))
    for i in range(0, len(data), CHUNK):
        yield adapter_pb2.PublishChunk(data=data[i : i + CHUNK])


def _print(message: Any, as_json: bool, text: str) -> None:
    if as_json:
        print(json.dumps(MessageToDict(message, preserving_proto_field_name=True)))
    else:
        print(text)


def _status_text(s: adapter_pb2.AdapterStatus) -> str:
    previous = (s.previous or "(base model)") if s.HasField("previous") else "(nothing to roll back to)"
    return f"{s.structurer} on {s.base_model}: live {s.live or '(base model)'}, previous {previous}"


def cmd_adapter(args: argparse.Namespace) -> int:
    """Run one `vigil adapter` subcommand; exit 2 on a bad request, 3 when the service is unreachable."""
    address = getattr(args, "registry", None) or args.gating
    try:
        with open_channel(address, grpc_flags.security_from_args(args)) as channel:
            if args.adapter_command == "publish":
                data = pack(args.adapter_dir)
                registry = adapter_pb2_grpc.AdapterRegistryStub(channel)
                m = registry.Publish(_chunks(args.version, data), timeout=args.timeout)
                random = " (RANDOM stand-in: its events mean nothing)" if m.random_init else ""
                _print(
                    m,
                    args.json,
                    f"published {m.version}: {m.size_bytes} bytes, sha256 {m.sha256}, base {m.base_model}{random}",
                )
            elif args.adapter_command == "list":
                listing = adapter_pb2_grpc.AdapterRegistryStub(channel).List(
                    adapter_pb2.ListRequest(), timeout=args.timeout
                )
                lines = [f"{m.version}\t{m.base_model}\t{m.size_bytes}\t{m.sha256[:12]}" for m in listing.manifests]
                _print(listing, args.json, "\n".join(lines) or "no adapters published")
            else:
                control = adapter_pb2_grpc.AdapterControlStub(channel)
                call = control.Status if args.adapter_command == "status" else control.Rollback
                reply = call(
                    adapter_pb2.AdapterStatusRequest()
                    if args.adapter_command == "status"
                    else adapter_pb2.RollbackRequest(),
                    timeout=args.timeout,
                )
                _print(reply, args.json, _status_text(reply))
    except (BadBundle, CliError) as exc:
        print(f"vigil adapter: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        print(f"vigil adapter: {address}: {details} ({code.name if code else 'error'})", file=sys.stderr)
        if code == grpc.StatusCode.UNIMPLEMENTED:
            print("  (that gating runs without gating.adapters: it takes no adapter updates)", file=sys.stderr)
        return 3 if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) else 2
    return 0
