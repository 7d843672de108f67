{{/*
Probes, as YAML text for vigil-lib.deployment's "probes".

The startup probe covers model loading (the gRPC server binds only after the detector is built,
the metrics server only after a camera answered); liveness and readiness take over once it passed.
"probes" is the component's values block {startupFailureThreshold, periodSeconds, timeoutSeconds}.
*/}}

{{/*
vigil-lib.grpcProbes (dict "port" 50051 "probes" .Values.gating.probes): the kubelet's own gRPC
probe against the standard grpc.health.v1 service (no grpc_health_probe binary in the image).
The empty service name is the server's overall status, which the servicer reports SERVING once
started and NOT_SERVING while it drains on SIGTERM.
*/}}
{{- define "vigil-lib.grpcProbes" -}}
{{- $p := .probes | default dict -}}
startupProbe:
  grpc:
    port: {{ .port }}
  periodSeconds: 5
  timeoutSeconds: {{ $p.timeoutSeconds | default 3 }}
  failureThreshold: {{ $p.startupFailureThreshold | default 60 }}
livenessProbe:
  grpc:
    port: {{ .port }}
  periodSeconds: {{ $p.periodSeconds | default 10 }}
  timeoutSeconds: {{ $p.timeoutSeconds | default 3 }}
  failureThreshold: 3
readinessProbe:
  grpc:
    port: {{ .port }}
  periodSeconds: {{ $p.periodSeconds | default 10 }}
  timeoutSeconds: {{ $p.timeoutSeconds | default 3 }}
  failureThreshold: 2
{{- end -}}

{{/*
vigil-lib.httpProbes (dict "port" "metrics" "path" "/metrics" "probes" ...): for processes with no
gRPC server (ingest, uplink). prometheus_client's HTTP server answers from its own thread, so
this proves the process is up and scheduling threads; it does not prove the consumer loop makes
progress (that is what the vigil_*_ metrics and their alerts are for).
*/}}
{{- define "vigil-lib.httpProbes" -}}
{{- $p := .probes | default dict -}}
startupProbe:
  httpGet:
    path: {{ .path }}
    port: {{ .port }}
  periodSeconds: 5
  timeoutSeconds: {{ $p.timeoutSeconds | default 3 }}
  failureThreshold: {{ $p.startupFailureThreshold | default 24 }}
livenessProbe:
  httpGet:
    path: {{ .path }}
    port: {{ .port }}
  periodSeconds: {{ $p.periodSeconds | default 15 }}
  timeoutSeconds: {{ $p.timeoutSeconds | default 3 }}
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: {{ .path }}
    port: {{ .port }}
  periodSeconds: {{ $p.periodSeconds | default 15 }}
  timeoutSeconds: {{ $p.timeoutSeconds | default 3 }}
  failureThreshold: 2
{{- end -}}
