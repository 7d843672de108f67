"""`vigil ask`: a question about the past, answered from the memory here or by a reasoning service."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from services.cli import grpc_flags
from services.cli.output import print_answer
from services.cli.settings import CliError, load, memory_overrides
from services.common.grpc_runtime import open_channel
from services.common.memory_api import MemoryUnavailable, Mode, RetrieveInvalid, RetrieveNotFound, raise_for_status
from services.memory.volume import Holder, MemoryInUse, read_holder
from services.models.answerers.base import AnswerError, AnswerUnavailable
from services.reasoning.config import ReasoningSettings
from vigil.memory.v1 import memory_pb2
from vigil.reasoning.v1 import reasoning_pb2, reasoning_pb2_grpc


def register(sub: Any) -> None:
    """Add `vigil ask`."""
    ask = sub.add_parser("ask", help="answer a question about the past from the memory (Venus)")
    ask.add_argument("question", type=parse_question)
    ask.add_argument("--camera", help="only this camera's memory")
    ask.add_argument("--since", type=parse_time, help="seconds on the camera's time axis, or an ISO date-time")
    ask.add_argument("--until", type=parse_time, help="seconds on the camera's time axis, or an ISO date-time")
    ask.add_argument(
        "--mode", choices=[m.value for m in Mode], default=Mode.AKR.value, help="keyframe selection (default akr)"
    )
    ask.add_argument(
        "--max-frames", type=bounded_int(2**32 - 1), default=0, help="upper bound on keyframes (0 = memory default)"
    )
    ask.add_argument(
        "--seed", type=bounded_int(2**64 - 1), default=0, help="sampler seed (0 = random; the answer reports it)"
    )
    ask.add_argument("--json", action="store_true", help="print the whole AskResponse as JSON")
    ask.add_argument("--save", type=Path, metavar="DIR", help="save the chosen keyframes as JPEGs in DIR")
    ask.add_argument("--reasoning", metavar="HOST:PORT", help="ask a reasoning service over gRPC instead")
    ask.add_argument("--memory", type=Path, help="memory directory for the embedded mode (default var/memory)")
    ask.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for --reasoning")
    grpc_flags.add_flags(ask)
    ask.set_defaults(func=cmd_ask)


def cmd_ask(args: argparse.Namespace) -> int:
    """`vigil ask`: answer a question about the past from the memory (embedded) or a reasoning service."""
    time_range = memory_pb2.TimeRange()
    if args.since is not None:
        time_range.since_s = args.since
    if args.until is not None:
        time_range.until_s = args.until
    request = reasoning_pb2.AskRequest(
        question=args.question,
        camera_id=args.camera or "",
        range=time_range,
        mode=Mode(args.mode).proto,
        max_frames=args.max_frames,
        seed=args.seed,
        include_images=args.save is not None,
    )
    try:
        response = _ask_remote(args, request) if args.reasoning else _ask_embedded(args, request)
    except (RetrieveInvalid, RetrieveNotFound) as exc:
        print(f"vigil ask: {exc}", file=sys.stderr)
        return 2
    except (MemoryUnavailable, AnswerUnavailable) as exc:
        print(f"vigil ask: {exc}", file=sys.stderr)
        return 3
    except CliError as exc:
        print(f"vigil ask: {exc}", file=sys.stderr)
        return exc.code
    except AnswerError as exc:
        print(f"vigil ask: the answerer failed: {exc}", file=sys.stderr)
        return 1
    if response is None:
        return 3
    saved = _save_keyframes(response, args.save) if args.save is not None else []
    if args.json:
        record = MessageToDict(response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        record["saved"] = [str(p) for p in saved]
        print(json.dumps(record))
        return 0
    print_answer(response, saved)
    return 0


def _ask_embedded(args: argparse.Namespace, request: reasoning_pb2.AskRequest) -> reasoning_pb2.AskResponse:
    """The memory on this machine, opened read-side, and the configured answerer (reasoning's own bootstrap)."""
    from services.memory.bootstrap import Memory
    from services.memory.config import MemorySettings
    from services.memory.local import LocalMemory
    from services.memory.store import StoreError
    from services.reasoning.bootstrap import build

    cfg = load(MemorySettings, memory=memory_overrides(args.memory)).memory
    if not (Path(cfg.frames.path) / "clusters").exists():
        raise MemoryUnavailable(
            f"no memory at {cfg.frames.path.parent}: build one with `vigil run` first (or pass --memory DIR)"
        )
    reasoning = load(ReasoningSettings)
    # A memory another process is writing is never opened here (that broke the writer's files): its holder
    # answers through its own Retrieve, whose address it wrote into the memory's lock file.
    holder = read_holder(cfg.frames.path)
    if holder is not None:
        return _ask_holder(holder, MemoryInUse(cfg.frames.path, holder), reasoning, request, args)
    try:
        memory = Memory(cfg)
    except MemoryInUse as exc:
        return _ask_holder(exc.holder, exc, reasoning, request, args)
    except StoreError as exc:
        raise MemoryUnavailable(f"cannot open the memory: {exc}") from exc
    try:
        stage = build(reasoning, memory=LocalMemory(memory.retriever))
        return stage.reasoner.ask(request)
    finally:
        memory.close()


def _ask_holder(
    holder: Holder | None,
    in_use: MemoryInUse,
    reasoning: ReasoningSettings,
    request: reasoning_pb2.AskRequest,
    args: argparse.Namespace,
) -> reasoning_pb2.AskResponse:
    """Ask the process that holds the memory, through the Retrieve it advertises; MemoryUnavailable if none.

    A holder serving TLS is reached with --ca/--cert/--key/--token-file, else with the reasoning settings'
    memory_security (VIGIL_REASONING__MEMORY_SECURITY).
    """
    from services.common.grpc_runtime import client_security
    from services.common.runtime import StageError
    from services.reasoning.bootstrap import build
    from services.reasoning.reasoner import GrpcMemory

    if holder is None or not holder.retrieve_address:
        raise MemoryUnavailable(str(in_use))
    security = grpc_flags.security_from_args(args)
    if security.credentials is None:
        try:
            security = client_security(reasoning.reasoning.memory_security, "reasoning.memory_security")
        except StageError as exc:
            raise CliError(str(exc)) from exc
    source = GrpcMemory(holder.retrieve_address, args.timeout, security)
    try:
        return build(reasoning, memory=source).reasoner.ask(request)
    finally:
        source.close()


def _ask_remote(args: argparse.Namespace, request: reasoning_pb2.AskRequest) -> reasoning_pb2.AskResponse:
    security = grpc_flags.security_from_args(args)
    with open_channel(args.reasoning, security, [("grpc.max_receive_message_length", 64 * 1024 * 1024)]) as channel:
        try:
            return reasoning_pb2_grpc.ReasoningServiceStub(channel).Ask(request, timeout=args.timeout)
        except grpc.RpcError as exc:
            raise_for_status(exc, f"reasoning service at {args.reasoning}")


def _save_keyframes(response: Any, folder: Path) -> list[Path]:
    """Write the keyframes as JPEGs named camera_time.jpg; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in response.keyframes:
        if not k.jpeg:
            continue
        path = folder / f"{k.camera_id}_{k.time_s:012.3f}.jpg"
        path.write_bytes(k.jpeg)
        out.append(path)
    return out


def parse_question(text: str) -> str:
    """The question as argv gave it, refused if it is not text (bytes the locale could not decode)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # argv arrives through surrogateescape: each undecodable byte became a lone surrogate.
        bad = text[exc.start].encode("utf-8", "surrogateescape")
        raise argparse.ArgumentTypeError(
            f"the question is not valid UTF-8 (byte 0x{bad.hex()} at character {exc.start}); "
            "pass it as UTF-8 text, e.g. check the terminal's or the script's encoding"
        ) from None
    return text


def bounded_int(most: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [0, most] (the proto field's range), else a message saying so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not 0 <= value <= most:
            raise argparse.ArgumentTypeError(f"{value} is out of range: give a whole number from 0 to {most}")
        return value

    return parse


def parse_time(text: str) -> float:
    """--since/--until: seconds on the camera's time axis, or an ISO date-time (a live camera's clock)."""
    try:
        return float(text)
    except ValueError:
        pass
    import datetime as dt

    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither seconds (e.g. 12.5) nor an ISO date-time (e.g. 2026-11-22T14:00)"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()
    return when.timestamp()
