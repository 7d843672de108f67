{{/*
Names and labels shared by the Vigil charts.

Component helpers take a dict: "root" (the chart's top context), "component" (ingest, gating,
uplink, triton, ...), optionally "name" (the resource suffix when it differs from the component,
e.g. "ingest-lobby") and "selector" (extra selector labels, e.g. the camera id).
*/}}

{{/* Chart name, overridable, cut to the 63-character DNS label limit. */}}
{{- define "vigil-lib.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release fullname: the release name alone when it already contains the chart name ("edge"). */}}
{{- define "vigil-lib.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
"<fullname>-<name>". Fails instead of truncating: two cameras whose names were cut to the same
63 characters would otherwise silently overwrite each other's Deployment.
*/}}
{{- define "vigil-lib.componentName" -}}
{{- $name := printf "%s-%s" (include "vigil-lib.fullname" .root) (.name | default .component) -}}
{{- if gt (len $name) 63 -}}
{{- fail (printf "resource name %q is longer than 63 characters: use a shorter release name, fullnameOverride or camera id" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{- define "vigil-lib.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil-lib.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- range $key, $value := (.selector | default dict) }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- end -}}

{{- define "vigil-lib.labels" -}}
{{ include "vigil-lib.selectorLabels" . }}
app.kubernetes.io/part-of: vigil
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/*
The effective image block of a component: its own when it names a repository (Triton), else the
chart's image with the component's fields (tag, pullPolicy) over it.
*/}}
{{- define "vigil-lib.imageValues" -}}
{{- $own := .image | default dict -}}
{{- if $own.repository -}}
{{- toJson $own -}}
{{- else -}}
{{- toJson (mergeOverwrite (deepCopy .root.Values.image) $own) -}}
{{- end -}}
{{- end -}}

{{/* "repository:tag" (tag defaults to the chart's appVersion) or "repository@digest". */}}
{{- define "vigil-lib.image" -}}
{{- $image := fromJson (include "vigil-lib.imageValues" .) -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (toString ($image.tag | default .root.Chart.AppVersion)) -}}
{{- end -}}
{{- end -}}

{{- define "vigil-lib.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vigil-lib.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}
