package injector

import (
	"encoding/json"
	"testing"
)

// BenchmarkParseAndPatch measures the pure part of an admission: the seed's nodeapp
// pod from annotations to patch operations.
func BenchmarkParseAndPatch(b *testing.B) {
	pod := nodeappPod()
	b.ReportAllocs()
	for b.Loop() {
		cfg, err := ParseAnnotations("nodeapp", pod.Annotations, testDefaults)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := BuildPatch(pod, cfg, PatchOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseAndPatchJSON adds the encoding of the operations, which the
// admission response needs, to show what the handler pays on top.
func BenchmarkParseAndPatchJSON(b *testing.B) {
	pod := nodeappPod()
	b.ReportAllocs()
	for b.Loop() {
		cfg, err := ParseAnnotations("nodeapp", pod.Annotations, testDefaults)
		if err != nil {
			b.Fatal(err)
		}
		ops, err := BuildPatch(pod, cfg, PatchOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(ops); err != nil {
			b.Fatal(err)
		}
	}
}
