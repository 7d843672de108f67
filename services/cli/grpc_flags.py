"""The flags every `vigil` command that calls a gRPC service shares: TLS, a client certificate, a token."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from services.cli.settings import CliError
from services.common.auth import CredentialsError
from services.common.config import GrpcClientSecurity, TlsConfig
from services.common.grpc_runtime import ClientSecurity


def add_flags(parser: Any) -> None:
    """--tls, --ca, --cert/--key, --token-file, --server-name (the charts serve TLS and ask for tokens)."""
    group = parser.add_argument_group("TLS and credentials (a service installed by the Helm charts needs them)")
    group.add_argument("--tls", action="store_true", help="speak TLS (implied by --ca, --cert or --token-file)")
    group.add_argument("--ca", type=Path, metavar="PEM", help="the CA of the service's certificate")
    group.add_argument("--cert", type=Path, metavar="PEM", help="a client certificate, for mutual TLS")
    group.add_argument("--key", type=Path, metavar="PEM", help="the client certificate's key")
    group.add_argument("--token-file", type=Path, metavar="FILE", help="a file holding this client's bearer token")
    group.add_argument("--server-name", default="", help="the name in the service's certificate, if not the host")


def security_from_args(args: argparse.Namespace) -> ClientSecurity:
    """The client security the flags ask for; CliError (exit 2) with the reason when a file is wrong."""
    tls = args.tls or any(x is not None for x in (args.ca, args.cert, args.token_file))
    try:
        cfg = GrpcClientSecurity(
            tls=TlsConfig(cert=args.cert, key=args.key, ca=args.ca) if tls else None,
            server_name=args.server_name,
            token_file=args.token_file,
        )
        return ClientSecurity.load(cfg, "--ca/--cert/--key/--token-file")
    except (ValueError, CredentialsError) as exc:
        raise CliError(f"credentials: {exc}") from exc
