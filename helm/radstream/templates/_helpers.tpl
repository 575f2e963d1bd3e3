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
{{- if and $svc.enabled (include "radstream.consumesEvents" $name) (gt (int $svc.replicas) 1) (not $.Values.delivery.idempotencyDsnSecret.name) -}}
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
{{- if and (has $variable (include "radstream.secretFileOnly" $ | splitList " ")) (regexMatch `(?i)://[^/@\s]*:[^/@\s]+@|password\s*=|"bearer_token"\s*:` (toString (get $svc.env $variable))) -}}
{{- fail (printf "services.%s.env sets %s with a password or token in it: put it in services.%s.secretSettings (a Secret, mounted as a file)" $name $variable $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- include "radstream.validateDurable" . -}}
{{- if not .Values.insecure -}}
{{- include "radstream.validateSecure" . -}}
{{- end -}}
{{- with .Values.services.deid -}}
{{- if and .enabled (not .keySecret.name) -}}
{{- fail "services.deid.keySecret.name is required: the pseudonymisation key, from a Secret" -}}
{{- end -}}
{{- end -}}
{{- include "radstream.validateOcr" . -}}
{{- end -}}

{{/*
"true" for the services that consume and publish events (Kafka, the idempotency store, the
claim-check stores); empty for ocr, a stateless gRPC server that deid calls. Arg: the name.
*/}}
{{- define "radstream.consumesEvents" -}}
{{- if ne . "ocr" -}}true{{- end -}}
{{- end -}}

{{/* "true" when deid's pixel stage calls the release's ocr Service; empty when in-process. */}}
{{- define "radstream.deidCallsOcr" -}}
{{- $deid := .Values.services.deid -}}
{{- if and $deid.enabled (eq (dig "ocr" "via" "in-process" $deid) "service") -}}true{{- end -}}
{{- end -}}

{{/*
The ocr service and deid's use of it. ocr reads pixels with burned-in names and birth dates:
it is PHI zone like the others, so its gRPC port speaks TLS unless `insecure: true`, and a
remote engine (kserve) reaches Triton only at the peers named for it.
*/}}
{{- define "radstream.validateOcr" -}}
{{- $ocr := .Values.services.ocr -}}
{{- $escape := "or set insecure: true (a cluster without patient data)" -}}
{{- if and (include "radstream.deidCallsOcr" .) (not $ocr.enabled) -}}
{{- fail "services.deid.ocr.via is service, but services.ocr.enabled is false: enable the ocr service, or let deid read pixels in-process (via: in-process)" -}}
{{- end -}}
{{- if $ocr.enabled -}}
{{- if and (eq $ocr.engine "kserve") (not (dig "kserve" "url" "" $ocr)) -}}
{{- fail "services.ocr.kserve.url is required with engine kserve: Triton's KServe v2 endpoint that serves the detector and recognizer" -}}
{{- end -}}
{{- if and (eq $ocr.engine "easyocr") (not (or $ocr.image.repository $ocr.image.tag $ocr.image.digest)) -}}
{{- fail "services.ocr.engine easyocr needs services.ocr.image: an image built with the easyocr extra (deploy/Dockerfile, --build-arg OCR_EXTRAS=easyocr); the chart's image has no torch" -}}
{{- end -}}
{{- if and (dig "tls" "clientSecret" "" $ocr) (not (dig "tls" "secret" "" $ocr)) -}}
{{- fail "services.ocr.tls.clientSecret (mTLS) needs services.ocr.tls.secret: client certificates are only asked for over TLS" -}}
{{- end -}}
{{- if not .Values.insecure -}}
{{- if not (or (dig "tls" "secret" "" $ocr) (hasKey ($ocr.env | default dict) "RADSTREAM_OCR_TLS_CERTFILE")) -}}
{{- fail (printf "services.ocr.tls.secret is required: the gRPC port would take pixels with burned-in PHI in clear text (or set RADSTREAM_OCR_TLS_CERTFILE and its _KEYFILE in services.ocr.env); %s" $escape) -}}
{{- end -}}
{{- if and (eq $ocr.engine "kserve") (not .Values.networkPolicy.egress.triton.to) -}}
{{- fail (printf "networkPolicy.egress.triton.to is required with engine kserve: the Triton peers the ocr pods may send pixel tensors to; %s" $escape) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
State that must outlive a pod: a replaced pod must not forget what senders were told was stored
(ingest's study assembly), which events it handled or how often one crashed it (every service's
idempotency store), where it was in the PACS's changes (the pull cursor), or what it received
(the receipt audit, in a file). Without PostgreSQL
that state is SQLite in the working directory, which must then be a PersistentVolumeClaim.
*/}}
{{- define "radstream.validateDurable" -}}
{{- range $name, $svc := .Values.services -}}
{{- $persistent := (dig "persistence" "enabled" false $svc) -}}
{{- if and $svc.enabled $persistent (gt (int $svc.replicas) 1) -}}
{{- fail (printf "services.%s.persistence is one ReadWriteOnce claim, for one replica: more replicas share their state in PostgreSQL instead" $name) -}}
{{- end -}}
{{- end -}}
{{- with .Values.services.ingest -}}
{{- if .enabled -}}
{{- $persistent := (dig "persistence" "enabled" false .) -}}
{{- $stated := merge dict (.env | default dict) (.secretSettings | default dict) -}}
{{- if not (or .assemblyDsnSecret.name $persistent (hasKey $stated "RADSTREAM_INGEST_ASSEMBLY_DSN")) -}}
{{- fail "services.ingest would keep its study assembly in SQLite on an emptyDir, and a replaced pod would forget studies that senders were told were stored: set services.ingest.assemblyDsnSecret (PostgreSQL) or services.ingest.persistence.enabled (a PersistentVolumeClaim)" -}}
{{- end -}}
{{- if and (eq (toString (get (.env | default dict) "RADSTREAM_INGEST_PACS_MODE")) "pull") (not (or $persistent (hasKey $stated "RADSTREAM_INGEST_PACS_CURSOR_DSN"))) -}}
{{- fail "services.ingest would keep its place in the PACS's changes (pull mode) in SQLite on an emptyDir, and a replaced pod would skip what arrived meanwhile: set services.ingest.persistence.enabled, or RADSTREAM_INGEST_PACS_CURSOR_DSN (PostgreSQL) in services.ingest.secretSettings" -}}
{{- end -}}
{{- /* The services write receipts to a file unless told otherwise (RADSTREAM_INGEST_AUDIT_SINK). */ -}}
{{- $env := .env | default dict -}}
{{- if eq (toString (get $env "RADSTREAM_INGEST_AUDIT_SINK" | default "file")) "file" -}}
{{- if not $persistent -}}
{{- fail "services.ingest would keep its receipt audit in a file on an emptyDir, and a replaced pod would take the record of what it received with it: set services.ingest.persistence.enabled (a PersistentVolumeClaim), or RADSTREAM_INGEST_AUDIT_SINK=phi-store in services.ingest.env" -}}
{{- end -}}
{{- $path := toString (get $env "RADSTREAM_INGEST_AUDIT_PATH" | default ".radstream/audit/ingest-receipts.jsonl") -}}
{{- if not (isAbs $path) -}}{{- $path = printf "/var/lib/radstream/%s" $path -}}{{- end -}}
{{- if not (hasPrefix "/var/lib/radstream/" (clean $path)) -}}
{{- fail "services.ingest.env sets RADSTREAM_INGEST_AUDIT_PATH outside the working directory's claim: give a relative path or one under /var/lib/radstream/" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $name, $svc := .Values.services -}}
{{- if and $svc.enabled (include "radstream.consumesEvents" $name) (not $.Values.delivery.idempotencyDsnSecret.name) (not (dig "persistence" "enabled" false $svc)) -}}
{{- fail (printf "services.%s would keep its idempotency store in SQLite on an emptyDir, and a replaced pod would forget which events it handled and which crashed it: set delivery.idempotencyDsnSecret (PostgreSQL) or services.%s.persistence.enabled (a PersistentVolumeClaim)" $name $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
What a release carrying patient data needs on the wire, unless `insecure: true` says otherwise:
TLS to Kafka and the object store, TLS on every ingest listener, named senders, and
NetworkPolicies whose egress names the Kafka brokers and the object store (and PostgreSQL when
a DSN is given).
*/}}
{{- define "radstream.validateSecure" -}}
{{- $escape := "or set insecure: true (a cluster without patient data)" -}}
{{- if not (has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL")) -}}
{{- fail (printf "kafka.securityProtocol must be SSL or SASL_SSL (TLS): events carry PHI; %s" $escape) -}}
{{- end -}}
{{- if hasPrefix "http://" .Values.blob.s3EndpointUrl -}}
{{- fail (printf "blob.s3EndpointUrl must be https:// (TLS): the PHI store holds patient data; %s" $escape) -}}
{{- end -}}
{{- with .Values.services.ingest -}}
{{- if .enabled -}}
{{- $open := list -}}
{{- range $listener, $l := (.listeners | default dict) -}}
{{- if $l.enabled -}}{{- $open = append $open $listener -}}{{- end -}}
{{- end -}}
{{- if and $open (not .allowedFrom) -}}
{{- fail (printf "services.ingest.allowedFrom is required: the senders (modalities, PACS, RIS) that may reach ingest's listeners; %s" $escape) -}}
{{- end -}}
{{- $env := .env | default dict -}}
{{- $tlsSecret := dig "tls" "secret" "" . -}}
{{- range $listener := $open -}}
{{- $variable := printf "RADSTREAM_INGEST_%s_TLS_CERTFILE" (upper $listener) -}}
{{- if not (or $tlsSecret (hasKey $env $variable)) -}}
{{- fail (printf "services.ingest.tls.secret is required: the %s listener would take PHI in clear text (or set %s and its _KEYFILE in services.ingest.env); %s" $listener $variable $escape) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not .Values.networkPolicy.enabled -}}
{{- fail (printf "networkPolicy.enabled is required: PHI-zone pods take only their senders and reach only their destinations; %s" $escape) -}}
{{- end -}}
{{- range $destination := list "kafka" "objectStore" -}}
{{- if not (index $.Values.networkPolicy.egress $destination).to -}}
{{- fail (printf "networkPolicy.egress.%s.to is required: the peers PHI-zone pods may reach it at (egress is denied everywhere else); %s" $destination $escape) -}}
{{- end -}}
{{- end -}}
{{- if and (include "radstream.usesPostgres" .) (not .Values.networkPolicy.egress.postgres.to) -}}
{{- fail (printf "networkPolicy.egress.postgres.to is required with a PostgreSQL DSN: the peers PHI-zone pods may reach it at; %s" $escape) -}}
{{- end -}}
{{- end -}}

{{/* "true" when any PostgreSQL DSN is given by a Secret; empty otherwise. */}}
{{- define "radstream.usesPostgres" -}}
{{- $ingest := .Values.services.ingest -}}
{{- $secrets := $ingest.secretSettings | default dict -}}
{{- if or .Values.delivery.idempotencyDsnSecret.name $ingest.assemblyDsnSecret.name (hasKey $secrets "RADSTREAM_INGEST_ASSEMBLY_DSN") (hasKey $secrets "RADSTREAM_INGEST_PACS_CURSOR_DSN") -}}
true
{{- end -}}
{{- end -}}

{{/*
Settings that can carry a password or a token inside a larger value (a DSN, export targets):
with one, only from a Secret (the services refuse it from the environment; a test keeps this
list in step with their secret_file_only fields).
*/}}
{{- define "radstream.secretFileOnly" -}}
RADSTREAM_DELIVERY_IDEMPOTENCY_DSN RADSTREAM_INGEST_ASSEMBLY_DSN RADSTREAM_INGEST_PACS_CURSOR_DSN RADSTREAM_INGEST_PACS_EXPORT_TARGETS
{{- end -}}

{{/*
The settings that hold secrets (SecretStr in the services' settings classes; a test keeps this
list in step with them). They may come only from Secrets, never from plain values.
*/}}
{{- define "radstream.secretSettings" -}}
RADSTREAM_BLOB_S3_ACCESS_KEY_ID RADSTREAM_BLOB_S3_SECRET_ACCESS_KEY RADSTREAM_DEID_KEY RADSTREAM_INGEST_PACS_PASSWORD RADSTREAM_KAFKA_SASL_PASSWORD RADSTREAM_KAFKA_SSL_KEY_PASSWORD
{{- end -}}

{{/*
A storage quantity (values.schema.json's pattern: a number, then Ki/Mi/Gi/Ti/k/M/G/T or none) in
bytes, as a float: the chart adds quantities the scheduler must reserve together.
*/}}
{{- define "radstream.quantityBytes" -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" . -}}
{{- $unit := trimPrefix $number . -}}
{{- $factors := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 -}}
{{- mulf (float64 $number) (get $factors $unit) -}}
{{- end -}}

{{/*
One service's resources: the values', with an ephemeral-storage request the scheduler reserves
on the node's disk for the spool emptyDir (its sizeLimit) and 1 GiB more for the container's
logs and the working directory, unless the values request ephemeral-storage themselves. Without
it a node can be filled by others, and a pod writing its spool full is evicted. /tmp is memory
and counts against the memory limit instead. Args: the service's values.
*/}}
{{- define "radstream.resources" -}}
{{- $resources := deepCopy (.resources | default dict) -}}
{{- $requests := get $resources "requests" | default dict -}}
{{- if not (hasKey $requests "ephemeral-storage") -}}
{{- $spool := include "radstream.quantityBytes" (dig "spool" "sizeLimit" "4Gi" .) | float64 -}}
{{- $mebibytes := ceil (divf (addf $spool 1073741824) 1048576) -}}
{{- $_ := set $requests "ephemeral-storage" (printf "%.0fMi" $mebibytes) -}}
{{- $_ := set $resources "requests" $requests -}}
{{- end -}}
{{- toYaml $resources -}}
{{- end -}}

{{/*
Where deid's pixel stage reads text, as YAML: the in-process engine, or the release's ocr
Service by its cluster DNS name (the name ocr's certificate must carry; headless, so it resolves
to every ready ocr pod) through the ocr client's settings (RADSTREAM_OCR_CLIENT_*), with the CA
to verify the server by and, for mTLS, deid's client certificate.
*/}}
{{- define "radstream.deidOcrSettings" -}}
{{- $deid := .Values.services.deid -}}
{{- if include "radstream.deidCallsOcr" . -}}
{{- $ocr := .Values.services.ocr -}}
{{- $host := printf "%s.%s.svc" (include "radstream.serviceName" (dict "root" . "name" "ocr")) .Release.Namespace -}}
RADSTREAM_DEID_OCR_ENGINE: grpc
RADSTREAM_OCR_CLIENT_TARGET: {{ printf "%s:%d" $host (int $ocr.grpc.port) | quote }}
{{- if include "radstream.ocrCaSecret" . }}
RADSTREAM_OCR_CLIENT_TLS_CA_FILE: /etc/radstream/ocr-ca/ca.crt
{{- end }}
{{- if include "radstream.ocrClientSecret" . }}
RADSTREAM_OCR_CLIENT_TLS_CERTFILE: /etc/radstream/ocr-client/tls.crt
RADSTREAM_OCR_CLIENT_TLS_KEYFILE: /etc/radstream/ocr-client/tls.key
{{- end }}
{{- else }}
RADSTREAM_DEID_OCR_ENGINE: {{ dig "ocr" "engine" "rapidocr" $deid | quote }}
{{- end -}}
{{- end -}}

{{/* The Secret whose ca.crt deid verifies ocr's certificate with; empty without TLS. */}}
{{- define "radstream.ocrCaSecret" -}}
{{- if include "radstream.deidCallsOcr" . -}}
{{- dig "tls" "secret" "" .Values.services.ocr -}}
{{- end -}}
{{- end -}}

{{/* The Secret with deid's client certificate for ocr (mTLS); empty without. */}}
{{- define "radstream.ocrClientSecret" -}}
{{- if include "radstream.ocrCaSecret" . -}}
{{- dig "tls" "clientSecret" "" .Values.services.ocr -}}
{{- end -}}
{{- end -}}

{{/* The image of the ocr pods: services.ocr.image where given (easyocr's), else the chart's. */}}
{{- define "radstream.ocrImage" -}}
{{- $own := .Values.services.ocr.image | default dict -}}
{{- if or $own.repository $own.tag $own.digest -}}
{{- $image := dict "repository" ($own.repository | default .Values.image.repository) "tag" $own.tag "digest" $own.digest -}}
{{- include "radstream.image" (dict "Values" (dict "image" $image) "Chart" .Chart) -}}
{{- else -}}
{{- include "radstream.image" . -}}
{{- end -}}
{{- end -}}
