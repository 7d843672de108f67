"""The `vigil` command's parser: one short module per command, each adding its own subcommand."""

from __future__ import annotations

import argparse

from services.cli import adapter, alerts, ask, console, index, run, tls, train
from services.common.logging import configure_logging


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    ap = argparse.ArgumentParser(prog="vigil", description="Vigil: edge-cloud video understanding")
    ap.add_argument("--log-level", default="WARNING")
    sub = ap.add_subparsers(dest="command", required=True)
    for command in (run, ask, alerts, console, index, train, adapter, tls):
        command.register(sub)
    bench = sub.add_parser("bench", help="benchmarks; `vigil bench uplink --help` lists the options", add_help=False)
    bench.add_argument("what", choices=["uplink"])
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `vigil` console script."""
    ap = build_parser()
    args, rest = ap.parse_known_args(argv)
    if args.command == "bench":
        # The uplink bench has its own parser (services/uplink/sim/harness.py); it gets the rest of the line.
        from services.uplink.sim.harness import bench_uplink_main

        return bench_uplink_main(rest)
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    configure_logging(args.log_level)
    return int(args.func(args))
