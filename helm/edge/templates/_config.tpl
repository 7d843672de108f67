{{/*
Settings every edge service reads (VIGIL_BUS__*, VIGIL_TOPICS__*, logging, metrics port), as
YAML for fromYaml; the shared ConfigMap holds exactly this.
*/}}
{{- define "edge.commonData" -}}
{{- $data := dict
  "VIGIL_BUS__KIND" "kafka"
  "VIGIL_BUS__BOOTSTRAP" (required "kafka.bootstrap is required: the edge Kafka bootstrap servers, host:port (a prerequisite, see helm/README.md)" .Values.kafka.bootstrap)
  "VIGIL_LOG_LEVEL" .Values.log.level
  "VIGIL_LOG_JSON" (toString .Values.log.json)
  "VIGIL_METRICS_PORT" (include "vigil-lib.scalar" .Values.metrics.port) -}}
{{- $data = merge $data (fromYaml (include "vigil-lib.settingsData" (dict "prefix" "VIGIL_BUS__" "settings" .Values.kafka.settings))) -}}
{{- $kafka := fromYaml (include "vigil-lib.kafkaSecrets" (dict "tls" .Values.kafka.tls "name" "kafka")) -}}
{{- $data = merge $data (fromYaml (include "vigil-lib.settingsData" (dict "prefix" "VIGIL_BUS__" "settings" $kafka.settings))) -}}
{{- $data = merge $data (fromYaml (include "vigil-lib.settingsData" (dict "prefix" "VIGIL_TOPICS__" "settings" .Values.topics))) -}}
{{- toYaml $data -}}
{{- end -}}

{{/*
The cloud release's Kafka as this site reaches it (cloud.kafka), as a BusConfig dict in JSON: the
uplink sends alerts and evidence there and gating's adapter updates read the adapters topic there.
*/}}
{{- define "edge.cloudBus" -}}
{{- $bootstrap := required "cloud.kafka.bootstrap is required: the cloud release's Kafka as reachable from this site, host:port (the cloud release's NOTES print it)" .Values.cloud.kafka.bootstrap -}}
{{- $kafka := fromYaml (include "vigil-lib.kafkaSecrets" (dict "tls" .Values.cloud.kafka.tls "name" "cloud-kafka")) -}}
{{- toJson (merge (dict "kind" "kafka" "bootstrap" $bootstrap) $kafka.settings (deepCopy (.Values.cloud.kafka.settings | default dict))) -}}
{{- end -}}

{{- define "edge.commonConfigMapName" -}}
{{- include "vigil-lib.componentName" (dict "root" . "component" "config") -}}
{{- end -}}

{{- define "edge.metricsPort" -}}
- name: metrics
  containerPort: {{ .Values.metrics.port }}
  protocol: TCP
{{- end -}}

{{/*
The edge Triton's gRPC endpoint (host:port) for model backends of type triton*; fails when the
release runs no Triton, since the services' default (127.0.0.1:8001) is never right in a pod.
"where" names the values field for the message.
*/}}
{{- define "edge.tritonUrl" -}}
{{- if not .root.Values.triton.enabled -}}
{{- fail (printf "%s: type %s needs a Triton server: set its url (host:8001) or triton.enabled: true for this release's own" .where .type) -}}
{{- end -}}
{{- printf "%s.%s.svc:8001" (include "vigil-lib.componentName" (dict "root" .root "component" "triton")) .root.Release.Namespace -}}
{{- end -}}

{{/*
edge.modelConfig (dict "root" . "model" $cfg "where" "gating.settings.detector"): a model
backend's settings as JSON; a Triton backend (type triton, triton-vlm, ...) without a url gets
the release's own Triton Service, so switching a model to Triton is `type: triton` plus
`triton.enabled: true`.
*/}}
{{- define "edge.modelConfig" -}}
{{- $cfg := deepCopy (.model | default dict) -}}
{{- if and $cfg.type (hasPrefix "triton" (toString $cfg.type)) (not $cfg.url) -}}
{{- $_ := set $cfg "url" (include "edge.tritonUrl" (dict "root" .root "where" .where "type" $cfg.type)) -}}
{{- end -}}
{{- toJson $cfg -}}
{{- end -}}

{{/*
The one embedder of the release (values "embedder.settings") as JSON. indexing embeds index
frames with it and memory embeds questions with it: both get exactly this string
(VIGIL_INDEXING__EMBEDDER, VIGIL_MEMORY__EMBEDDER), so the two vector spaces cannot diverge.
*/}}
{{- define "edge.embedder" -}}
{{- include "edge.modelConfig" (dict "root" . "model" .Values.embedder.settings "where" "embedder.settings") -}}
{{- end -}}

{{/*
edge.modelVolumes (list modelVolume ...): read-only mounts of existing claims, as YAML
{volumes: [...], mounts: [...]}. Blocks without existingClaim are skipped; two blocks on the same
claim and path share one mount; two claims on one path fail (the kubelet would refuse the pod).
*/}}
{{- define "edge.modelVolumes" -}}
{{- $volumes := list -}}
{{- $mounts := list -}}
{{- $byPath := dict -}}
{{- range $i, $mv := . -}}
{{- with $mv.existingClaim -}}
{{- $claim := . -}}
{{- $seen := get $byPath $mv.mountPath -}}
{{- if not $seen -}}
{{- $name := printf "models-%d" (len $volumes) -}}
{{- $_ := set $byPath $mv.mountPath $claim -}}
{{- $volumes = append $volumes (dict "name" $name "persistentVolumeClaim" (dict "claimName" $claim "readOnly" true)) -}}
{{- $mounts = append $mounts (dict "name" $name "mountPath" $mv.mountPath "readOnly" true) -}}
{{- else if ne $seen $claim -}}
{{- fail (printf "model volumes: claims %s and %s are both mounted at %s; give one another mountPath" $seen $claim $mv.mountPath) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "volumes" $volumes "mounts" $mounts) -}}
{{- end -}}
