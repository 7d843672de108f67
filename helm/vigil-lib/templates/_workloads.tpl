{{/*
Objects every Vigil chart builds the same way. Each takes a dict with "root" and "component"
(see _names.tpl) plus the keys listed above it.
*/}}

{{/*
vigil-lib.deployment: one container, hardened, with /tmp as the only writable path besides
the volumes it is given.
  values        the component's values block: resources (required), nodeSelector, tolerations,
                affinity, topologySpreadConstraints, podAnnotations, priorityClassName,
                terminationGracePeriodSeconds, securityContext (merged over the chart's
                containerSecurityContext), image (merged over the chart's image)
  args          the process (the image's tini entrypoint stays in front of it)
  configMaps    names of ConfigMaps loaded with envFrom, in order
  env           extra EnvVar objects (secretKeyRef for camera URLs, per-camera settings)
  ports         ContainerPort objects
  probes        YAML text: startupProbe / livenessProbe / readinessProbe
  volumes, volumeMounts
  metricsPort   when set (and metrics.scrape is on), the pod gets prometheus.io/* annotations
  checksum      a hash of the settings this pod reads, so that a change rolls it
  replicas, strategy (RollingUpdate | Recreate)
*/}}
{{- define "vigil-lib.deployment" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $annotations := dict -}}
{{- if .checksum -}}
{{- $_ := set $annotations "checksum/config" .checksum -}}
{{- end -}}
{{- if and .metricsPort $root.Values.metrics.scrape -}}
{{- $_ := set $annotations "prometheus.io/scrape" "true" -}}
{{- $_ := set $annotations "prometheus.io/port" (toString .metricsPort) -}}
{{- $_ := set $annotations "prometheus.io/path" "/metrics" -}}
{{- end -}}
{{- $annotations = merge $annotations ($v.podAnnotations | default dict) -}}
{{- $securityContext := mergeOverwrite (deepCopy $root.Values.containerSecurityContext) ($v.securityContext | default dict) -}}
{{- /* Kafka's CA, client certificate and SASL password (kafka.tls): every Vigil process may talk to Kafka. */ -}}
{{- $kafka := fromYaml (include "vigil-lib.kafkaVolumes" $root) -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "vigil-lib.componentName" . }}
  labels:
    {{- include "vigil-lib.labels" . | nindent 4 }}
spec:
  replicas: {{ hasKey . "replicas" | ternary .replicas 1 }}
  revisionHistoryLimit: 3
  strategy:
    type: {{ .strategy | default "RollingUpdate" }}
  selector:
    matchLabels:
      {{- include "vigil-lib.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "vigil-lib.labels" . | nindent 8 }}
      {{- with $annotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "vigil-lib.serviceAccountName" $root }}
      # No Vigil process talks to the Kubernetes API.
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds | default 30 }}
      containers:
        - name: {{ .component }}
          image: {{ include "vigil-lib.image" (dict "root" $root "image" $v.image) | quote }}
          imagePullPolicy: {{ (fromJson (include "vigil-lib.imageValues" (dict "root" $root "image" $v.image))).pullPolicy | default "IfNotPresent" }}
          {{- with .args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with .ports }}
          ports:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with .configMaps }}
          envFrom:
            {{- range . }}
            - configMapRef:
                name: {{ . }}
            {{- end }}
          {{- end }}
          {{- with .env }}
          env:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with .probes }}
          {{- . | nindent 10 }}
          {{- end }}
          resources:
            {{- toYaml (required (printf "%s.resources is required: every container states its requests and limits" .component) $v.resources) | nindent 12 }}
          securityContext:
            {{- toYaml $securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- with concat (.volumeMounts | default list) ($kafka.mounts | default list) }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        # The root filesystem is read-only; libraries that want a scratch or config dir get /tmp.
        - name: tmp
          emptyDir:
            sizeLimit: {{ $v.tmpSizeLimit | default "256Mi" }}
        {{- with concat (.volumes | default list) ($kafka.volumes | default list) }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}

{{/*
vigil-lib.service: a ClusterIP (or .type) Service on the component's pods; "ports" are ServicePorts.
Optional: "annotations" (a cloud load balancer's settings), "loadBalancerSourceRanges" (CIDRs that
may reach a LoadBalancer).
*/}}
{{- define "vigil-lib.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "vigil-lib.componentName" . }}
  labels:
    {{- include "vigil-lib.labels" . | nindent 4 }}
  {{- with .annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ .type | default "ClusterIP" }}
  {{- if eq (.type | default "ClusterIP") "LoadBalancer" }}
  {{- with .loadBalancerSourceRanges }}
  loadBalancerSourceRanges:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  selector:
    {{- include "vigil-lib.selectorLabels" . | nindent 4 }}
  ports:
    {{- toYaml .ports | nindent 4 }}
{{- end -}}

{{/* vigil-lib.configmap: "data" is a map of strings (see vigil-lib.settingsData). */}}
{{- define "vigil-lib.configmap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "vigil-lib.componentName" . }}
  labels:
    {{- include "vigil-lib.labels" . | nindent 4 }}
data:
  {{- toYaml .data | nindent 2 }}
{{- end -}}

{{/*
vigil-lib.pvc: "persistence" is {size, accessMode, storageClass, keep}. With keep, `helm uninstall`
leaves the claim (and what it holds) in place.
*/}}
{{- define "vigil-lib.pvc" -}}
{{- $p := .persistence -}}
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ include "vigil-lib.componentName" . }}
  labels:
    {{- include "vigil-lib.labels" . | nindent 4 }}
  {{- if $p.keep }}
  annotations:
    helm.sh/resource-policy: keep
  {{- end }}
spec:
  accessModes:
    - {{ $p.accessMode | default "ReadWriteOnce" }}
  {{- with $p.storageClass }}
  storageClassName: {{ . | quote }}
  {{- end }}
  resources:
    requests:
      storage: {{ $p.size }}
{{- end -}}

{{/* vigil-lib.serviceAccount: the release's one ServiceAccount (root context), no API token mounted. */}}
{{- define "vigil-lib.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "vigil-lib.serviceAccountName" . }}
  labels:
    {{- include "vigil-lib.labels" (dict "root" . "component" "serviceaccount") | nindent 4 }}
automountServiceAccountToken: false
{{- end -}}
{{- end -}}
