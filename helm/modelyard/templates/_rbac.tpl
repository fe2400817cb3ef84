{{/*
RBAC rules of the operator, in two groups:
- framework: what kopf itself needs to run (resource discovery, events);
- application: what modelyard's reconcilers read and write.
Verbs are listed explicitly (never "*"); each resource is one the operator code touches, and
tests/unit/chart/test_chart_rbac.py keeps this list and the operator code in step.
*/}}

{{/* Framework, cluster-scoped, both modes. */}}
{{- define "modelyard.rbac.frameworkClusterRules" -}}
# framework: kopf watches CRDs to notice resources appearing and disappearing; the operator
# reads the ServiceMonitor CRD to decide whether to create ServiceMonitors.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/* Framework, namespaced mode only (cluster-wide, kopf never looks at namespaces). */}}
{{- define "modelyard.rbac.frameworkNamespacedModeRules" -}}
# framework: with a namespace list, kopf lists and watches namespaces to start and stop its
# watches as the listed namespaces are created and deleted.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}

{{/* Framework, per watched namespace (or cluster-wide). */}}
{{- define "modelyard.rbac.frameworkNamespacedRules" -}}
# framework: kopf and the reconcilers post Events about handler progress and transitions.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* Application rules: the custom resources and every child kind the operator manages. */}}
{{- define "modelyard.rbac.applicationRules" -}}
# application: the custom resources. kopf lists and watches them and patches its progress
# annotations; the reconcilers read them; drift-triggered retraining creates TrainingRuns.
- apiGroups: ["modelyard.io"]
  resources: ["trainingruns"]
  verbs: ["get", "list", "watch", "patch", "create"]
- apiGroups: ["modelyard.io"]
  resources: ["modeldeployments"]
  verbs: ["get", "list", "watch", "patch"]
# application: status subresources (merge patches, only when the status changed).
- apiGroups: ["modelyard.io"]
  resources: ["trainingruns/status", "modeldeployments/status"]
  verbs: ["patch"]
# application: children carry ownerReferences with blockOwnerDeletion; clusters running the
# OwnerReferencesPermissionEnforcement admission plugin (e.g. OpenShift) only allow that to
# whoever may update the owner's finalizers.
- apiGroups: ["modelyard.io"]
  resources: ["trainingruns/finalizers", "modeldeployments/finalizers"]
  verbs: ["update"]
# application: training Jobs are created once (never re-applied) and watched for completion.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create"]
# application: training and serving pods are listed for exit codes, termination messages
# and rollout state; training pods (by label, server-side) are watched so their runs follow
# them at once.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# application: serving Deployments, server-side applied (an apply that creates needs create)
# and watched for rollout progress; a Canary/Shadow candidate Deployment is deleted when it
# is promoted or rejected.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# application: serving Services, server-side applied (read first: an apply that would change
# nothing is skipped); a Shadow rollout's <md>-shadow Service is deleted when the shadow ends.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "create", "patch", "delete"]
# application: drift is read from each serving pod, found through the Service's EndpointSlices.
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list"]
# application: HPAs, PDBs and ServiceMonitors exist only while the spec asks for them
# (autoscaling set, replicas > 1, monitoring on), so they are also read and deleted.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "create", "patch", "delete"]
{{- end }}
