"""Generate helm/<chart>/values.schema.json from the services' pydantic configs (``--check`` fails on drift).

Each chart's schema has two sources, each written once:

- every `settings` block (and the shared detector, embedder, structurer and answerer unions) comes
  from the service's config model: ``model_json_schema()`` gives the fields, types, enums and
  bounds, so a field added, removed or re-bounded in the code changes the chart's schema on the
  next `make values-schema` and fails `make values-schema-check` until then;
- the chart's own fields (image, resources, replicas, ports, persistence, triton, kafka, ...) and
  what the chart asks beyond the service (a non-empty consumer group, a Triton url with a port,
  descriptions) are written below, in `edge()` and `cloud()`.

Discriminated unions are written as one object with every member's fields and an ``if type ==
X then only X's fields`` branch per member, not as pydantic's ``oneOf``: Helm then reports the
field and the reason (``gating.settings.structurer: checkpoint is required``) instead of
``Must validate one and only one schema``.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from services.adapters.config import AdaptersConfig
from services.common.config import BusConfig, TopicsConfig
from services.console.config import ConsoleConfig
from services.gating.config import AdapterUpdatesConfig, GatingConfig
from services.indexing.config import ContentSplitConfig, IndexingConfig, SceneConfig
from services.ingest.config import IngestConfig
from services.memory.config import FrameStoreConfig, MemoryConfig, RetrievalConfig
from services.memory.store import QdrantServerStoreConfig
from services.models.answerers.config import AnswererConfig
from services.models.detectors.base import DetectorConfig
from services.models.embedders.base import EmbedderConfig
from services.models.structurers.config import StructurerConfig
from services.notifier.config import NotifierConfig
from services.reasoning.config import ReasoningConfig
from services.uplink.config import UplinkConfig

ROOT = Path(__file__).resolve().parents[1]
HELM_DIR = ROOT / "helm"
Schema = dict[str, Any]

# Annotations and pydantic's own formats (path, password) are no JSON Schema validation keywords.
_DROPPED_KEYWORDS = frozenset({"title", "default", "format"})


class SchemaError(RuntimeError):
    """A config model has a field the chart's description does not say how to map."""


# -- from a pydantic model to a values block -------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A values block that is one config model: its fields, less those the chart sets itself.

    `fields` refines single fields: a dict is merged over the generated schema (what the chart asks
    beyond the service, or a description), a Block or Tagged maps a nested model, a Ref points at a
    shared definition.
    """

    model: type[BaseModel]
    description: str | None = None
    exclude: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None
    fields: Mapping[str, Schema | Block | Tagged | Ref] = field(default_factory=dict)


@dataclass(frozen=True)
class Tagged:
    """A discriminated union of config models (an ``Annotated[A | B, Field(discriminator=...)]`` alias)."""

    alias: Any
    description: str
    fields: Mapping[str, Schema] = field(default_factory=dict)


@dataclass(frozen=True)
class Ref:
    """A field whose schema is the chart's shared definition `name`."""

    name: str


def _leaf(prop: Schema, where: str) -> Schema:
    """One scalar, list or map field of pydantic's schema as a draft-7 schema without annotations."""
    if "anyOf" in prop:
        branches = [b for b in prop["anyOf"] if b != {"type": "null"}]
        if len(branches) != 1:
            raise SchemaError(f"{where}: a union of {len(branches)} types; map it in the chart's description")
        out = _leaf(branches[0], where)
        if len(branches) < len(prop["anyOf"]) and out.get("type") in ("string", "number", "integer", "boolean"):
            out["type"] = [out["type"], "null"]
        return out
    if "$ref" in prop or "oneOf" in prop or "allOf" in prop:
        raise SchemaError(f"{where} is a model or a union: map it with a Block, Tagged or Ref")
    out = {k: v for k, v in prop.items() if k not in _DROPPED_KEYWORDS}
    if "prefixItems" in out:
        # A fixed-length tuple: draft 7 has no prefixItems; its items are uniform here.
        items = [_leaf(i, where) for i in out.pop("prefixItems")]
        if any(i != items[0] for i in items):
            raise SchemaError(f"{where}: a tuple of mixed types")
        out["items"] = items[0]
    elif isinstance(out.get("items"), dict):
        out["items"] = _leaf(out["items"], where)
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _leaf(out["additionalProperties"], where)
    return out


def _properties(model: type[BaseModel]) -> Schema:
    schema = model.model_json_schema()
    if schema.get("additionalProperties") is not False:
        raise SchemaError(f"{model.__name__} accepts unknown fields; its values block could not refuse typos")
    return dict(schema["properties"])


def render_block(block: Block, where: str) -> Schema:
    """The object schema of `block`: its model's fields, refined by the chart, unknown keys refused."""
    props = _properties(block.model)
    names = [n for n in props if n not in block.exclude and (block.only is None or n in block.only)]
    unknown = (set(block.fields) | set(block.exclude) | set(block.only or ())) - set(props)
    if unknown:
        raise SchemaError(f"{where}: {sorted(unknown)} are no fields of {block.model.__name__}")
    out: Schema = {}
    for name in names:
        spec = block.fields.get(name, {})
        here = f"{where}.{name}"
        if isinstance(spec, Block):
            out[name] = render_block(spec, here)
        elif isinstance(spec, Tagged):
            out[name] = render_union(spec)
        elif isinstance(spec, Ref):
            out[name] = {"$ref": f"#/definitions/{spec.name}"}
        else:
            out[name] = {**_leaf(props[name], f"{block.model.__name__}.{name}"), **spec}
    node: Schema = {"type": "object", "properties": out, "additionalProperties": False}
    if block.description:
        node["description"] = block.description
    return node


def union_members(alias: Any) -> tuple[str, list[type[BaseModel]]]:
    """(discriminator field, member models) of an ``Annotated[A | B | C, Field(discriminator=...)]``."""
    union, *metadata = typing.get_args(alias)
    (info,) = [m for m in metadata if isinstance(m, FieldInfo)]
    if not isinstance(info.discriminator, str):
        raise SchemaError(f"{alias} is not discriminated by a field")
    return info.discriminator, list(typing.get_args(union))


def render_union(spec: Tagged) -> Schema:
    """One object with every member's fields; per member, `if type == X` allows only X's fields."""
    tag, members = union_members(spec.alias)
    merged: Schema = {}
    branches = []
    for member in members:
        props = _properties(member)
        value = props.pop(tag)["const"]
        for name, prop in props.items():
            leaf = _leaf(prop, f"{member.__name__}.{name}")
            if merged.setdefault(name, leaf) != leaf:
                raise SchemaError(f"{member.__name__}.{name} differs from another member's {name}")
        then: Schema = {"properties": {tag: True, **dict.fromkeys(props, True)}, "additionalProperties": False}
        required = [r for r in member.model_json_schema().get("required", []) if r != tag]
        if required:
            then["required"] = required
        branches.append({"if": {"properties": {tag: {"const": value}}}, "then": then})
    unknown = set(spec.fields) - set(merged)
    if unknown:
        raise SchemaError(f"{sorted(unknown)} are no fields of {[m.__name__ for m in members]}")
    for name, extra in spec.fields.items():
        merged[name] = {**merged[name], **extra}
    values = [b["if"]["properties"][tag]["const"] for b in branches]
    return {
        "type": "object",
        "description": spec.description,
        # The service needs the discriminator to pick the member.
        "required": [tag],
        "properties": {tag: {"enum": values}, **merged},
        "additionalProperties": False,
        "allOf": branches,
    }


# -- what both charts share ---------------------------------------------------------------------

STRING: Schema = {"type": "string"}
NON_EMPTY: Schema = {"type": "string", "minLength": 1}
BOOLEAN: Schema = {"type": "boolean"}
POSITIVE_INT: Schema = {"type": "integer", "minimum": 1}
STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECTS: Schema = {"type": "array", "items": {"type": "object"}}
ABSOLUTE_PATH: Schema = {"type": "string", "pattern": "^/"}
HOST_PORT = r"^[^\s/,]+:[0-9]{1,5}$"
BOOTSTRAP = r"[^,\s]+:[0-9]+(,[^,\s]+:[0-9]+)*"
SERVICE_TYPE: Schema = {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]}
GPUS: Schema = {"type": "integer", "minimum": 0, "description": "nvidia.com/gpu limit; 0 = CPU only"}
ENABLED_IF: Schema = {"properties": {"enabled": {"const": True}}, "required": ["enabled"]}


def ref(name: str) -> Schema:
    """A pointer at the chart's definition `name`."""
    return {"$ref": f"#/definitions/{name}"}


def obj(properties: Schema, required: list[str] | None = None, **extra: Any) -> Schema:
    """A closed object: only `properties`, `required` of them."""
    out: Schema = {"type": "object", "properties": properties, "additionalProperties": False, **extra}
    if required:
        out["required"] = required
    return out


def component(
    own: Schema, required: tuple[str, ...] = (), description: str | None = None, when_enabled: Schema | None = None
) -> Schema:
    """A Deployment's block: every pod's fields plus its `own`; `when_enabled` holds only with enabled: true."""
    pod: Schema = {
        "enabled": BOOLEAN,
        "resources": ref("resources"),
        "nodeSelector": STRING_MAP,
        "tolerations": OBJECTS,
        "affinity": {"type": "object"},
        "topologySpreadConstraints": OBJECTS,
        "podAnnotations": STRING_MAP,
        "priorityClassName": STRING,
        "terminationGracePeriodSeconds": POSITIVE_INT,
        "tmpSizeLimit": ref("quantity"),
        "securityContext": ref("securityContextOverride"),
        "image": ref("imageOverride"),
    }
    extra: Schema = {}
    if description:
        extra["description"] = description
    if when_enabled:
        extra |= {"if": ENABLED_IF, "then": when_enabled}
    return obj({**pod, **own}, ["enabled", "resources", *required], **extra)


IMAGE_FIELDS: Schema = {
    "repository": NON_EMPTY,
    "tag": STRING,
    "digest": {"type": "string", "pattern": "^(sha256:[a-f0-9]{64})?$"},
    "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
}
UID: Schema = {"type": "integer", "minimum": 1}

SHARED_DEFINITIONS: Schema = {
    "resources": obj(
        {"requests": ref("cpuMemory"), "limits": ref("cpuMemory"), "claims": {"type": "array"}},
        ["requests", "limits"],
        description="Requests and limits: every container states both, for cpu and memory.",
    ),
    "cpuMemory": {
        "type": "object",
        "required": ["cpu", "memory"],
        "properties": {
            "cpu": {"type": ["string", "number"], "minLength": 1},
            "memory": NON_EMPTY,
            "ephemeral-storage": STRING,
        },
        "additionalProperties": {"type": ["string", "integer"]},
    },
    "quantity": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"},
    "image": obj(IMAGE_FIELDS, ["repository"]),
    "imageOverride": obj(IMAGE_FIELDS),
    "podSecurityContext": obj(
        {
            "runAsNonRoot": {"const": True},
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "fsGroupChangePolicy": {"enum": ["OnRootMismatch", "Always"]},
            "supplementalGroups": {"type": "array", "items": {"type": "integer"}},
            "seccompProfile": {"type": "object"},
        },
        ["runAsNonRoot"],
        description="Pod securityContext; runAsNonRoot is fixed to true.",
    ),
    "containerSecurityContext": obj(
        {
            "runAsNonRoot": {"const": True},
            "runAsUser": UID,
            "runAsGroup": UID,
            "allowPrivilegeEscalation": {"const": False},
            "privileged": {"const": False},
            "readOnlyRootFilesystem": BOOLEAN,
            "capabilities": obj(
                {
                    "drop": {"type": "array", "contains": {"const": "ALL"}},
                    "add": {"type": "array", "items": {"const": "NET_BIND_SERVICE"}},
                },
                ["drop"],
            ),
            "seccompProfile": {"type": "object"},
        },
        ["runAsNonRoot", "allowPrivilegeEscalation", "capabilities"],
        description="Container securityContext; no root, no privilege escalation, not privileged.",
    ),
    "securityContextOverride": obj(
        {
            "runAsNonRoot": {"const": True},
            "runAsUser": UID,
            "runAsGroup": UID,
            "allowPrivilegeEscalation": {"const": False},
            "privileged": {"const": False},
            "readOnlyRootFilesystem": BOOLEAN,
        },
        description="Merged over containerSecurityContext for one component; cannot weaken the fixed fields.",
    ),
    "probes": obj(
        {"startupFailureThreshold": POSITIVE_INT, "periodSeconds": POSITIVE_INT, "timeoutSeconds": POSITIVE_INT}
    ),
    "busSettings": Block(
        BusConfig,
        "BusConfig fields (services/common/config.py) -> VIGIL_BUS__<FIELD>; kind and bootstrap come from "
        "kafka.bootstrap.",
        # Secrets are never values: a SASL password comes from a file (sasl_password_file, a mounted Secret).
        exclude=("kind", "bootstrap", "sasl_password"),
    ),
    "kafka": obj(
        {
            "bootstrap": {
                "type": "string",
                "minLength": 1,
                "pattern": f"^{BOOTSTRAP}$",
                "description": "host:port[,host:port...]",
            },
            "settings": ref("busSettings"),
            "tls": ref("kafkaTls"),
        },
        ["bootstrap"],
    ),
    "kafkaTls": obj(
        {
            "caSecret": obj({"name": STRING, "key": NON_EMPTY}, description="The CA of the brokers (ssl_cafile)"),
            "certSecret": {
                "type": "string",
                "description": "A kubernetes.io/tls Secret: the client certificate "
                "(ssl_certfile, ssl_keyfile); empty = none",
            },
            "saslPasswordSecret": obj(
                {"name": STRING, "key": NON_EMPTY}, description="The SASL password (sasl_password_file)"
            ),
        },
        description="Kafka credentials from Secrets; security_protocol and the SASL user are in settings.",
    ),
    "secretKeyRef": obj(
        {"name": NON_EMPTY, "key": NON_EMPTY}, ["name", "key"], description="An existing Secret and the key in it."
    ),
    "grpcPort": obj(
        {
            "port": {"type": "integer", "minimum": 1024, "maximum": 65535},
            "allow": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": NON_EMPTY, "minItems": 1},
                "description": "Method (e.g. Retrieve, or '*' for the others) -> identities it admits (a token's "
                "identity, a client certificate's CN; 'anonymous' = anyone, '*' = any authenticated caller). "
                "VIGIL_GRPC_SECURITY__ALLOW.",
            },
        },
        ["port"],
    ),
    "grpcClient": obj(
        {
            "enabled": BOOLEAN,
            "caSecret": obj({"name": STRING, "key": NON_EMPTY}, description="The CA of the server's certificate"),
            "certSecret": {
                "type": "string",
                "description": "A kubernetes.io/tls Secret: this client's certificate "
                "for mutual TLS (its CN is the identity); empty = none",
            },
            "tokenSecret": obj({"name": STRING, "key": NON_EMPTY}, description="This client's bearer token"),
            "serverName": {
                "type": "string",
                "description": "The name in the server's certificate, when the address is not it",
            },
        },
        description="TLS and credentials of a gRPC client (GrpcClientSecurity); disabled = plaintext.",
    ),
    "grpcSecurity": obj(
        {
            "enabled": BOOLEAN,
            "tlsSecret": {
                "type": "string",
                "description": "A kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt) "
                "for this release's gRPC servers; required when enabled",
            },
            "requireClientCert": BOOLEAN,
            "tokensSecret": obj(
                {"name": STRING, "key": NON_EMPTY},
                description="A Secret whose key holds lines 'IDENTITY TOKEN' (vigil tls token); empty name = "
                "client certificates only (requireClientCert)",
            ),
            "healthPort": {
                "type": "integer",
                "minimum": 1024,
                "maximum": 65535,
                "description": "Plaintext grpc.health.v1 only, for the kubelet's gRPC probe",
            },
            "certManager": obj(
                {
                    "enabled": BOOLEAN,
                    "issuerRef": obj({"name": STRING, "kind": {"enum": ["Issuer", "ClusterIssuer"]}}),
                    "dnsNames": {"type": "array", "items": NON_EMPTY},
                    "duration": STRING,
                    "renewBefore": STRING,
                },
                description="A cert-manager Certificate that writes tlsSecret (needs cert-manager in the cluster).",
            ),
        },
        ["enabled"],
        description="TLS and caller authentication on every gRPC server of the release (VIGIL_GRPC_SECURITY__*).",
        **{"if": ENABLED_IF, "then": {"required": ["tlsSecret"], "properties": {"tlsSecret": {"minLength": 1}}}},
    ),
    "signing": obj(
        {
            "enabled": BOOLEAN,
            "keysSecret": obj(
                {"name": STRING, "key": NON_EMPTY},
                description="A Secret whose key holds lines 'KEY_ID SECRET' (vigil tls signing-key)",
            ),
            "keyId": {"type": "string", "description": "The key the edge uplink signs with (edge only)"},
        },
        ["enabled"],
        description="HMAC signatures on alerts: the edge uplink signs, cloud consumers verify (VIGIL_SIGNING__*).",
    ),
}

# What the charts ask of every Triton client's settings beyond TritonClientSettings.
TRITON_CLIENT: dict[str, Schema] = {
    "url": {
        "pattern": HOST_PORT,
        "description": "host:port of Triton's gRPC endpoint; empty/unset = this release's triton (triton.enabled)",
    },
    "model_name": {"minLength": 1},
}


def shared_top(title: str) -> Schema:
    """The top-level fields both charts have."""
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": title,
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "global": {"type": "object"},
            "vigil-lib": {"type": "object", "description": "Added by Helm for the library chart; nothing to set."},
            "nameOverride": {"type": "string", "maxLength": 40},
            "fullnameOverride": {"type": "string", "maxLength": 40},
            "image": ref("image"),
            "imagePullSecrets": {"type": "array", "items": NON_EMPTY},
            "serviceAccount": obj({"create": BOOLEAN, "name": STRING}),
            "podSecurityContext": ref("podSecurityContext"),
            "containerSecurityContext": ref("containerSecurityContext"),
            "topics": ref("topics"),
            "log": obj({"level": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]}, "json": BOOLEAN}),
            "grpcSecurity": ref("grpcSecurity"),
            "signing": ref("signing"),
        },
    }


def metrics(required: bool) -> Schema:
    """Every Vigil process's Prometheus port (non-root, so above 1023)."""
    port = {"type": "integer", "minimum": 1024, "maximum": 65535, "description": "non-root: above 1023"}
    return obj({"port": port, "scrape": BOOLEAN}, ["port"] if required else None)


def topics(exclude: tuple[str, ...] = ()) -> Block:
    """TopicsConfig: every topic name non-empty."""
    names = [n for n in TopicsConfig.model_fields if n not in exclude]
    return Block(TopicsConfig, exclude=exclude, fields={n: {"minLength": 1} for n in names})


def triton(description: str) -> Schema:
    """The optional Triton server: its image, GPUs and the claim with the model repository."""
    own = {
        "replicas": POSITIVE_INT,
        "gpus": GPUS,
        "modelRepository": obj({"existingClaim": STRING, "subPath": STRING}),
        "extraArgs": {"type": "array", "items": {"type": "string", "pattern": "^--"}},
        "shmSize": ref("quantity"),
        "startupFailureThreshold": POSITIVE_INT,
        "service": obj({"type": SERVICE_TYPE}),
    }
    then = {
        "properties": {
            "modelRepository": {"required": ["existingClaim"], "properties": {"existingClaim": {"minLength": 1}}}
        },
        "required": ["modelRepository"],
    }
    return component(own, description=description, when_enabled=then)


# -- the edge chart -----------------------------------------------------------------------------

DETECTOR = Tagged(
    DetectorConfig,
    "DetectorConfig (services/models/detectors/base.py), discriminated by type; triton without a url uses this "
    "release's triton.",
    {
        "model": {
            "description": "a shipped model (fall: YOLOv8s Normal/Fall; accident: Vigil's accident detector; coco: "
            "YOLOv8n COCO-80); weights, when set, wins"
        },
        **TRITON_CLIENT,
    },
)
EMBEDDER = Tagged(
    EmbedderConfig,
    "EmbedderConfig (services/models/embedders/base.py), discriminated by type; indexing and memory both get it; "
    "triton without a url uses this release's triton.",
    {"checkpoint": {"minLength": 1}, **TRITON_CLIENT},
)
STRUCTURER = Tagged(
    StructurerConfig,
    "StructurerConfig (services/gating/config.py), discriminated by type; triton-vlm without a url uses this "
    "release's triton.",
    {"checkpoint": {"minLength": 1}, **TRITON_CLIENT},
)
INGEST = Block(
    IngestConfig,
    "IngestConfig (services/ingest/config.py) -> VIGIL_INGEST__<FIELD>; source and camera_id come from cameras.",
    exclude=("source", "camera_id"),
)
PROFILE_GATING = (
    "traffic: accident detector + COCO context detector; people: the fall detector, no context. Sets detector "
    "model, context_detector and classes left unset"
)
PROFILE_INDEXING = (
    "traffic: COCO detector, class names as words; people: the fall detector as person phrases. Sets detector "
    "and class_phrases left unset"
)


def edge() -> Schema:
    """The edge chart's values: ingest, gating, uplink, indexing, memory and an optional Triton."""
    schema = shared_top("Vigil edge release values")
    schema["required"] = [
        "image",
        "kafka",
        "cloud",
        "topics",
        "metrics",
        "ingest",
        "gating",
        "uplink",
        "podSecurityContext",
        "containerSecurityContext",
        "embedder",
        "indexing",
        "memory",
    ]
    camera = obj(
        {
            "id": {
                "type": "string",
                "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                "maxLength": 30,
                "description": "lower-case letters, digits and '-': it names the Deployment",
            },
            "source": NON_EMPTY,
            "sourceSecret": ref("secretKeyRef"),
            "settings": INGEST,
        },
        ["id"],
        description="One camera: id and exactly one of source (a URL without credentials) or sourceSecret.",
        oneOf=[{"required": ["source"]}, {"required": ["sourceSecret"]}],
    )
    gating = Block(
        GatingConfig,
        "GatingConfig (services/gating/config.py) -> VIGIL_GATING__<FIELD>; adapters comes from gating.adapters.",
        exclude=("adapters",),
        fields={
            "profile": {"description": PROFILE_GATING},
            "detector": Ref("detector"),
            "context_detector": Ref("detector"),
            "structurer": STRUCTURER,
            "tau_g": {"description": "detector gate threshold, in (0, 1]"},
            "tau_high": {
                "description": "confident-detection threshold (DAT 4.2.1): s_t >= tau_high skips the VLM; >= tau_g"
            },
            "target_classes": {"minLength": 1},
            "context_margin": {
                "description": "context objects count as involved within the incident box grown by this fraction"
            },
            "consumer_group": {"minLength": 1},
        },
    )
    adapter_updates = Block(
        AdapterUpdatesConfig,
        "AdapterUpdatesConfig (services/gating/config.py) -> VIGIL_GATING__ADAPTERS__<FIELD>; dir, cloud_bus and "
        "registry come from the chart (the adapters volume, cloud.kafka, gating.adapters.registry).",
        exclude=("dir", "cloud_bus", "registry", "registry_security"),
        fields={"consumer_group": {"description": "empty = vigil-gating-adapters-<pod name>, one group per pod"}},
    )
    uplink = Block(
        UplinkConfig,
        "UplinkConfig (services/uplink/config.py) -> VIGIL_UPLINK__<FIELD>; cloud_bus and state_dir come from "
        "cloud.kafka and persistence.",
        # The emulated link is for tests and benchmarks, never a deployment.
        exclude=("cloud_bus", "state_dir", "emulated_link_trace", "emulated_link_scale"),
        fields={"consumer_group": {"minLength": 1}, "method": {"minLength": 1}},
    )
    indexing = Block(
        IndexingConfig,
        "IndexingConfig (services/indexing/config.py) -> VIGIL_INDEXING__<FIELD>; the embedder comes from the "
        "embedder block.",
        exclude=("embedder",),
        fields={
            "scenes": Block(
                SceneConfig,
                "SceneConfig: eq. 1's weights (hue, saturation, lightness, edges) and threshold.",
                fields={"weights": {"items": {"type": "number", "minimum": 0}}},
            ),
            "content_split": Block(
                ContentSplitConfig,
                "ContentSplitConfig: on a fixed camera a cluster splits when the detector's counts change, not "
                "when pixels move.",
            ),
            "profile": {"description": PROFILE_INDEXING},
            "detector": Ref("detector"),
            "consumer_group": {"minLength": 1},
        },
    )
    memory = Block(
        MemoryConfig,
        "MemoryConfig (services/memory/config.py) -> VIGIL_MEMORY__<FIELD>; store, frames.path and embedder come "
        "from qdrant, the claim and the embedder block.",
        exclude=("store", "embedder"),
        fields={
            "frames": Block(FrameStoreConfig, "FrameStoreConfig; path is the claim's /data/frames.", exclude=("path",)),
            "retrieval": Block(RetrievalConfig, "RetrievalConfig: Venus IV-D temperature, AKR threshold and bounds."),
            "frames_consumer_group": {"minLength": 1},
            "index_consumer_group": {"minLength": 1},
        },
    )
    qdrant = obj(
        {
            "url": {
                "type": "string",
                "pattern": r"^(https?://[^\s/]+(/[^\s]*)?)?$",
                "description": "http(s)://host:port of a Qdrant server; empty = Qdrant Edge in the memory pod",
            },
            "apiKeySecret": ref("secretKeyRef"),
            "settings": Block(
                QdrantServerStoreConfig,
                "QdrantServerStoreConfig (services/memory/store.py) fields for a server.",
                only=("collection", "timeout_s"),
                fields={"collection": {"minLength": 1}},
            ),
        },
        description="Empty url = Qdrant Edge in-process on the claim (/data/qdrant); a url = an external Qdrant "
        "server.",
        dependencies={
            "apiKeySecret": {
                "description": "An API key is for an external server: url is required with apiKeySecret.",
                "required": ["url"],
                "properties": {"url": {"minLength": 1}},
            }
        },
    )
    persistence_fields: Schema = {
        "existingClaim": STRING,
        "storageClass": STRING,
        "size": ref("quantity"),
        "keep": BOOLEAN,
    }
    adapters = obj(
        {
            "enabled": BOOLEAN,
            "registry": {
                "type": "string",
                "pattern": f"^({HOST_PORT[1:-1]})?$",
                "description": "The adapter registry's gRPC address as this site reaches it, host:port; empty = "
                "the address each manifest announces",
            },
            "registryClient": ref("grpcClient"),
            "persistence": obj(
                {
                    "enabled": BOOLEAN,
                    **persistence_fields,
                    # One pod per store: a claim shared by several pods is refused by the templates.
                    "accessMode": {"enum": ["ReadWriteOnce", "ReadWriteOncePod"]},
                },
                description="The adapter store (VIGIL_GATING__ADAPTERS__DIR): a claim (one gating replica, "
                "Recreate) or, disabled, an emptyDir per pod of size.",
            ),
            "settings": adapter_updates,
        },
        ["enabled"],
        description="LoRA adapter updates from the cloud's adapter registry; needs settings.structurer.type "
        "qwen2.5-vl.",
    )
    schema["properties"] |= {
        "kafka": ref("kafka"),
        "metrics": metrics(required=True),
        "triton": triton("Optional NVIDIA Triton server; when enabled it needs modelRepository.existingClaim."),
        "cloud": obj(
            {"kafka": ref("kafka")},
            ["kafka"],
            description="The cloud release's Kafka as reachable from this site: the uplink's VIGIL_UPLINK__CLOUD_BUS.",
        ),
        "ingest": component(
            {"cameras": {"type": "array", "items": camera}, "settings": INGEST, "probes": ref("probes")},
            when_enabled={"properties": {"cameras": {"minItems": 1}}, "required": ["cameras"]},
        ),
        "gating": component(
            {
                "replicas": POSITIVE_INT,
                "settings": gating,
                "grpc": ref("grpcPort"),
                "service": obj({"type": SERVICE_TYPE}),
                "modelVolume": ref("modelVolume"),
                "adapters": adapters,
                "probes": ref("probes"),
            }
        ),
        "uplink": component(
            {
                "settings": uplink,
                "persistence": obj(
                    {
                        "enabled": BOOLEAN,
                        **persistence_fields,
                        "accessMode": {"enum": ["ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany"]},
                    }
                ),
                "probes": ref("probes"),
            }
        ),
        "embedder": obj(
            {"settings": ref("embedder"), "modelVolume": ref("modelVolume")},
            ["settings"],
            description="The one embedder of indexing and memory (VIGIL_INDEXING__EMBEDDER = VIGIL_MEMORY__EMBEDDER).",
        ),
        "indexing": component(
            {
                "replicas": POSITIVE_INT,
                "settings": indexing,
                "modelVolume": ref("modelVolume"),
                "probes": ref("probes"),
            }
        ),
        # One writer on its claim: no replicas field.
        "memory": component(
            {
                "settings": memory,
                "qdrant": qdrant,
                "grpc": ref("grpcPort"),
                "service": obj(
                    {
                        "type": SERVICE_TYPE,
                        "annotations": STRING_MAP,
                        "loadBalancerSourceRanges": {
                            "type": "array",
                            "items": {"type": "string", "pattern": "^[0-9a-fA-F.:]+/[0-9]{1,3}$"},
                            "description": "CIDRs allowed to reach a LoadBalancer (the cloud's egress addresses)",
                        },
                    }
                ),
                "persistence": obj(
                    {**persistence_fields, "accessMode": {"enum": ["ReadWriteOnce", "ReadWriteOncePod"]}},
                    ["size"],
                    description="The claim mounted at /data (frames; the Qdrant Edge shard when in-process). "
                    "Always a claim.",
                ),
                "probes": ref("probes"),
            },
            required=("grpc", "qdrant", "persistence"),
        ),
    }
    schema["definitions"] = {
        **SHARED_DEFINITIONS,
        "topics": topics(),
        "detector": DETECTOR,
        "embedder": EMBEDDER,
        "modelVolume": obj(
            {"existingClaim": STRING, "mountPath": ABSOLUTE_PATH},
            description="An existing claim with weights, mounted read-only at mountPath; settings point at paths "
            "under it.",
        ),
    }
    return schema


# -- the cloud chart ----------------------------------------------------------------------------


def cloud() -> Schema:
    """The cloud chart's values: the alert log, reasoning and an optional Triton."""
    schema = shared_top("Vigil cloud release values")
    schema["required"] = [
        "image",
        "kafka",
        "topics",
        "podSecurityContext",
        "containerSecurityContext",
        "reasoning",
        "alertsLog",
        "adapterRegistry",
        "triton",
        "console",
    ]
    answerer = Tagged(
        AnswererConfig,
        "AnswererConfig (services/reasoning/config.py), discriminated by type; triton-vlm without a url uses this "
        "release's triton.",
        # Paths under reasoning.vlm.checkpointVolume.mountPath, which is absolute.
        {"checkpoint": {"pattern": "^/"}, "lora": {"pattern": "^/"}, **TRITON_CLIENT},
    )
    reasoning = Block(
        ReasoningConfig,
        "ReasoningConfig (services/reasoning/config.py) -> VIGIL_REASONING__<FIELD>; memory_address comes from "
        "memoryAddress.",
        exclude=("memory_address", "memory_security"),
        fields={"vlm": answerer},
    )
    registry = Block(
        AdaptersConfig,
        "AdaptersConfig (services/adapters/config.py) -> VIGIL_ADAPTERS__<FIELD>; dir and public_address come "
        "from persistence and publicAddress.",
        exclude=("dir", "public_address"),
    )
    schema["properties"] |= {
        "kafka": obj(
            {
                "bootstrap": SHARED_DEFINITIONS["kafka"]["properties"]["bootstrap"],
                "settings": ref("busSettings"),
                "tls": ref("kafkaTls"),
                "siteBootstrap": {
                    "type": "string",
                    "pattern": f"^({BOOTSTRAP})?$",
                    "description": "This Kafka as the edge sites reach it across the WAN (empty = bootstrap); NOTES "
                    "print it for the edge release's cloud.kafka.bootstrap.",
                },
            },
            ["bootstrap"],
        ),
        "metrics": metrics(required=False),
        "triton": triton("Optional NVIDIA Triton server; when enabled it needs modelRepository.existingClaim."),
        "alertsLog": component({"group": NON_EMPTY}),
        "reasoning": component(
            {
                "memoryAddress": {
                    "type": "string",
                    "pattern": f"^({HOST_PORT[1:-1]})?$",
                    "description": "The edge memory's gRPC endpoint as this cluster reaches it, host:port; required "
                    "when enabled",
                },
                "replicas": POSITIVE_INT,
                "memoryClient": ref("grpcClient"),
                "settings": reasoning,
                "vlm": obj(
                    {
                        "checkpointVolume": obj(
                            {"existingClaim": STRING, "mountPath": ABSOLUTE_PATH, "subPath": STRING},
                            description="An existing claim with the VLM checkpoint, mounted read-only; "
                            "settings.vlm.checkpoint is a path under mountPath.",
                        ),
                        "gpus": GPUS,
                    }
                ),
                "grpc": ref("grpcPort"),
                "service": obj({"type": SERVICE_TYPE, "annotations": STRING_MAP}),
                "probes": ref("probes"),
            },
            required=("grpc", "vlm"),
            description="The reasoning service (Ask); when enabled it needs memoryAddress, the edge memory's gRPC "
            "endpoint.",
            when_enabled={
                "required": ["memoryAddress"],
                "properties": {"memoryAddress": {"minLength": 1, "pattern": HOST_PORT}},
            },
        ),
    }
    # One writer of its store: no replicas field. publicAddress is checked by the template (`required`),
    # whose message says what the address is for.
    schema["properties"]["adapterRegistry"] = component(
        {
            "publicAddress": {
                "type": "string",
                "pattern": f"^({HOST_PORT[1:-1]})?$",
                "description": "The registry's gRPC address as the edge sites reach it, host:port, written into "
                "every manifest; required when enabled",
            },
            "settings": registry,
            "grpc": ref("grpcPort"),
            "service": obj(
                {
                    "type": SERVICE_TYPE,
                    "annotations": STRING_MAP,
                    "loadBalancerSourceRanges": {
                        "type": "array",
                        "items": {"type": "string", "pattern": "^[0-9a-fA-F.:]+/[0-9]{1,3}$"},
                        "description": "CIDRs allowed to reach a LoadBalancer (the edge sites' egress addresses)",
                    },
                }
            ),
            "persistence": obj(
                {
                    "existingClaim": STRING,
                    "storageClass": STRING,
                    "size": ref("quantity"),
                    "keep": BOOLEAN,
                    "accessMode": {"enum": ["ReadWriteOnce", "ReadWriteOncePod"]},
                },
                ["size"],
                description="The claim with the store (bundles and manifests). Always a claim.",
            ),
            "probes": ref("probes"),
        },
        required=("grpc", "persistence"),
        description="The LoRA adapter registry (Publish, Fetch, List); when enabled it needs publicAddress.",
    )
    add_observability(schema)
    schema["properties"]["console"] = console_block()
    # The cloud runs no indexing: the edge's index topic is none of its business.
    schema["definitions"] = {**SHARED_DEFINITIONS, "topics": topics(exclude=("index",))}
    return schema


def add_observability(schema: Schema) -> None:
    """The cloud chart's notifier, Grafana dashboard ConfigMap and PrometheusRule blocks."""
    secret_ref: Schema = obj(
        {"name": STRING, "key": NON_EMPTY},
        ["name", "key"],
        description="An existing Secret and the key in it; name required when the notifier is enabled.",
    )
    schema["required"] += ["notifier", "grafanaDashboard", "prometheusRule"]
    schema["properties"] |= {
        "notifier": component(
            {
                "webhooksSecret": secret_ref,
                "hmacSecret": secret_ref,
                "replicas": POSITIVE_INT,
                "settings": Block(
                    NotifierConfig,
                    "NotifierConfig (services/notifier/config.py) -> VIGIL_NOTIFIER__<FIELD>; webhooks and "
                    "hmac_secret come from webhooksSecret and hmacSecret.",
                    exclude=("webhooks", "hmac_secret"),
                ),
                "probes": ref("probes"),
            },
            required=("webhooksSecret", "hmacSecret"),
            description="Push notifications: every alert POSTed, signed, to the webhooks of an existing Secret.",
            when_enabled={
                "properties": {
                    "webhooksSecret": {"properties": {"name": {"minLength": 1}}},
                    "hmacSecret": {"properties": {"name": {"minLength": 1}}},
                }
            },
        ),
        "grafanaDashboard": obj(
            {
                "enabled": BOOLEAN,
                "label": {"type": "string", "minLength": 1, "pattern": r"^[A-Za-z0-9_./-]+$"},
                "labelValue": STRING,
                "namespace": STRING,
                "annotations": STRING_MAP,
            },
            ["enabled", "label"],
            description="helm/cloud/dashboards/vigil.json in a ConfigMap labelled for Grafana's dashboard sidecar.",
        ),
        "prometheusRule": obj(
            {"enabled": BOOLEAN, "labels": STRING_MAP},
            ["enabled"],
            description="helm/cloud/rules/vigil.rules.yaml as a PrometheusRule (needs the Prometheus Operator CRDs).",
        ),
    }


def console_block() -> Schema:
    """The console's values: auth from an existing Secret (or explicitly anonymous), Service, optional Ingress."""
    optional_host_port: Schema = {"type": "string", "pattern": f"^({HOST_PORT[1:-1]})?$"}
    settings = Block(
        ConsoleConfig,
        "ConsoleConfig (services/console/config.py) -> VIGIL_CONSOLE__<FIELD>; host, port, token, allow_anonymous, "
        "reasoning_address, reasoning_security, memory_address and memory_security come from the chart's fields.",
        exclude=(
            "host",
            "port",
            "token",
            "allow_anonymous",
            "reasoning_address",
            "reasoning_security",
            "memory_address",
            "memory_security",
            "watch_frames",
        ),
    )
    auth = obj(
        {
            "existingSecret": {
                **STRING,
                "description": "An existing Secret with the bearer token; required unless allowAnonymous",
            },
            "key": NON_EMPTY,
            "allowAnonymous": BOOLEAN,
        },
        ["existingSecret", "allowAnonymous"],
    )
    return component(
        {
            "auth": auth,
            "reasoningAddress": {
                **optional_host_port,
                "description": "Ask's reasoning service, host:port; empty = this release's reasoning",
            },
            # TLS and the console's token for Ask (identity "console"); TLS for the edge memory's health probe.
            "reasoningClient": ref("grpcClient"),
            "memoryAddress": {**optional_host_port, "description": "The edge memory, for the health area only"},
            "memoryClient": ref("grpcClient"),
            "replicas": POSITIVE_INT,
            "settings": settings,
            "http": obj({"port": {"type": "integer", "minimum": 1024, "maximum": 65535}}, ["port"]),
            "service": obj({"type": SERVICE_TYPE, "annotations": STRING_MAP}),
            "ingress": obj(
                {
                    "enabled": BOOLEAN,
                    "className": STRING,
                    "annotations": STRING_MAP,
                    "host": STRING,
                    "tlsSecret": STRING,
                }
            ),
            "probes": ref("probes"),
        },
        required=("auth", "http"),
        description="The operator's web console; when enabled it needs auth.existingSecret (a bearer token) unless "
        "auth.allowAnonymous is true.",
        when_enabled={
            "anyOf": [
                {"properties": {"auth": {"properties": {"existingSecret": {"minLength": 1}}}}},
                {"properties": {"auth": {"properties": {"allowAnonymous": {"const": True}}}}},
            ]
        },
    )


# -- rendering and the drift check --------------------------------------------------------------

CHARTS = {"edge": edge, "cloud": cloud}


def _resolve(node: Any, where: str) -> Any:
    """Blocks and Unions rendered, recursively."""
    if isinstance(node, Block):
        return render_block(node, where)
    if isinstance(node, Tagged):
        return render_union(node)
    if isinstance(node, dict):
        return {k: _resolve(v, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, where) for v in node]
    return node


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"].rsplit("/", 1)[-1]
        for v in node.values():
            yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def build(chart: str) -> Schema:
    """The chart's schema, with only the definitions it uses."""
    schema: Schema = _resolve(CHARTS[chart](), chart)
    definitions = schema.pop("definitions")
    used: set[str] = set()
    todo = list(_refs(schema))
    while todo:
        name = todo.pop()
        if name not in used:
            used.add(name)
            todo += _refs(definitions[name])
    schema["definitions"] = {k: v for k, v in definitions.items() if k in used}
    return schema


def render(chart: str) -> str:
    """The file's text: sorted keys, two-space indent, a trailing newline, so the output is stable."""
    return json.dumps(build(chart), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schema_path(chart: str) -> Path:
    """Where the chart's generated schema is committed."""
    return HELM_DIR / chart / "values.schema.json"


def main(argv: list[str] | None = None) -> int:
    """Write every chart's schema, or with --check compare the committed files with a fresh generation."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="fail if a committed schema differs from the generated one")
    args = ap.parse_args(argv)
    stale = []
    for chart in CHARTS:
        path, text = schema_path(chart), render(chart)
        committed = path.read_text() if path.exists() else None
        if committed == text:
            continue
        if args.check:
            stale.append(path.relative_to(ROOT))
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(
            "values schema is stale (the service configs or scripts/gen_values_schema.py changed); "
            "run `make values-schema`:",
            *stale,
            sep="\n  ",
            file=sys.stderr,
        )
        return 1
    if args.check:
        print("values schemas up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
