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
{{- $data = merge $data (fromYaml (include "vigil-lib.settingsData" (dict "prefix" "VIGIL_TOPICS__" "settings" .Values.topics))) -}}
{{- toYaml $data -}}
{{- end -}}

{{- define "edge.commonConfigMapName" -}}
{{- include "vigil-lib.componentName" (dict "root" . "component" "config") -}}
{{- end -}}

{{- define "edge.metricsPort" -}}
- name: metrics
  containerPort: {{ .Values.metrics.port }}
  protocol: TCP
{{- end -}}
