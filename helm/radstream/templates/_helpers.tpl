{{/* The release's full name, cut to Kubernetes' 63 characters. */}}
{{- define "radstream.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* One service's resource name: <fullname>-<service>. */}}
{{- define "radstream.serviceName" -}}
{{- printf "%s-%s" (include "radstream.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "radstream.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one service's pods; args: dict "root" $ "name" <service>. */}}
{{- define "radstream.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "radstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "radstream.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The image by digest when one is given (immutable), else by tag. */}}
{{- define "radstream.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
What no release can run without. Rendering fails with the reason, instead of pods that crash
at startup or, worse, run with PHI where it does not belong.
*/}}
{{- define "radstream.validate" -}}
{{- if not .Values.kafka.bootstrap -}}
{{- fail "kafka.bootstrap is required: the hospital's Kafka bootstrap servers (host:port,...)" -}}
{{- end -}}
{{- if or (not .Values.blob.phiUri) (not .Values.blob.releaseUri) -}}
{{- fail "blob.phiUri and blob.releaseUri are required: object storage for the PHI zone and for released data" -}}
{{- end -}}
{{- if or (hasPrefix "file:" .Values.blob.phiUri) (hasPrefix "file:" .Values.blob.releaseUri) -}}
{{- fail "blob URIs must be object storage (s3://): pods share no filesystem, and a pod's own disk is gone with it" -}}
{{- end -}}
{{- if eq (trimSuffix "/" .Values.blob.phiUri) (trimSuffix "/" .Values.blob.releaseUri) -}}
{{- fail "blob.phiUri and blob.releaseUri must differ: the release zone never shares storage with PHI" -}}
{{- end -}}
{{- if and (hasPrefix "SASL" .Values.kafka.securityProtocol) (not .Values.kafka.saslPasswordSecret.name) -}}
{{- fail "kafka.saslPasswordSecret.name is required with a SASL security protocol" -}}
{{- end -}}
{{- if and .Values.kafka.mtls (not .Values.kafka.tlsSecret) -}}
{{- fail "kafka.mtls needs kafka.tlsSecret (ca.crt, tls.crt, tls.key)" -}}
{{- end -}}
{{- range $name, $svc := .Values.services -}}
{{- if and $svc.enabled (gt (int $svc.replicas) 1) (not $.Values.delivery.idempotencyDsnSecret.name) -}}
{{- fail (printf "services.%s.replicas > 1 needs delivery.idempotencyDsnSecret: replicas must share one idempotency guard (PostgreSQL)" $name) -}}
{{- end -}}
{{- end -}}
{{- with .Values.services.ingest -}}
{{- if and .enabled (gt (int .replicas) 1) (not .assemblyDsnSecret.name) -}}
{{- fail "services.ingest.replicas > 1 needs services.ingest.assemblyDsnSecret: replicas must share one study assembly (PostgreSQL)" -}}
{{- end -}}
{{- end -}}
{{- range $name, $svc := .Values.services -}}
{{- range $variable := keys ($svc.env | default dict) -}}
{{- if has $variable (include "radstream.secretSettings" $ | splitList " ") -}}
{{- fail (printf "services.%s.env sets %s, a secret: put it in services.%s.secretSettings (a Secret, mounted as a file)" $name $variable $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- with .Values.services.deid -}}
{{- if and .enabled (not .keySecret.name) -}}
{{- fail "services.deid.keySecret.name is required: the pseudonymisation key, from a Secret" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The settings that hold secrets (SecretStr in the services' settings classes; a test keeps this
list in step with them). They may come only from Secrets, never from plain values.
*/}}
{{- define "radstream.secretSettings" -}}
RADSTREAM_BLOB_S3_ACCESS_KEY_ID RADSTREAM_BLOB_S3_SECRET_ACCESS_KEY RADSTREAM_DEID_KEY RADSTREAM_INGEST_PACS_PASSWORD RADSTREAM_KAFKA_SASL_PASSWORD RADSTREAM_KAFKA_SSL_KEY_PASSWORD
{{- end -}}
