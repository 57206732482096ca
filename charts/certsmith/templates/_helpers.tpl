{{/*
Names are fixed: certsmith is one per cluster (its ClusterRoles, its webhook
configurations certsmith.dev and its CRDs are cluster-wide), and the operator finds its
Services by these names.
*/}}

{{/* Labels of every object; the selector uses only app.kubernetes.io/name. */}}
{{- define "certsmith.labels" -}}
app.kubernetes.io/name: certsmith
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "certsmith.selectorLabels" -}}
app.kubernetes.io/name: certsmith
{{- end -}}

{{- define "certsmith.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The labels (and the keep policy) of each CRD, under its metadata. */}}
{{- define "certsmith.crdMetadata" -}}
labels:
  {{- include "certsmith.labels" . | nindent 2 }}
{{- if .Values.crds.keep }}
annotations:
  # Kept on `helm uninstall`: deleting a CRD deletes every object of its kind.
  helm.sh/resource-policy: keep
{{- end }}
{{- end -}}
