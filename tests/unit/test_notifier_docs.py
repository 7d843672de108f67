"""docs/notifier.md's receiver-side verification snippet works against the notifier's own signing."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from services.notifier.delivery import alert_payload, encode_body, request_headers
from vigil.alert.v1 import alert_pb2

DOC = Path(__file__).resolve().parents[2] / "docs" / "notifier.md"
SECRET = b"documented-secret-0123456789"


def _snippet() -> Any:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    (code,) = [b for b in blocks if "def verify_vigil_request" in b]
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace["verify_vigil_request"]


def test_documented_receiver_accepts_a_signed_request_and_refuses_tampering() -> None:
    verify = _snippet()
    alert = alert_pb2.Alert(event_id="e-doc", camera_id="lobby", event_json='{"event_type": "fall"}')
    body = encode_body(alert_payload(alert))
    now = int(time.time())
    headers = request_headers(SECRET, "e-doc", body, now, attempt=1)
    assert verify(SECRET, headers, body)
    assert not verify(SECRET, headers, body.replace(b"lobby", b"lobbz"))
    assert not verify(b"another-secret-0123456789", headers, body)
    stale = request_headers(SECRET, "e-doc", body, now - 3600, attempt=1)
    assert not verify(SECRET, stale, body)
