{{/*
vigil-lib.triton (root context): an NVIDIA Triton server (Deployment + Service) over a model
repository on an existing PersistentVolumeClaim, for the "triton" values block of either chart.
Weights are never in an image: the claim holds the repository that scripts/ prepares.
Health comes from Triton's own HTTP endpoints (/v2/health/live, /v2/health/ready).
*/}}
{{- define "vigil-lib.triton" -}}
{{- $root := . -}}
{{- $t := .Values.triton -}}
{{- $ctx := dict "root" $root "component" "triton" -}}
{{- $values := deepCopy $t -}}
{{- $resources := deepCopy (required "triton.resources is required" $t.resources) -}}
{{- if gt (int $t.gpus) 0 -}}
{{- $limits := $resources.limits | default dict -}}
{{- $_ := set $limits "nvidia.com/gpu" (int $t.gpus) -}}
{{- $_ := set $resources "limits" $limits -}}
{{- end -}}
{{- $_ := set $values "resources" $resources -}}
{{- $args := list "tritonserver" "--model-repository=/models" "--http-port=8000" "--grpc-port=8001" "--metrics-port=8002" -}}
{{- $args = concat $args ($t.extraArgs | default list) -}}
{{- $probes := printf `startupProbe:
  httpGet:
    path: /v2/health/ready
    port: http
  periodSeconds: 10
  failureThreshold: %d
livenessProbe:
  httpGet:
    path: /v2/health/live
    port: http
  periodSeconds: 15
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /v2/health/ready
    port: http
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 2` (int ($t.startupFailureThreshold | default 60)) -}}
{{- $claim := required "triton.modelRepository.existingClaim is required when triton.enabled: a PersistentVolumeClaim holding the Triton model repository" $t.modelRepository.existingClaim -}}
{{- $mount := dict "name" "models" "mountPath" "/models" "readOnly" true -}}
{{- with $t.modelRepository.subPath }}{{ $_ := set $mount "subPath" . }}{{ end -}}
{{- $volumes := list
  (dict "name" "models" "persistentVolumeClaim" (dict "claimName" $claim "readOnly" true))
  (dict "name" "shm" "emptyDir" (dict "medium" "Memory" "sizeLimit" ($t.shmSize | default "1Gi"))) -}}
{{- $mounts := list $mount (dict "name" "shm" "mountPath" "/dev/shm") -}}
{{ include "vigil-lib.deployment" (merge (dict
  "values" $values
  "args" $args
  "ports" (list
    (dict "name" "http" "containerPort" 8000 "protocol" "TCP")
    (dict "name" "grpc" "containerPort" 8001 "protocol" "TCP")
    (dict "name" "metrics" "containerPort" 8002 "protocol" "TCP"))
  "env" (list (dict "name" "HOME" "value" "/tmp"))
  "probes" $probes
  "volumes" $volumes
  "volumeMounts" $mounts
  "metricsPort" 8002
  "replicas" (int ($t.replicas | default 1))
  ) $ctx) }}
---
{{ include "vigil-lib.service" (merge (dict
  "type" ($t.service.type | default "ClusterIP")
  "ports" (list
    (dict "name" "grpc" "port" 8001 "targetPort" "grpc" "protocol" "TCP")
    (dict "name" "http" "port" 8000 "targetPort" "http" "protocol" "TCP"))
  ) $ctx) }}
{{- end -}}
