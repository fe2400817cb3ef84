{{/*
CEL validations of one spec (a TrainingRun's, a ModelDeployment's or a retraining template):
image, volume types (with "volumes"), and Secrets in env, volumes and (TrainingRun-shaped specs,
with "volumes") dataset.credentialsSecret. Call with a dict:
guard (CEL: when the check applies), spec (CEL path of the spec), field (its path in
messages), volumes (bool), ifAuthorized (bool), p (.Values.config.policy), root ($).
A false guard makes "!(guard) || ..." true, whatever the rest would evaluate to.
*/}}
{{- define "modelyard.policy.checks" -}}
{{- $g := printf "!(%s)" .guard }}
{{- $s := .spec }}
{{- $canGet := "authorizer.group('').resource('secrets').namespace(request.namespace).name(string(%s)).check('get').allowed()" }}
- expression: {{ printf "%s || !has(%s.image) || %s.image in variables.images || variables.prefixes.exists(p, string(%s.image).startsWith(p))" $g $s $s $s | quote }}
  {{- $allowed := include "modelyard.policy.allowedImages" .root }}
  messageExpression: {{ printf "'%s.image: image ' + string(%s.image) + ' is not allowed by the modelyard policy (allowed: %s)'" .field $s $allowed | quote }}
  message: {{ printf "%s.image: image is not allowed by the modelyard policy (allowed: %s)" .field $allowed | quote }}
  reason: Forbidden
{{- if .volumes }}
- expression: {{ printf "%s || !has(%s.volumes) || %s.volumes.all(v, v.all(k, k == 'name' || k in variables.volumeTypes))" $g $s $s | quote }}
  message: {{ printf "%s.volumes: a volume type is not allowed by the modelyard policy (allowed: %s)" .field (join ", " .p.allowedVolumeTypes | default "none") | quote }}
  reason: Forbidden
{{- end }}
{{- if .ifAuthorized }}
- expression: {{ printf "%s || !has(%s.env) || %s.env.all(e, !has(e.valueFrom) || !has(e.valueFrom.secretKeyRef) || %s)" $g $s $s (printf $canGet "e.valueFrom.secretKeyRef.name") | quote }}
  message: {{ printf "%s.env: valueFrom.secretKeyRef names a Secret you may not get" .field | quote }}
  reason: Forbidden
{{- if .volumes }}
- expression: {{ printf "%s || !has(%s.volumes) || %s.volumes.all(v, (!has(v.secret) || %s) && (!has(v.projected) || !has(v.projected.sources) || v.projected.sources.all(x, !has(x.secret) || %s)))" $g $s $s (printf $canGet "v.secret.secretName") (printf $canGet "x.secret.name") | quote }}
  message: {{ printf "%s.volumes: a secret volume names a Secret you may not get" .field | quote }}
  reason: Forbidden
- expression: {{ printf "%s || !has(%s.dataset) || !has(%s.dataset.credentialsSecret) || %s" $g $s $s (printf $canGet (printf "%s.dataset.credentialsSecret" $s)) | quote }}
  message: {{ printf "%s.dataset.credentialsSecret: names a Secret you may not get" .field | quote }}
  reason: Forbidden
{{- end }}
{{- else }}
- expression: {{ printf "%s || !has(%s.env) || %s.env.all(e, !has(e.valueFrom) || !has(e.valueFrom.secretKeyRef))" $g $s $s | quote }}
  message: {{ printf "%s.env: valueFrom.secretKeyRef is not allowed by the modelyard policy (config.policy.secretRefs=deny)" .field | quote }}
  reason: Forbidden
{{- if .volumes }}
- expression: {{ printf "%s || !has(%s.volumes) || %s.volumes.all(v, !has(v.secret) && (!has(v.projected) || !has(v.projected.sources) || v.projected.sources.all(x, !has(x.secret))))" $g $s $s | quote }}
  message: {{ printf "%s.volumes: volumes from Secrets are not allowed by the modelyard policy (config.policy.secretRefs=deny)" .field | quote }}
  reason: Forbidden
- expression: {{ printf "%s || !has(%s.dataset) || !has(%s.dataset.credentialsSecret)" $g $s $s | quote }}
  message: {{ printf "%s.dataset.credentialsSecret: Secrets in specs are not allowed by the modelyard policy (config.policy.secretRefs=deny)" .field | quote }}
  reason: Forbidden
{{- end }}
{{- end }}
{{- end }}

{{/* Human list of allowed images for messages: the configured ones, then prefixes with "*". */}}
{{- define "modelyard.policy.allowedImages" -}}
{{- $items := list (include "modelyard.trainingImage" .) (include "modelyard.servingImage" .) }}
{{- range .Values.config.policy.allowedImagePrefixes }}{{ $items = append $items (printf "%s*" .) }}{{ end }}
{{- join ", " $items }}
{{- end }}
