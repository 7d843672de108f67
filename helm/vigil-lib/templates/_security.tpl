{{/*
Security of the links, shared by both charts (values "grpcSecurity" and "signing"; README,
"Deploy on Kubernetes", shows how to issue what the Secrets hold with `vigil tls`).

vigil-lib.grpcServerSecurity (dict "root" . "allow" $v.grpc.allow "port" $v.grpc.port) returns YAML
{data, volumes, mounts, probePort, ports} for one gRPC server: the VIGIL_GRPC_SECURITY__* settings
(TLS from the kubernetes.io/tls Secret grpcSecurity.tlsSecret, tokens from grpcSecurity.tokensSecret,
the component's allow-list), the Secret volumes, and the plaintext health-only port the kubelet's gRPC
probe uses (it cannot speak TLS). With grpcSecurity.enabled false: plaintext, nothing mounted.
*/}}
{{- define "vigil-lib.grpcServerSecurity" -}}
{{- $s := .root.Values.grpcSecurity -}}
{{- $out := dict "data" dict "volumes" list "mounts" list "probePort" (int .port) "ports" list -}}
{{- if $s.enabled -}}
{{- $tlsSecret := include "vigil-lib.grpcTlsSecretName" .root -}}
{{- $data := dict
  "VIGIL_GRPC_SECURITY__TLS__CERT" "/etc/vigil/grpc-tls/tls.crt"
  "VIGIL_GRPC_SECURITY__TLS__KEY" "/etc/vigil/grpc-tls/tls.key"
  "VIGIL_GRPC_SECURITY__REQUIRE_CLIENT_CERT" (toString $s.requireClientCert)
  "VIGIL_GRPC_SECURITY__HEALTH_PORT" (include "vigil-lib.scalar" $s.healthPort)
  "VIGIL_GRPC_SECURITY__ALLOW" (toJson (required "an allow-list (grpc.allow) is required for every gRPC component when grpcSecurity.enabled" .allow)) -}}
{{- if $s.requireClientCert -}}
{{- $_ := set $data "VIGIL_GRPC_SECURITY__TLS__CA" "/etc/vigil/grpc-tls/ca.crt" -}}
{{- end -}}
{{- $volumes := list (dict "name" "grpc-tls" "secret" (dict "secretName" $tlsSecret "defaultMode" 288)) -}}
{{- $mounts := list (dict "name" "grpc-tls" "mountPath" "/etc/vigil/grpc-tls" "readOnly" true) -}}
{{- with $s.tokensSecret.name -}}
{{- $_ := set $data "VIGIL_GRPC_SECURITY__TOKENS_FILE" (printf "/etc/vigil/grpc-tokens/%s" $s.tokensSecret.key) -}}
{{- $volumes = append $volumes (dict "name" "grpc-tokens" "secret" (dict "secretName" . "defaultMode" 288 "items" (list (dict "key" $s.tokensSecret.key "path" $s.tokensSecret.key)))) -}}
{{- $mounts = append $mounts (dict "name" "grpc-tokens" "mountPath" "/etc/vigil/grpc-tokens" "readOnly" true) -}}
{{- else -}}
{{- if not $s.requireClientCert -}}
{{- fail "grpcSecurity: with no tokensSecret.name, set requireClientCert: true (callers need a token or a client certificate)" -}}
{{- end -}}
{{- end -}}
{{- $out = dict "data" $data "volumes" $volumes "mounts" $mounts "probePort" (int $s.healthPort)
  "ports" (list (dict "name" "health" "containerPort" (int $s.healthPort) "protocol" "TCP")) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* The Secret with tls.crt, tls.key, ca.crt for this release's gRPC servers (cert-manager's, when it issues it). */}}
{{- define "vigil-lib.grpcTlsSecretName" -}}
{{- $s := .Values.grpcSecurity -}}
{{- required "grpcSecurity.tlsSecret is required when grpcSecurity.enabled: a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt (README: vigil tls cert, kubectl create secret generic ... --from-file)" $s.tlsSecret -}}
{{- end -}}

{{/*
vigil-lib.grpcClientSecurity (dict "client" $v.memoryClient "name" "memory-client") returns YAML
{settings, volumes, mounts}: a GrpcClientSecurity (services/common/config.py) as a dict for a
component's settings, with the CA, client certificate and token from Secrets. "client" is
{enabled, caSecret: {name, key}, certSecret (kubernetes.io/tls, for mutual TLS), tokenSecret: {name, key},
serverName}. Disabled: settings null (plaintext).
*/}}
{{- define "vigil-lib.grpcClientSecurity" -}}
{{- $c := .client | default dict -}}
{{- $dir := printf "/etc/vigil/%s" .name -}}
{{- $out := dict "settings" nil "volumes" list "mounts" list -}}
{{- if $c.enabled -}}
{{- $tls := dict -}}
{{- $sources := list -}}
{{- with $c.caSecret -}}{{- if .name -}}
{{- $_ := set $tls "ca" (printf "%s/ca.crt" $dir) -}}
{{- $sources = append $sources (dict "secret" (dict "name" .name "items" (list (dict "key" .key "path" "ca.crt")))) -}}
{{- end -}}{{- end -}}
{{- with $c.certSecret -}}
{{- $_ := set $tls "cert" (printf "%s/tls.crt" $dir) -}}
{{- $_ := set $tls "key" (printf "%s/tls.key" $dir) -}}
{{- $sources = append $sources (dict "secret" (dict "name" . "items" (list (dict "key" "tls.crt" "path" "tls.crt") (dict "key" "tls.key" "path" "tls.key")))) -}}
{{- end -}}
{{- $settings := dict "tls" $tls "server_name" ($c.serverName | default "") -}}
{{- with $c.tokenSecret -}}{{- if .name -}}
{{- $_ := set $settings "token_file" (printf "%s/token" $dir) -}}
{{- $sources = append $sources (dict "secret" (dict "name" .name "items" (list (dict "key" .key "path" "token")))) -}}
{{- end -}}{{- end -}}
{{- $volumes := list -}}
{{- $mounts := list -}}
{{- if $sources -}}
{{- $volumes = list (dict "name" .name "projected" (dict "sources" $sources "defaultMode" 288)) -}}
{{- $mounts = list (dict "name" .name "mountPath" $dir "readOnly" true) -}}
{{- end -}}
{{- $out = dict "settings" $settings "volumes" $volumes "mounts" $mounts -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/*
vigil-lib.signingKeys (dict "root" .) returns YAML {data, volumes, mounts}: VIGIL_SIGNING__* with the keys
file from signing.keysSecret (lines "KEY_ID SECRET", `vigil tls signing-key`); the edge uplink signs with
signing.keyId, cloud consumers verify with every key in the file. Disabled: nothing.
*/}}
{{- define "vigil-lib.signingKeys" -}}
{{- $s := .root.Values.signing -}}
{{- $out := dict "data" dict "volumes" list "mounts" list "file" "" -}}
{{- if $s.enabled -}}
{{- $name := required "signing.keysSecret.name is required when signing.enabled: a Secret with the alert signing keys (README: vigil tls signing-key)" $s.keysSecret.name -}}
{{- $file := printf "/etc/vigil/signing/%s" $s.keysSecret.key -}}
{{- $data := dict "VIGIL_SIGNING__KEYS_FILE" $file -}}
{{- with $s.keyId -}}{{- $_ := set $data "VIGIL_SIGNING__KEY_ID" . -}}{{- end -}}
{{- $out = dict "data" $data "file" $file
  "volumes" (list (dict "name" "signing" "secret" (dict "secretName" $name "defaultMode" 288 "items" (list (dict "key" $s.keysSecret.key "path" $s.keysSecret.key)))))
  "mounts" (list (dict "name" "signing" "mountPath" "/etc/vigil/signing" "readOnly" true)) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/*
vigil-lib.certificate (dict "root" . "dnsNames" (list ...)): a cert-manager Certificate that writes
grpcSecurity.tlsSecret (tls.crt, tls.key and, from a CA issuer, ca.crt), when grpcSecurity.certManager.enabled.
*/}}
{{- define "vigil-lib.certificate" -}}
{{- $s := .root.Values.grpcSecurity -}}
{{- $cm := $s.certManager -}}
{{- if and $s.enabled $cm.enabled }}
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: {{ include "vigil-lib.componentName" (dict "root" .root "component" "grpc-tls") }}
  labels:
    {{- include "vigil-lib.labels" (dict "root" .root "component" "grpc-tls") | nindent 4 }}
spec:
  secretName: {{ include "vigil-lib.grpcTlsSecretName" .root }}
  duration: {{ $cm.duration }}
  renewBefore: {{ $cm.renewBefore }}
  privateKey:
    algorithm: ECDSA
    size: 256
    rotationPolicy: Always
  usages: [server auth, client auth]
  dnsNames:
    {{- toYaml (uniq (concat .dnsNames ($cm.dnsNames | default list))) | nindent 4 }}
  issuerRef:
    name: {{ required "grpcSecurity.certManager.issuerRef.name is required with certManager.enabled: an Issuer or ClusterIssuer (a CA issuer also writes ca.crt)" $cm.issuerRef.name }}
    kind: {{ $cm.issuerRef.kind }}
    group: cert-manager.io
{{- end }}
{{- end -}}

{{/*
vigil-lib.kafkaSecrets (dict "tls" .Values.kafka.tls "name" "kafka") returns YAML {settings, volumes, mounts}:
the BusConfig file settings (ssl_cafile, ssl_certfile, ssl_keyfile, sasl_password_file) for the CA, the
client certificate (a kubernetes.io/tls Secret, for brokers that authenticate clients by certificate) and
the SASL password, each from a Secret, mounted at /etc/vigil/<name>. security_protocol, sasl_mechanism and
sasl_username are plain settings (kafka.settings). Nothing set: nothing mounted.
*/}}
{{- define "vigil-lib.kafkaSecrets" -}}
{{- $t := .tls | default dict -}}
{{- $dir := printf "/etc/vigil/%s" .name -}}
{{- $settings := dict -}}
{{- $sources := list -}}
{{- with $t.caSecret -}}{{- if .name -}}
{{- $_ := set $settings "ssl_cafile" (printf "%s/ca.crt" $dir) -}}
{{- $sources = append $sources (dict "secret" (dict "name" .name "items" (list (dict "key" .key "path" "ca.crt")))) -}}
{{- end -}}{{- end -}}
{{- with $t.certSecret -}}
{{- $_ := set $settings "ssl_certfile" (printf "%s/tls.crt" $dir) -}}
{{- $_ := set $settings "ssl_keyfile" (printf "%s/tls.key" $dir) -}}
{{- $sources = append $sources (dict "secret" (dict "name" . "items" (list (dict "key" "tls.crt" "path" "tls.crt") (dict "key" "tls.key" "path" "tls.key")))) -}}
{{- end -}}
{{- with $t.saslPasswordSecret -}}{{- if .name -}}
{{- $_ := set $settings "sasl_password_file" (printf "%s/sasl-password" $dir) -}}
{{- $sources = append $sources (dict "secret" (dict "name" .name "items" (list (dict "key" .key "path" "sasl-password")))) -}}
{{- end -}}{{- end -}}
{{- $volumes := list -}}
{{- $mounts := list -}}
{{- if $sources -}}
{{- $volumes = list (dict "name" .name "projected" (dict "sources" $sources "defaultMode" 288)) -}}
{{- $mounts = list (dict "name" .name "mountPath" $dir "readOnly" true) -}}
{{- end -}}
{{- toYaml (dict "settings" $settings "volumes" $volumes "mounts" $mounts) -}}
{{- end -}}

{{/* Every Kafka secret mount of the release (kafka.tls, and the edge's cloud.kafka.tls), as YAML {volumes, mounts}. */}}
{{- define "vigil-lib.kafkaVolumes" -}}
{{- $volumes := list -}}
{{- $mounts := list -}}
{{- $cloud := (.Values.cloud | default dict).kafka | default dict -}}
{{- range $pair := list (list "kafka" .Values.kafka.tls) (list "cloud-kafka" $cloud.tls) -}}
{{- $k := fromYaml (include "vigil-lib.kafkaSecrets" (dict "tls" (index $pair 1) "name" (index $pair 0))) -}}
{{- $volumes = concat $volumes $k.volumes -}}
{{- $mounts = concat $mounts $k.mounts -}}
{{- end -}}
{{- toYaml (dict "volumes" $volumes "mounts" $mounts) -}}
{{- end -}}
