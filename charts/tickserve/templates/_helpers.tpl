{{/* Prefix of every object name except the InferenceServices, which are named after their models. */}}
{{- define "tickserve.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "tickserve.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: tickserve
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Labels that select one component's pods (stable across upgrades). Call with (list $ "component"). */}}
{{- define "tickserve.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ $root.Chart.Name }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "tickserve.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}

{{- define "tickserve.serviceAccountName" -}}
{{- printf "%s-%s" (include "tickserve.fullname" (index . 0)) (index . 1) -}}
{{- end -}}

{{/* Model versions are MLflow registry versions; they name Standard-mode predictors (v<version>) and label pods. */}}
{{- define "tickserve.version" -}}
{{- toString . -}}
{{- end -}}

{{- define "tickserve.standardMode" -}}
{{- if eq .Values.deploymentMode "Standard" }}true{{ end -}}
{{- end -}}

{{/* Service that spans every predictor pod (stable and canaries) of one InferenceService, Standard mode only. */}}
{{- define "tickserve.predictorPoolName" -}}
{{- printf "%s-predictor-pool" . -}}
{{- end -}}

{{- define "tickserve.redisName" -}}
{{- printf "%s-redis" (include "tickserve.fullname" .) -}}
{{- end -}}

{{/* TICKSERVE_REDIS_URL: the in-cluster Redis, an external URL, or a Secret holding a URL with credentials. */}}
{{- define "tickserve.redisEnv" -}}
- name: TICKSERVE_REDIS_URL
{{- if .Values.redis.inCluster.enabled }}
  value: {{ printf "redis://%s.%s.svc:6379/0" (include "tickserve.redisName" .) .Release.Namespace | quote }}
{{- else if .Values.redis.external.existingSecret.name }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.external.existingSecret.name }}
      key: {{ .Values.redis.external.existingSecret.key }}
{{- else if .Values.redis.external.url }}
  value: {{ .Values.redis.external.url | quote }}
{{- else }}
{{- fail "redis: set redis.inCluster.enabled, redis.external.url or redis.external.existingSecret.name" }}
{{- end }}
{{- end -}}

{{/* Pod-level security for plain Deployments: non-root numeric user (the images' USER), default seccomp. */}}
{{- define "tickserve.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Container-level security. InferenceService components set it here only, never at pod level: Knative refuses a pod
securityContext unless its kubernetes.podspec-securitycontext flag is on, while these container fields are allowed.
*/}}
{{- define "tickserve.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Writable scratch space: the root filesystem is read-only. */}}
{{- define "tickserve.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end -}}

{{- define "tickserve.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/*
Probes on the KServe v2 health endpoints; `model` is the v2 model name. Call with (list "model" port).
Every threshold is explicit: Knative validates the probes as written (timeoutSeconds and successThreshold >= 1).
*/}}
{{- define "tickserve.v2Probes" -}}
readinessProbe:
  httpGet:
    path: /v2/models/{{ index . 0 }}/ready
    port: {{ index . 1 }}
  periodSeconds: 5
  timeoutSeconds: 2
  successThreshold: 1
  failureThreshold: 3
livenessProbe:
  httpGet:
    path: /v2/health/live
    port: {{ index . 1 }}
  initialDelaySeconds: 10
  periodSeconds: 10
  timeoutSeconds: 2
  successThreshold: 1
  failureThreshold: 6
{{- end -}}

{{/*
Predictor pod fields shared by the stable predictor and Standard-mode canaries, indented under spec.predictor.
Call with (dict "root" $ "model" $model "track" "stable"|"canary" "release" $model.stable|$model.canary).
The pods are labelled with model, version and track so PodMonitors can tell the canary from the stable version.
*/}}
{{- define "tickserve.predictorPodFields" -}}
{{- $root := .root -}}
{{- $values := $root.Values -}}
{{- $gpu := $values.predictor.gpu -}}
{{- $version := include "tickserve.version" .release.version -}}
labels:
  {{- include "tickserve.selectorLabels" (list $root "predictor") | nindent 2 }}
  tickserve.io/model: {{ .model.name }}
  tickserve.io/horizon: {{ .model.horizon | quote }}
  tickserve.io/model-version: {{ $version | quote }}
  tickserve.io/track: {{ .track }}
serviceAccountName: {{ default (include "tickserve.serviceAccountName" (list $root "predictor")) $values.predictor.storageServiceAccountName }}
{{- with $values.images.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- $nodeSelector := $values.predictor.nodeSelector }}
{{- $tolerations := $values.predictor.tolerations }}
{{- if $gpu.enabled }}
{{- $nodeSelector = merge (dict) $values.predictor.nodeSelector $gpu.nodeSelector }}
{{- $tolerations = concat $values.predictor.tolerations $gpu.tolerations }}
{{- end }}
{{- with $nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: kserve-container
    image: {{ include "tickserve.image" (list (ternary $values.images.predictorCuda $values.images.predictor $gpu.enabled) $root) }}
    imagePullPolicy: {{ $values.images.pullPolicy }}
    command: ["python", "-m", "tickserve.predictors"]
    args:
      - --model_name={{ .model.name }}
      - --model_dir=/mnt/models
      - --http_port=8080
      - --grpc_port=8081
    env:
      - name: STORAGE_URI
        value: {{ .release.storageUri | quote }}
      - name: PROTOCOL
        value: v2
      - name: TICKSERVE_TRACK
        value: {{ .track }}
      - name: TICKSERVE_MODEL_VERSION
        value: {{ $version | quote }}
      {{- with $values.predictor.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    ports:
      - name: http1
        containerPort: 8080
        protocol: TCP
    {{- include "tickserve.v2Probes" (list .model.name 8080) | nindent 4 }}
    resources:
      {{- $resources := deepCopy $values.predictor.resources }}
      {{- if $gpu.enabled }}
      {{- $limits := merge (dict "nvidia.com/gpu" (toString $gpu.count)) (default (dict) $resources.limits) }}
      {{- $_ := set $resources "limits" $limits }}
      {{- end }}
      {{- toYaml $resources | nindent 6 }}
    securityContext:
      {{- include "tickserve.containerSecurityContext" . | nindent 6 }}
    volumeMounts:
      {{- include "tickserve.tmpMount" . | nindent 6 }}
volumes:
  {{- include "tickserve.tmpVolume" . | nindent 2 }}
{{- end -}}
