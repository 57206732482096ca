{{/*
Names are fixed: certsmith is one per cluster (its ClusterRoles, its webhook
configurations certsmith.dev and its CRDs are cluster-wide), and the operator finds its
Services by these names.
*/}}

{{/* Labels of every object; the selector uses only app.kubernetes.io/name. */}}
{{- define "certsmith.labels" -}}
app.kubernetes.io/name: certsmith
{{ include "certsmith.releaseLabels" . }}
{{- end -}}

{{/* The `helm test` objects': another name, so no selector of the release (the
PodDisruptionBudget, the Services) ever counts the test Pod as a replica. */}}
{{- define "certsmith.testLabels" -}}
app.kubernetes.io/name: certsmith-helm-test
{{ include "certsmith.releaseLabels" . }}
{{- end -}}

{{- define "certsmith.releaseLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Values the schema cannot relate to each other, refused naming them. */}}
{{- define "certsmith.checkValues" -}}
{{- $ports := dict -}}
{{- range $name, $port := dict "webhook.port" .Values.webhook.port "metrics.port" .Values.metrics.port "config.readinessPort" .Values.config.readinessPort "config.livenessPort" .Values.config.livenessPort -}}
{{- $key := toString $port -}}
{{- if hasKey $ports $key -}}
{{- fail (printf "%s and %s are both %s: each port must be different" (get $ports $key) $name $key) -}}
{{- end -}}
{{- $_ := set $ports $key $name -}}
{{- end -}}
{{- if and .Values.podDisruptionBudget.enabled (gt (int .Values.replicaCount) 1) (ge (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicaCount)) -}}
{{- fail (printf "podDisruptionBudget.minAvailable (%d) must be below replicaCount (%d): otherwise no replica may ever be evicted and every node drain blocks" (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicaCount)) -}}
{{- end -}}
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
