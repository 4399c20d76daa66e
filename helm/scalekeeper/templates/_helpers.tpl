{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "scalekeeper.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; the release name alone when it already contains the chart name. */}}
{{- define "scalekeeper.fullname" -}}
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

{{/*
The watch RBAC (ClusterRole, or Roles in the watched namespaces) lives outside
the release namespace, so its name carries that namespace: releases of the same
name in two namespaces must not claim each other's objects.
*/}}
{{- define "scalekeeper.watchRbacName" -}}
{{- printf "%s-%s" .Release.Namespace (include "scalekeeper.fullname" .) }}
{{- end }}

{{- define "scalekeeper.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scalekeeper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scalekeeper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "scalekeeper.labels" -}}
helm.sh/chart: {{ include "scalekeeper.chart" . }}
{{ include "scalekeeper.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: scalekeeper
{{- end }}

{{- define "scalekeeper.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "scalekeeper.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "scalekeeper.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "scalekeeper.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{- define "scalekeeper.leaseName" -}}
{{- printf "%s-controller" (include "scalekeeper.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scalekeeper.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The permissions the server (list+watch cache, SetReplicas) and the controller
(reconcile DeploymentScale -> Deployment scale, status, events) need in each
watched namespace, verb by verb. Nothing here reads Secrets or Pods, deletes
anything, or updates a Deployment except through its scale subresource.
*/}}
{{- define "scalekeeper.watchRules" -}}
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["list", "watch"]
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["update"]
- apiGroups: ["scalekeeper.dev"]
  resources: ["deploymentscales"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: ["scalekeeper.dev"]
  resources: ["deploymentscales/status"]
  verbs: ["patch"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
