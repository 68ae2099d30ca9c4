// Command knative-validate runs Knative Serving's own admission validation (serving.ValidatePodSpec, the check the
// Knative webhook applies to every Revision) on pod specs, without a cluster. tickserve's k8s test tier feeds it the
// predictor and transformer pod specs the chart renders for Knative mode, to prove they are accepted with Knative's
// default feature flags and that GPU scheduling needs exactly the flags the README names.
//
// Input (stdin): a JSON list of PodSpecs. Flags: -features "flag1 flag2" enables Knative config-features flags.
// Output (stdout): a JSON list, one entry per spec: {"error": "<Knative's refusal>" or null, "warning": "..." or
// null}; warnings are what the webhook returns alongside an admitted object.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"knative.dev/pkg/apis"
	"knative.dev/serving/pkg/apis/config"
	"knative.dev/serving/pkg/apis/serving"
)

type result struct {
	Error   *string `json:"error"`
	Warning *string `json:"warning"`
}

func message(fieldErr *apis.FieldError) *string {
	if fieldErr == nil {
		return nil
	}
	text := fieldErr.Error()
	return &text
}

func main() {
	features := flag.String("features", "", "space-separated config-features flags to enable")
	flag.Parse()

	var specs []corev1.PodSpec
	if err := json.NewDecoder(os.Stdin).Decode(&specs); err != nil {
		fmt.Fprintf(os.Stderr, "knative-validate: stdin is not a JSON list of PodSpecs: %v\n", err)
		os.Exit(2)
	}
	enabled := map[string]string{}
	for _, name := range strings.Fields(*features) {
		enabled[name] = "enabled"
	}
	parsed, err := config.NewFeaturesConfigFromMap(enabled)
	if err != nil {
		fmt.Fprintf(os.Stderr, "knative-validate: bad -features: %v\n", err)
		os.Exit(2)
	}
	cfg := config.FromContextOrDefaults(context.Background())
	cfg.Features = parsed
	ctx := config.ToContext(context.Background(), cfg)

	results := make([]result, len(specs))
	for i, spec := range specs {
		if fieldErr := serving.ValidatePodSpec(ctx, spec); fieldErr != nil {
			results[i].Error = message(fieldErr.Filter(apis.ErrorLevel))
			results[i].Warning = message(fieldErr.Filter(apis.WarningLevel))
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		os.Exit(2)
	}
}
