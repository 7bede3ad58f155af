{{/* Names, labels, and the exporter's command line, shared by the templates. */}}

{{- define "tcp-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name; the chart name is not repeated when the release already contains it. */}}
{{- define "tcp-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tcp-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tcp-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tcp-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels on every object. `jobLabel` is the label the ServiceMonitor and
PodMonitor take the Prometheus job name from: the alerting rules select
job="tcp-exporter", whatever the release is called.
*/}}
{{- define "tcp-exporter.labels" -}}
helm.sh/chart: {{ include "tcp-exporter.chart" . }}
{{ include "tcp-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: exporter
jobLabel: tcp-exporter
{{- end }}

{{- define "tcp-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tcp-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
"true" with kubernetes.enabled: the exporter runs with --kubernetes, and the
chart renders the ClusterRole and its binding and mounts the token.
*/}}
{{- define "tcp-exporter.kubernetes" -}}
{{- if (.Values.kubernetes | default dict).enabled }}true{{ end }}
{{- end }}

{{/* The labels that only --kubernetes can fill (the exporter refuses them without it). */}}
{{- define "tcp-exporter.kubernetesLabels" -}}
{{- toYaml (list "client_namespace" "client_workload" "client_workload_kind" "client_pod" "server_namespace" "server_workload" "server_workload_kind" "server_pod" "server_service") }}
{{- end }}

{{- define "tcp-exporter.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
A duration as the exporter reads it: a string as written (30s, 5m, 500ms), a
number as whole seconds (values arrive as floats; int64 keeps 600 from
printing as 600.0 or 6e+02).
*/}}
{{- define "tcp-exporter.duration" -}}
{{- if kindIs "string" . }}{{ . }}{{ else }}{{ . | int64 }}{{ end }}
{{- end }}

{{/*
portNames.custom as the file --port-names reads: a flat map of port to
name, written by toYaml, which quotes what YAML would read otherwise (a
name like `yes`, `123` or `a: b #c`). The ports come out as quoted keys
("8080": web), since Helm's values have string keys; the exporter reads a
quoted port number as the port. The checksum annotation on the pods is
taken of this text; toYaml sorts the keys, so equal maps give equal text.
*/}}
{{- define "tcp-exporter.portNamesYaml" -}}
{{- toYaml (.Values.portNames | default dict).custom }}
{{- end }}

{{/* Where the container finds portNames.custom: the ConfigMap's directory and key. */}}
{{- define "tcp-exporter.portNamesDir" -}}
/etc/tcp-exporter
{{- end }}
{{- define "tcp-exporter.portNamesKey" -}}
port-names.yaml
{{- end }}

{{/*
webConfig: the exporter's --web.config.file, from a Secret the chart renders
(webConfig.config) or an existing one, mounted read-only together with the
TLS Secret's keys in one folder (a projected volume, no subPath, so that a
renewed certificate reaches the pod). Everything applies only with
webConfig.enabled.
*/}}
{{- define "tcp-exporter.webConfigDir" -}}
/etc/tcp-exporter-web
{{- end }}
{{- define "tcp-exporter.webConfigKey" -}}
web-config.yml
{{- end }}

{{/*
otlp.tls: the Secret with the certificates for an https:// receiver, mounted
read-only as a whole (no subPath, so that the files a restarted pod reads
are the Secret's current ones) in a folder of its own, not under
portNamesDir, whose read-only ConfigMap mount could not hold the mount
point. otlpTlsSecret: its name when the exporter uses it (otlp.enabled,
otlp.tls.secret set), else empty; validate refuses it with http://.
*/}}
{{- define "tcp-exporter.otlpTlsDir" -}}
/etc/tcp-exporter-otlp
{{- end }}
{{- define "tcp-exporter.otlpTlsSecret" -}}
{{- $otlp := .Values.otlp | default dict }}
{{- if $otlp.enabled }}{{ ($otlp.tls | default dict).secret }}{{ end }}
{{- end }}

{{/* "true" when the exporter serves HTTPS: webConfig on, with a tlsSecret. */}}
{{- define "tcp-exporter.tls" -}}
{{- $web := .Values.webConfig | default dict }}
{{- if and $web.enabled $web.tlsSecret }}true{{ end }}
{{- end }}

{{/* "true" when the chart renders the web config's Secret (not existingSecret). */}}
{{- define "tcp-exporter.webConfigRendered" -}}
{{- $web := .Values.webConfig | default dict }}
{{- if and $web.enabled (not $web.existingSecret) }}true{{ end }}
{{- end }}

{{/* The Secret that holds web-config.yml. */}}
{{- define "tcp-exporter.webConfigSecret" -}}
{{- $web := .Values.webConfig | default dict }}
{{- $web.existingSecret | default (printf "%s-web-config" (include "tcp-exporter.fullname" .)) }}
{{- end }}

{{/*
webConfig.config as the file the exporter reads, written by toYaml from a
dict built here: with a tlsSecret, cert_file and key_file name its files
(relative to the file's folder, where they are mounted) unless the config
names others (merge keeps the config's own). An empty or null section is
left out, as if not given. The checksum annotation on the pods is taken of
this text; toYaml sorts the keys, so equal configs give equal text.
*/}}
{{- define "tcp-exporter.webConfigYaml" -}}
{{- $web := .Values.webConfig | default dict }}
{{- $config := $web.config | default dict }}
{{- $out := dict }}
{{- /* A copy: merge writes into its first argument, here the values. */}}
{{- $tls := deepCopy ($config.tls_server_config | default dict) }}
{{- if $web.tlsSecret }}
{{- $tls = merge $tls (dict "cert_file" "tls.crt" "key_file" "tls.key") }}
{{- end }}
{{- with $tls }}
{{- $_ := set $out "tls_server_config" . }}
{{- end }}
{{- with ($config.http_server_config | default dict).headers }}
{{- $_ := set $out "http_server_config" (dict "headers" .) }}
{{- end }}
{{- with $config.basic_auth_users }}
{{- $_ := set $out "basic_auth_users" . }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
What the exporter captures on. captureMode: capture.mode (pods when unset),
or "interfaces" when the older top-level `interfaces` list is set, which
wins (values.yaml). interfaces: the -i values, as a YAML list.
*/}}
{{- define "tcp-exporter.captureMode" -}}
{{- if .Values.interfaces }}interfaces{{ else }}{{ (.Values.capture | default dict).mode | default "pods" }}{{ end }}
{{- end }}

{{- define "tcp-exporter.interfaces" -}}
{{- $mode := include "tcp-exporter.captureMode" . }}
{{- if .Values.interfaces }}
{{- toYaml .Values.interfaces }}
{{- else if eq $mode "interfaces" }}
{{- toYaml ((.Values.capture | default dict).interfaces | default list) }}
{{- else }}
{{- toYaml (list $mode) }}
{{- end }}
{{- end }}

{{/*
The container's arguments, from the values: a flag is left out when its
value is null or empty, so that the exporter's own default applies.
Numbers go through int64 so that large ones do not print as 1e+06.
With capture.mode pods, every pod interface gets a capture of its own, so
the per-interface buffers left unset are small (values.yaml): pcap 1 MiB,
af-packet one worker with two 1 MiB blocks, xdp a 4 MiB ring.
*/}}
{{- define "tcp-exporter.args" -}}
{{- $v := .Values }}
{{- $pods := eq (include "tcp-exporter.captureMode" .) "pods" }}
{{- range include "tcp-exporter.interfaces" . | fromYamlArray }}
- -i
- {{ . | quote }}
{{- end }}
{{- $bufferSize := $v.bufferSizeMiB }}
{{- if and $pods (kindIs "invalid" $bufferSize) (eq $v.backend "pcap") }}
{{- $bufferSize = 1 }}
{{- end }}
{{- if not (kindIs "invalid" $bufferSize) }}
- --buffer-size
- {{ $bufferSize | int64 | quote }}
{{- end }}
- --port
- {{ $v.port | int64 | quote }}
- --listen
- {{ $v.listen | quote }}
{{- if ($v.webConfig | default dict).enabled }}
- --web.config.file
- {{ printf "%s/%s" (include "tcp-exporter.webConfigDir" .) (include "tcp-exporter.webConfigKey" .) | quote }}
{{- end }}
{{- with $v.filter }}
- --filter
- {{ . | quote }}
{{- end }}
{{- if ne $v.backend "pcap" }}
- --backend
- {{ $v.backend | quote }}
{{- end }}
{{- if eq $v.backend "af-packet" }}
{{- $afPacket := deepCopy ($v.afPacket | default dict) }}
{{- if and $pods (kindIs "invalid" $afPacket.workers) }}
{{- $_ := set $afPacket "workers" 1 }}
{{- end }}
{{- if and $pods (kindIs "invalid" $afPacket.ringBlocks) }}
{{- $_ := set $afPacket "ringBlocks" 2 }}
{{- end }}
{{- range $flag, $key := dict "--workers" "workers" "--ring-block-size" "ringBlockSizeKiB" "--ring-blocks" "ringBlocks" "--ring-timeout" "ringTimeoutMs" }}
{{- $value := index $afPacket $key }}
{{- if not (kindIs "invalid" $value) }}
- {{ $flag }}
- {{ $value | int64 | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq $v.backend "xdp" }}
{{- $xdp := $v.xdp | default dict }}
{{- with $xdp.mode }}
- --xdp-mode
- {{ . | quote }}
{{- end }}
{{- $ringSize := $xdp.ringSizeMiB }}
{{- if and $pods (kindIs "invalid" $ringSize) }}
{{- $ringSize = 4 }}
{{- end }}
{{- if not (kindIs "invalid" $ringSize) }}
- --xdp-ring-size
- {{ $ringSize | int64 | quote }}
{{- end }}
{{- end }}
{{- with $v.labels }}
- --labels
- {{ join "," . | quote }}
{{- end }}
{{- if include "tcp-exporter.kubernetes" . }}
- --kubernetes
{{- end }}
{{- $istio := $v.istio | default dict }}
{{- if $istio.enabled }}
- --istio-metrics
{{- with $istio.clusterName }}
- --cluster-name
- {{ . | quote }}
{{- end }}
{{- end }}
{{- if not (kindIs "invalid" $v.maxFlows) }}
- --max-flows
- {{ $v.maxFlows | int64 | quote }}
{{- end }}
{{- if not (kindIs "invalid" $v.maxInterfaces) }}
- --max-interfaces
- {{ $v.maxInterfaces | int64 | quote }}
{{- end }}
{{- if not (kindIs "invalid" $v.flowIdleTimeout) }}
- --flow-idle-timeout
- {{ $v.flowIdleTimeout | int64 | quote }}
{{- end }}
{{- if not (kindIs "invalid" $v.maxSeries) }}
- --max-series
- {{ $v.maxSeries | int64 | quote }}
{{- end }}
{{- if not (kindIs "invalid" $v.seriesTTL) }}
- --series-ttl
- {{ include "tcp-exporter.duration" $v.seriesTTL | quote }}
{{- end }}
{{- with $v.aggregateCidr }}
- --aggregate-cidr
- {{ join "," . | quote }}
{{- end }}
{{- $portNames := $v.portNames | default dict }}
{{- range $portNames.presets }}
- --port-names
- {{ . | quote }}
{{- end }}
{{- if $portNames.custom }}
- --port-names
- {{ printf "%s/%s" (include "tcp-exporter.portNamesDir" .) (include "tcp-exporter.portNamesKey" .) | quote }}
{{- end }}
{{- $long := $v.longConnections | default dict }}
{{- if not (kindIs "invalid" $long.age) }}
- --long-connections
- {{ include "tcp-exporter.duration" $long.age | quote }}
{{- if not (kindIs "invalid" $long.max) }}
- --max-long-connections
- {{ $long.max | int64 | quote }}
{{- end }}
{{- end }}
{{- $flowLog := $v.flowLog | default dict }}
{{- if $flowLog.enabled }}
- --flow-log
- "-"
{{- if not (kindIs "invalid" $flowLog.interval) }}
- --flow-log-interval
- {{ include "tcp-exporter.duration" $flowLog.interval | quote }}
{{- end }}
{{- end }}
{{- $table := $v.connectionTable | default dict }}
{{- if eq $table.enabled false }}
- --no-connection-table
{{- end }}
{{- $otlp := $v.otlp | default dict }}
{{- if $otlp.enabled }}
- --otlp-endpoint
- {{ $otlp.endpoint | quote }}
{{- with $otlp.protocol }}
- --otlp-protocol
- {{ . | quote }}
{{- end }}
{{- if not (kindIs "invalid" $otlp.interval) }}
- --otlp-interval
- {{ include "tcp-exporter.duration" $otlp.interval | quote }}
{{- end }}
{{- if not (kindIs "invalid" $otlp.timeout) }}
- --otlp-timeout
- {{ include "tcp-exporter.duration" $otlp.timeout | quote }}
{{- end }}
{{- /* range takes a map's keys in sorted order: equal maps, equal args. */}}
{{- range $name, $value := $otlp.headers }}
- --otlp-header
- {{ printf "%s=%s" $name $value | quote }}
{{- end }}
{{- if $otlp.logs }}
- --otlp-logs
{{- if not (kindIs "invalid" $otlp.logQueue) }}
- --otlp-log-queue
- {{ $otlp.logQueue | int64 | toString | quote }}
{{- end }}
{{- end }}
{{- $otlpTls := $otlp.tls | default dict }}
{{- if $otlpTls.secret }}
{{- $dir := include "tcp-exporter.otlpTlsDir" . }}
{{- with $otlpTls.ca }}
- --otlp-ca
- {{ printf "%s/%s" $dir . | quote }}
{{- end }}
{{- if $otlpTls.clientCertificate }}
- --otlp-cert
- {{ printf "%s/tls.crt" $dir | quote }}
- --otlp-key
- {{ printf "%s/tls.key" $dir | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if not (kindIs "invalid" $v.snaplen) }}
- --snaplen
- {{ $v.snaplen | int64 | quote }}
{{- end }}
{{- if $v.promisc }}
- --promisc
{{- end }}
{{- range $v.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/*
"true" when the exporter needs to know whose pod interface saw a
connection: labels names reporter, or labels is empty and
kubernetes.enabled is on (the exporter's default set with --kubernetes has
it), or istio.enabled (Istio's source and destination reporters). A
--labels in extraArgs is not looked at.
*/}}
{{- define "tcp-exporter.reporter" -}}
{{- if (.Values.istio | default dict).enabled }}true
{{- else if .Values.labels }}
{{- if has "reporter" .Values.labels }}true{{ end }}
{{- else if include "tcp-exporter.kubernetes" . }}true
{{- end }}
{{- end }}

{{/*
Capabilities added after dropping ALL, measured (values.yaml says how): the
pcap and af-packet backends open an AF_PACKET socket (NET_RAW; libpcap's
ring and promiscuous mode need nothing more), and with the reporter label
they read the addresses of each veth's other end in the pod's network
namespace, which the kernel answers only with NET_ADMIN. The xdp backend
opens no packet socket: it creates maps and loads programs (BPF) of
networking program types (NET_ADMIN, which also serves the reporter label),
and needs PERFMON, without which the verifier's Spectre hardening refuses
the programs' packet pointer arithmetic.
*/}}
{{- define "tcp-exporter.capabilities" -}}
{{- $caps := list "NET_RAW" }}
{{- if eq .Values.backend "xdp" }}
{{- $caps = list "BPF" "NET_ADMIN" "PERFMON" }}
{{- else if include "tcp-exporter.reporter" . }}
{{- $caps = list "NET_RAW" "NET_ADMIN" }}
{{- end }}
{{- $caps = concat $caps .Values.securityContext.extraCapabilities | uniq }}
{{- toYaml $caps }}
{{- end }}

{{/*
Settings the exporter would refuse at start, refused when rendering instead,
with the reason: a DaemonSet whose pods exit at once helps nobody. The schema
checks each value alone; these are the combinations, and a port name's
length in bytes, which the exporter bounds and JSON Schema cannot (its
maxLength counts characters).
*/}}
{{- define "tcp-exporter.validate" -}}
{{- $v := .Values }}
{{- if include "tcp-exporter.kubernetes" . }}
{{- if and (not $v.serviceAccount.create) (not $v.serviceAccount.name) }}
{{- fail "kubernetes.enabled with serviceAccount.create false needs serviceAccount.name: the chart binds its ClusterRole (read pods, services and nodes) to that account, and would otherwise bind the namespace's \"default\" one, which every pod without an account of its own uses" }}
{{- end }}
{{- else }}
{{- $needCluster := include "tcp-exporter.kubernetesLabels" . | fromYamlArray }}
{{- range $v.labels }}
{{- if has . $needCluster }}
{{- fail (printf "labels: %s comes from the cluster and needs kubernetes.enabled (the exporter refuses it without --kubernetes)" .) }}
{{- end }}
{{- end }}
{{- if ($v.istio | default dict).enabled }}
{{- fail "istio.enabled needs kubernetes.enabled: Istio's labels name workloads, which come from the cluster" }}
{{- end }}
{{- end }}
{{- range $port, $name := ($v.portNames | default dict).custom }}
{{- if gt (len $name) 64 }}
{{- fail (printf "portNames.custom: the name of port %s is %d bytes long (UTF-8); the exporter takes at most 64" $port (len $name)) }}
{{- end }}
{{- end }}
{{- $web := $v.webConfig | default dict }}
{{- if $web.enabled }}
{{- $config := $web.config | default dict }}
{{- $tls := $config.tls_server_config | default dict }}
{{- if and $config $web.existingSecret }}
{{- fail "webConfig: set config or existingSecret, not both (existingSecret holds the whole web config)" }}
{{- end }}
{{- if not (or $config $web.existingSecret $web.tlsSecret) }}
{{- fail "webConfig.enabled needs something to serve with: config (basic_auth_users, headers, TLS settings), existingSecret, or tlsSecret (HTTPS)" }}
{{- end }}
{{- if and $config.tls_server_config (not $web.tlsSecret) }}
{{- fail "webConfig.config.tls_server_config needs webConfig.tlsSecret: the certificate and key come from that Secret (mounted next to the web config as tls.crt and tls.key)" }}
{{- end }}
{{- $clientAuth := $tls.client_auth_type | default "NoClientCert" }}
{{- if eq $clientAuth "RequireAndVerifyClientCert" }}
{{- fail "webConfig.config.tls_server_config.client_auth_type RequireAndVerifyClientCert would refuse the kubelet's probes, which present no client certificate: use VerifyClientCertIfGiven (a certificate given is still verified), with basic_auth_users to protect /metrics" }}
{{- end }}
{{- if and (ne $clientAuth "NoClientCert") (not $tls.client_ca_file) }}
{{- fail (printf "webConfig.config.tls_server_config.client_auth_type %s needs client_ca_file (e.g. ca.crt, the tlsSecret's CA)" $clientAuth) }}
{{- end }}
{{- if and $tls.client_ca_file (eq $clientAuth "NoClientCert") }}
{{- fail "webConfig.config.tls_server_config: client_ca_file is set but client_auth_type is NoClientCert; set client_auth_type: VerifyClientCertIfGiven" }}
{{- end }}
{{- if and (eq ($tls.min_version | default "") "TLS13") (eq ($tls.max_version | default "") "TLS12") }}
{{- fail "webConfig.config.tls_server_config: min_version TLS13 is above max_version TLS12" }}
{{- end }}
{{- if $config.basic_auth_users }}
{{- range $key, $kind := dict "serviceMonitor" "ServiceMonitor" "podMonitor" "PodMonitor" }}
{{- if and (include "tcp-exporter.monitoringObject" (dict "root" $ "key" $key "kind" $kind)) (not (index $v $key).basicAuth) }}
{{- fail (printf "webConfig.config.basic_auth_users is set, but %s.basicAuth is empty: Prometheus would be refused (401). Give it the user and password from a Secret: {username: {name: SECRET, key: username}, password: {name: SECRET, key: password}}" $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- $capture := $v.capture | default dict }}
{{- $mode := $capture.mode | default "pods" }}
{{- if $v.interfaces }}
{{- if $capture.interfaces }}
{{- fail "interfaces and capture.interfaces are both set: move the list to capture.interfaces (with capture.mode interfaces) and remove the older top-level interfaces" }}
{{- end }}
{{- if has $mode (list "uplink" "any") }}
{{- fail (printf "capture.mode %s and the older top-level interfaces list are both set: remove interfaces, or use capture: {mode: interfaces, interfaces: [...]}" $mode) }}
{{- end }}
{{- else if eq $mode "interfaces" }}
{{- if not $capture.interfaces }}
{{- fail "capture.mode interfaces needs capture.interfaces, the list of -i values, e.g. [eth0] or [eth0, \"veth*\"]" }}
{{- end }}
{{- else if $capture.interfaces }}
{{- fail (printf "capture.interfaces is read only with capture.mode interfaces, and capture.mode is %s: set capture.mode: interfaces, or remove the list" $mode) }}
{{- end }}
{{- $otlp := $v.otlp | default dict }}
{{- if $otlp.enabled }}
{{- if not $otlp.endpoint }}
{{- fail "otlp.enabled needs otlp.endpoint, the receiver's URL: for an OpenTelemetry Collector on each node with hostPort 4317, http://$(POD_IP):4317 (the pods run on the host network, so POD_IP is the node's address)" }}
{{- end }}
{{- $otlpTls := $otlp.tls | default dict }}
{{- if and (not (hasPrefix "https://" $otlp.endpoint)) (or $otlpTls.secret $otlpTls.clientCertificate) }}
{{- fail (printf "otlp.tls.secret and otlp.tls.clientCertificate are for an https:// endpoint, and otlp.endpoint is %s (the exporter refuses --otlp-ca, --otlp-cert and --otlp-key without TLS): use https://, or leave tls.secret empty and clientCertificate false" $otlp.endpoint) }}
{{- end }}
{{- if and $otlpTls.clientCertificate (not $otlpTls.secret) }}
{{- fail "otlp.tls.clientCertificate needs otlp.tls.secret, a Secret whose tls.crt and tls.key are the client certificate and its key (e.g. the one cert-manager makes for a Certificate)" }}
{{- end }}
{{- if and $otlpTls.secret (not $otlpTls.ca) (not $otlpTls.clientCertificate) }}
{{- fail (printf "otlp.tls.secret %s would be mounted but nothing in it read: tls.ca is empty (the system's roots check the receiver) and tls.clientCertificate false; set ca to the key of its CA certificates (e.g. ca.crt), or clientCertificate: true, or leave secret empty" $otlpTls.secret) }}
{{- end }}
{{- if ne ($otlp.protocol | default "grpc") "http" }}
{{- range $name, $_ := $otlp.headers }}
{{- if hasSuffix "-bin" (lower $name) }}
{{- fail (printf "otlp.headers: %s names a binary gRPC header (a name ending in -bin), which the exporter cannot send over OTLP/gRPC: every export would fail; rename it, or use protocol http" $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq $v.backend "xdp" }}
{{- if has "any" (include "tcp-exporter.interfaces" . | fromYamlArray) }}
{{- fail "backend xdp needs named interfaces or globs, not `any`: use capture.mode pods or uplink, or list the node's interfaces, e.g. capture: {mode: interfaces, interfaces: [eth0]}. The exporter attaches its eBPF programs to each one and refuses `any`." }}
{{- end }}
{{- if $v.filter }}
{{- fail "backend xdp takes no filter (its programs hand over every TCP segment, and the exporter refuses -f with it): leave filter empty, or use backend pcap or af-packet" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Whether a Prometheus Operator object of kind `kind` is rendered: enabled, and the cluster serves the kind or `force` says to. */}}
{{- define "tcp-exporter.monitoringObject" -}}
{{- $cfg := index .root.Values .key }}
{{- if and $cfg.enabled (or $cfg.force (.root.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" .kind))) }}true{{ end }}
{{- end }}
