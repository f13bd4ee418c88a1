{{/*
Names. Kubernetes names are capped at 63 characters (DNS labels); a trailing "-" left by the cut is trimmed.
tools/chart_values.py (`fullname`) mirrors this logic for the tests: change both together.
*/}}
{{- define "kubescribe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubescribe.fullname" -}}
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

{{- define "kubescribe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels for the objects the chart writes by hand (the generated Argo objects carry hera's labels). */}}
{{- define "kubescribe.labels" -}}
helm.sh/chart: {{ include "kubescribe.chart" . }}
{{ include "kubescribe.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "kubescribe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubescribe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* ServiceAccount the workflow pods run as: <fullname>-workflow unless serviceAccount.name is set. */}}
{{- define "kubescribe.serviceAccountName" -}}
{{- default (printf "%s-workflow" (include "kubescribe.fullname" .) | trunc 63 | trimSuffix "-") .Values.serviceAccount.name }}
{{- end }}

{{/* LocalQueue name put on the Whisper template (empty: Kueue off, pods not queued). */}}
{{- define "kubescribe.whisperQueue" -}}
{{- if .Values.kueue.enabled }}{{ .Values.kueue.localQueue.name }}{{ end }}
{{- end }}

{{/* WorkloadPriorityClass label on the Whisper template (empty: none). */}}
{{- define "kubescribe.whisperPriorityClass" -}}
{{- if .Values.kueue.enabled }}{{ .Values.kueue.priorityClass.name }}{{ end }}
{{- end }}

{{/*
The accelerator resource name Kueue counts. The DAS mutating webhook rewrites every container's limit
nvidia.com/mig-<profile> -> mig.das.com/<profile> (any other nvidia.com/<x> -> mig.das.com/<x>) and writes it into
requests too (openshift/instaslice-operator next@9f4fc07 pkg/webhook/webhook.go mutatePod); Kueue builds the
Workload from the stored pod's spec (kubernetes-sigs/kueue v0.19.2 pkg/controller/jobs/pod/pod_controller.go
constructPodSet), so it sees mig.das.com/<profile>. Without DAS it is the limit name itself.
kueue.clusterQueue.quota.acceleratorResource overrides it (e.g. a future DAS that counts gpu.das.openshift.io/mem).
tools/chart_values.py (`quota_resource_name`) mirrors this logic for the tests.
*/}}
{{- define "kubescribe.quotaResource" -}}
{{- $acc := .Values.whisper.accelerator }}
{{- if .Values.kueue.clusterQueue.quota.acceleratorResource }}
{{- .Values.kueue.clusterQueue.quota.acceleratorResource }}
{{- else if eq $acc "cpu" }}
{{- else if and .Values.das.enabled (hasPrefix "nvidia.com/mig-" $acc) }}
{{- printf "mig.das.com/%s" (trimPrefix "nvidia.com/mig-" $acc) }}
{{- else if and .Values.das.enabled (hasPrefix "nvidia.com/" $acc) }}
{{- printf "mig.das.com/%s" (trimPrefix "nvidia.com/" $acc) }}
{{- else }}
{{- $acc }}
{{- end }}
{{- end }}

{{/*
"true" when the report step publishes report.json / summary.md as Argo output artifacts (empty: not). They need an
artifact repository: pipeline.reportArtifacts null follows artifactRepository.enabled (this chart's ConfigMap);
true also suits a controller-wide default repository. tools/chart_values.py (`report_artifacts_enabled`) mirrors it.
*/}}
{{- define "kubescribe.reportArtifacts" -}}
{{- if kindIs "bool" .Values.pipeline.reportArtifacts }}
{{- if .Values.pipeline.reportArtifacts }}true{{ end }}
{{- else if .Values.artifactRepository.enabled }}true{{ end }}
{{- end }}

{{/* host:port of the S3 endpoint for Argo's artifact repository (Argo wants no scheme). */}}
{{- define "kubescribe.s3HostPort" -}}
{{- default .Values.s3.endpoint .Values.artifactRepository.endpoint | trimPrefix "https://" | trimPrefix "http://" | trimSuffix "/" }}
{{- end }}

{{/* insecure (plain HTTP) unless set: derived from the endpoint's scheme. */}}
{{- define "kubescribe.s3Insecure" -}}
{{- if kindIs "bool" .Values.artifactRepository.insecure }}
{{- .Values.artifactRepository.insecure }}
{{- else }}
{{- hasPrefix "http://" (default .Values.s3.endpoint .Values.artifactRepository.endpoint) }}
{{- end }}
{{- end }}

{{/*
The objective the summarize step sends as x-gateway-inference-objective (default of the `objective` parameter).
With gateway.inferenceObjective.create it is the created object's name (inferenceObjective.name, else
gateway.objective), so the header always names the object; a different gateway.objective is refused.
tools/chart_values.py (`effective_objective`) mirrors this logic for the tests.
*/}}
{{- define "kubescribe.objective" -}}
{{- $io := .Values.gateway.inferenceObjective }}
{{- if $io.create }}
{{- $name := $io.name | default .Values.gateway.objective }}
{{- if not $name }}
{{- fail "gateway.inferenceObjective.create is true but no name is set: set gateway.inferenceObjective.name (or gateway.objective)" }}
{{- end }}
{{- if and .Values.gateway.objective (ne .Values.gateway.objective $name) }}
{{- fail (printf "gateway.objective (%s) differs from gateway.inferenceObjective.name (%s): the header must name the created InferenceObjective; set only one of them" .Values.gateway.objective $name) }}
{{- end }}
{{- $name }}
{{- else }}
{{- .Values.gateway.objective }}
{{- end }}
{{- end }}
