"""`vigil tls`: issue a development CA, server and client certificates, bearer tokens and alert signing keys.

What the Helm charts read from Secrets (README, "Deploy on Kubernetes"). A cluster with cert-manager can
issue the certificates instead; tokens and signing keys are random strings either way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from services.common.pki import Issued, issue_ca, issue_cert, new_signing_key, new_token


def register(sub: Any) -> None:
    """Add `vigil tls ca|cert|token|signing-key`."""
    tls = sub.add_parser("tls", help="issue certificates, tokens and signing keys for a deployment")
    cmds = tls.add_subparsers(dest="tls_command", required=True)
    ca = cmds.add_parser("ca", help="a new CA: DIR/ca.crt and DIR/ca.key (keep ca.key offline)")
    ca.add_argument("--out", type=Path, required=True, metavar="DIR")
    ca.add_argument("--name", default="Vigil CA")
    ca.add_argument("--days", type=int, default=3650)
    cert = cmds.add_parser(
        "cert",
        help="a certificate signed by the CA: DIR/tls.crt, DIR/tls.key and DIR/ca.crt (a kubernetes.io/tls Secret)",
    )
    cert.add_argument("name", help="the common name: the identity a server sees with mutual TLS (e.g. reasoning)")
    cert.add_argument("--ca", type=Path, required=True, metavar="DIR", help="the folder `vigil tls ca` wrote")
    cert.add_argument("--out", type=Path, required=True, metavar="DIR")
    cert.add_argument(
        "--dns", action="append", default=[], metavar="NAME", help="a DNS name or IP the server answers on (repeat)"
    )
    cert.add_argument("--client-only", action="store_true", help="a client certificate only (no serverAuth)")
    cert.add_argument("--days", type=int, default=365)
    token = cmds.add_parser("token", help="a bearer token for IDENTITY: appends 'IDENTITY TOKEN' to the tokens file")
    token.add_argument("identity")
    token.add_argument("--tokens-file", type=Path, required=True, help="the server side's tokens file (created if new)")
    token.add_argument("--out", type=Path, required=True, metavar="FILE", help="the client's token file")
    key = cmds.add_parser("signing-key", help="an alert signing key: appends 'KEY_ID SECRET' to the keys file")
    key.add_argument("key_id")
    key.add_argument("--keys-file", type=Path, required=True)
    tls.set_defaults(func=cmd_tls)


def _write_secret(path: Path, text: str, *, append: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.touch(mode=0o600)
    with path.open("a" if append else "w") as f:
        f.write(text)


def cmd_tls(args: argparse.Namespace) -> int:
    """Run one `vigil tls` subcommand; exit 2 when an input is missing or a file would be overwritten."""
    try:
        if args.tls_command == "ca":
            if (args.out / "ca.key").exists():
                raise ValueError(
                    f"{args.out / 'ca.key'} exists: refusing to replace a CA (its certificates would break)"
                )
            cert, key = issue_ca(args.name, args.days).write(args.out, "ca.crt", "ca.key")
            print(f"CA {args.name!r}: {cert} (distribute), {key} (keep secret)")
        elif args.tls_command == "cert":
            ca = Issued((args.ca / "ca.crt").read_bytes(), (args.ca / "ca.key").read_bytes())
            issued = issue_cert(ca, args.name, dns=args.dns, server=not args.client_only, days=args.days)
            cert, key = issued.write(args.out)
            (args.out / "ca.crt").write_bytes(ca.cert_pem)
            print(f"{args.name}: {cert}, {key}, {args.out / 'ca.crt'}")
        elif args.tls_command == "token":
            if args.out.exists():
                raise ValueError(f"{args.out} exists: remove it first to issue a new token")
            value = new_token()
            _write_secret(args.tokens_file, f"{args.identity} {value}\n", append=True)
            _write_secret(args.out, value + "\n")
            print(f"token for {args.identity!r}: {args.out} (client), added to {args.tokens_file} (server)")
        else:
            _write_secret(args.keys_file, f"{args.key_id} {new_signing_key()}\n", append=True)
            print(f"signing key {args.key_id!r} added to {args.keys_file} (the same file on the edge and in the cloud)")
    except (OSError, ValueError) as exc:
        print(f"vigil tls: {exc}", file=sys.stderr)
        return 2
    return 0
