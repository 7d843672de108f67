"""make bench-grpc-security: what TLS, a token and mutual TLS cost per gRPC call, against plaintext.

The server is the adapter registry (services/adapters), built by its bootstrap on 127.0.0.1:0 once per
mode with certificates and tokens made at run time (services/common/pki.py). Per mode: `--calls` List
calls on one warm channel (the steady state: the TLS session is set up once), then `--connects` calls
each on a new channel (a client that connects per call pays the handshake every time). Output: one
JSON line per mode (p50/p95 in ms), then a markdown table. Loopback on this machine: no network latency.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from services.adapters.bootstrap import build
from services.adapters.config import AdaptersConfig, AdaptersSettings
from services.common.bus.inprocess import InProcessBus
from services.common.config import GrpcClientSecurity, GrpcServerSecurity, TlsConfig
from services.common.grpc_runtime import ClientSecurity, open_channel
from services.common.pki import issue_ca, issue_cert, new_token
from vigil.adapter.v1 import adapter_pb2, adapter_pb2_grpc


def _modes(root: Path) -> dict[str, tuple[GrpcServerSecurity, GrpcClientSecurity | None]]:
    ca = issue_ca()
    ca.write(root, "ca.crt", "ca.key")
    server_cert, server_key = issue_cert(ca, "registry", dns=("localhost",)).write(root / "server")
    client_cert, client_key = issue_cert(ca, "operator").write(root / "client")
    token = new_token()
    (root / "tokens").write_text(f"operator {token}\n")
    (root / "token").write_text(token + "\n")
    server_tls = TlsConfig(cert=server_cert, key=server_key, ca=root / "ca.crt")
    trust = TlsConfig(ca=root / "ca.crt")
    return {
        "plaintext": (GrpcServerSecurity(), None),
        "tls": (GrpcServerSecurity(tls=server_tls), GrpcClientSecurity(tls=trust)),
        "tls+token": (
            GrpcServerSecurity(tls=server_tls, tokens_file=root / "tokens", allow={"*": ["operator"]}),
            GrpcClientSecurity(tls=trust, token_file=root / "token"),
        ),
        "mtls": (
            GrpcServerSecurity(tls=server_tls, require_client_cert=True, allow={"*": ["operator"]}),
            GrpcClientSecurity(tls=TlsConfig(cert=client_cert, key=client_key, ca=root / "ca.crt")),
        ),
    }


def _ms(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(samples, 50)), 3),
        "p95_ms": round(float(np.percentile(samples, 95)), 3),
    }


def main(argv: list[str] | None = None) -> int:
    """Run every mode and print JSON lines and a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--connects", type=int, default=30)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for mode, (server_security, client) in _modes(root).items():
            settings = AdaptersSettings(
                adapters=AdaptersConfig(dir=root / f"store-{mode}"),
                grpc_address="127.0.0.1:0",
                grpc_security=server_security,
            )
            stage = build(settings, InProcessBus())
            stop = threading.Event()
            stage.start(stop)
            assert stage.endpoint is not None
            address = f"localhost:{stage.endpoint.port}"
            security = ClientSecurity.load(client, mode)
            request = adapter_pb2.ListRequest()
            warm: list[float] = []
            cold: list[float] = []
            try:
                with open_channel(address, security) as ch:
                    stub = adapter_pb2_grpc.AdapterRegistryStub(ch)
                    stub.List(request, timeout=10)
                    for _ in range(args.calls):
                        t = time.perf_counter()
                        stub.List(request, timeout=10)
                        warm.append((time.perf_counter() - t) * 1e3)
                for _ in range(args.connects):
                    t = time.perf_counter()
                    with open_channel(address, security) as ch:
                        adapter_pb2_grpc.AdapterRegistryStub(ch).List(request, timeout=10)
                    cold.append((time.perf_counter() - t) * 1e3)
            finally:
                stop.set()
                stage.close(grace_s=0.2)
            row = {
                "mode": mode,
                "warm": _ms(warm),
                "new_channel": _ms(cold),
                "calls": args.calls,
                "connects": args.connects,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| mode | warm channel p50 / p95 (ms) | new channel per call p50 / p95 (ms) |\n|---|---|---|")
    for r in rows:
        w, c = r["warm"], r["new_channel"]
        print(f"| {r['mode']} | {w['p50_ms']} / {w['p95_ms']} | {c['p50_ms']} / {c['p95_ms']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
