{{/*
Names. Kubernetes names are limited to 63 characters (DNS label), so every name is truncated
there, and suffixed names truncate the prefix first so the suffix always survives.
*/}}
{{- define "modelyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>", or just "<release>" when the release name already contains the chart name. */}}
{{- define "modelyard.fullname" -}}
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

{{/* Name of a component's objects: "<fullname>-<component>". Call with (list $ "component"). */}}
{{- define "modelyard.componentName" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- printf "%s-%s" (include "modelyard.fullname" $root | trunc (int (sub 62 (len $component)))) $component | trimSuffix "-" }}
{{- end }}

{{- define "modelyard.operator.fullname" -}}
{{- include "modelyard.componentName" (list . "operator") }}
{{- end }}

{{- define "modelyard.mlflow.fullname" -}}
{{- include "modelyard.componentName" (list . "mlflow") }}
{{- end }}

{{- define "modelyard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels. Selector labels never change across upgrades (a Deployment's selector is immutable), so
they carry only name, instance and component; the rest go on every object.
*/}}
{{- define "modelyard.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "modelyard.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Full label set of an object of a component. Call with (list $ "component"). */}}
{{- define "modelyard.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "modelyard.chart" $root }}
{{ include "modelyard.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: modelyard
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Name of the operator's ServiceAccount. */}}
{{- define "modelyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelyard.operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Images. An empty tag means the chart's appVersion, so chart and images move together. */}}
{{- define "modelyard.operator.image" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) }}
{{- end }}

{{- define "modelyard.trainingImage" -}}
{{- default (printf "modelyard-training:%s" .Chart.AppVersion) .Values.config.trainingImage }}
{{- end }}

{{- define "modelyard.servingImage" -}}
{{- default (printf "modelyard-serving:%s" .Chart.AppVersion) .Values.config.servingImage }}
{{- end }}

{{/*
MLflow URI the operator uses: the explicit one, else the bundled server's in-cluster DNS name.
Fails rendering when neither exists, because the operator's built-in default
(http://mlflow:5000) only works by accident.
*/}}
{{- define "modelyard.mlflowTrackingUri" -}}
{{- if .Values.config.mlflow.trackingUri }}
{{- .Values.config.mlflow.trackingUri }}
{{- else if .Values.mlflow.enabled }}
{{- printf "http://%s.%s.svc:%d" (include "modelyard.mlflow.fullname" .) .Release.Namespace (int .Values.mlflow.service.port) }}
{{- else }}
{{- fail "config.mlflow.trackingUri is required when the bundled MLflow is disabled (mlflow.enabled=false)" }}
{{- end }}
{{- end }}

{{/* Whether the operator registers its webhook in MLflow at startup ("true"/"false"). */}}
{{- define "modelyard.webhookRegister" -}}
{{- $mode := .Values.config.webhook.register }}
{{- if not .Values.config.webhook.enabled }}false
{{- else if eq $mode "always" }}true
{{- else if eq $mode "never" }}false
{{- else }}{{ .Values.mlflow.enabled }}
{{- end }}
{{- end }}

{{/* URL MLflow posts webhook events to: the operator's webhook Service unless overridden. */}}
{{- define "modelyard.webhookUrl" -}}
{{- if .Values.config.webhook.url }}
{{- .Values.config.webhook.url }}
{{- else }}
{{- printf "http://%s.%s.svc:%d%s" (include "modelyard.operator.fullname" .) .Release.Namespace (int .Values.operator.ports.webhook) .Values.config.webhook.path }}
{{- end }}
{{- end }}

{{/* Secret + key holding the webhook HMAC secret. */}}
{{- define "modelyard.webhookSecretName" -}}
{{- default (include "modelyard.componentName" (list . "webhook")) .Values.config.webhook.existingSecret }}
{{- end }}

{{/*
A random value that survives `helm upgrade`: reuse the key of an existing Secret when the
release already created one (lookup returns nothing under `helm template`, then a fresh value
is generated). Call with (list $ "secret-name" "key" length).
*/}}
{{- define "modelyard.persistentRandom" -}}
{{- $root := index . 0 }}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace (index . 1) }}
{{- if and $existing (hasKey $existing.data (index . 2)) }}
{{- index $existing.data (index . 2) | b64dec }}
{{- else }}
{{- randAlphaNum (int (index . 3)) }}
{{- end }}
{{- end }}

{{/* Namespaces that get RBAC in namespaced mode; empty list = cluster-wide. */}}
{{- define "modelyard.watchesClusterWide" -}}
{{- if .Values.config.namespaces }}false{{ else }}true{{ end }}
{{- end }}
