// Command kserve-validate runs KServe v0.20.0's InferenceService validating webhook (InferenceServiceValidator,
// the check the KServe controller's admission webhook applies) without a cluster. tickserve's k8s test tier feeds it
// the InferenceServices the chart renders, and old/new pairs for updates such as a canary promotion.
//
// Input (stdin): a JSON list of {"old": <InferenceService or null>, "new": <InferenceService>}; a null "old" is a
// create, otherwise an update. Output (stdout): a JSON list, one {"error": "<KServe's refusal>" or null} per entry.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/kserve/kserve/pkg/apis/serving/v1beta1"
)

type review struct {
	Old *v1beta1.InferenceService `json:"old"`
	New v1beta1.InferenceService  `json:"new"`
}

type verdict struct {
	Error *string `json:"error"`
}

func main() {
	var reviews []review
	if err := json.NewDecoder(os.Stdin).Decode(&reviews); err != nil {
		fmt.Fprintf(os.Stderr, "kserve-validate: stdin is not a JSON list of {old, new} InferenceServices: %v\n", err)
		os.Exit(2)
	}
	validator := &v1beta1.InferenceServiceValidator{}
	verdicts := make([]verdict, len(reviews))
	for i := range reviews {
		var err error
		if reviews[i].Old == nil {
			_, err = validator.ValidateCreate(context.Background(), &reviews[i].New)
		} else {
			_, err = validator.ValidateUpdate(context.Background(), reviews[i].Old, &reviews[i].New)
		}
		if err != nil {
			message := err.Error()
			verdicts[i].Error = &message
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(verdicts); err != nil {
		os.Exit(2)
	}
}
