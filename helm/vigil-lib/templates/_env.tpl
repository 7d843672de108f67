{{/*
Settings -> environment. Every Vigil setting is an environment variable (pydantic-settings,
prefix VIGIL_, nested with "__"); a values "settings" block names the fields of the service's
config.py verbatim and becomes VIGIL_<PREFIX><FIELD> entries of a ConfigMap.

vigil-lib.settingsData (dict "prefix" "VIGIL_GATING__" "settings" .Values.gating.settings)
returns YAML (a map of strings) for fromYaml:
- scalars become strings; whole numbers are written without a fraction or exponent, because
  Helm reads every number as a float and Go prints 125000.0 as "1.25e+05", which an int field
  rejects;
- maps and lists become JSON, which pydantic-settings parses for nested models and lists;
- null means "leave the service's default" and is skipped.
*/}}
{{- define "vigil-lib.settingsData" -}}
{{- $out := dict -}}
{{- range $key, $value := .settings -}}
{{- $name := printf "%s%s" $.prefix (upper $key) -}}
{{- if kindIs "invalid" $value -}}
{{- else if or (kindIs "map" $value) (kindIs "slice" $value) -}}
{{- $_ := set $out $name (toJson $value) -}}
{{- else -}}
{{- $_ := set $out $name (include "vigil-lib.scalar" $value) -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* One scalar as the string a pydantic field parses: 5 -> "5", 0.25 -> "0.25", true -> "true". */}}
{{- define "vigil-lib.scalar" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/* A content hash of a ConfigMap's data for the pod template, so a settings change rolls the pods. */}}
{{- define "vigil-lib.checksum" -}}
{{- toJson . | sha256sum -}}
{{- end -}}
