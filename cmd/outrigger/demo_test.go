package main

import (
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hellokubernetes "github.com/outrigger-dev/outrigger/examples/hello-kubernetes"
)

// The demo applies the seed's manifests as they are, so they must stay what it expects.
func TestDemoSeedManifests(t *testing.T) {
	want := map[string][]string{
		"deploy/node.yaml":   {"Service/nodeapp", "Deployment/nodeapp"},
		"deploy/python.yaml": {"Deployment/pythonapp"},
		"deploy/redis.yaml":  {"Component/statestore"},
	}
	images := map[string]bool{}
	for file, kinds := range want {
		objs, err := readManifests(hellokubernetes.Deploy, file)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, u := range objs {
			got = append(got, u.GetKind()+"/"+u.GetName())
			if u.GetKind() == "Deployment" {
				for _, c := range containerImages(u.Object) {
					images[c] = true
				}
			}
		}
		if len(got) != len(kinds) {
			t.Fatalf("%s: %v, want %v", file, got, kinds)
		}
		for i := range kinds {
			if got[i] != kinds[i] {
				t.Errorf("%s: %v, want %v", file, got, kinds)
			}
		}
	}
	for _, img := range []string{nodeAppImage, pythonAppImage} {
		if !images[img] {
			t.Errorf("the seed's Deployments do not use %s, which the demo maps to a sample app (have %v)", img, images)
		}
	}
}

func containerImages(obj map[string]any) []string {
	spec, _ := obj["spec"].(map[string]any)
	tmpl, _ := spec["template"].(map[string]any)
	ps, _ := tmpl["spec"].(map[string]any)
	cs, _ := ps["containers"].([]any)
	var images []string
	for _, c := range cs {
		if m, ok := c.(map[string]any); ok {
			images = append(images, m["image"].(string))
		}
	}
	return images
}

func TestDemoStateStore(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		choice, typ, key, value string
	}{
		{"redis", "state.redis", "redisHost", "localhost:6379"},
		{"sqlite", "state.sqlite", "connectionString", filepath.Join(dir, "state.db")},
	} {
		t.Run(tt.choice, func(t *testing.T) {
			d := &demo{opts: demoOptions{stateStore: tt.choice, dir: dir}}
			u, why, err := d.stateStore()
			if err != nil {
				t.Fatal(err)
			}
			spec := u.Object["spec"].(map[string]any)
			md := spec["metadata"].([]any)
			if spec["type"] != tt.typ || len(md) != 1 || md[0].(map[string]any)["name"] != tt.key || md[0].(map[string]any)["value"] != tt.value {
				t.Errorf("statestore %v (%s)", u.Object, why)
			}
			if u.GetName() != "statestore" || u.Object["auth"] != nil {
				t.Errorf("want the seed's statestore without its in-cluster password: %v", u.Object)
			}
		})
	}
}

func TestTemplateHash(t *testing.T) {
	a := &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "node"}}}
	b := a.DeepCopy()
	if templateHash(a) != templateHash(b) {
		t.Error("equal templates hash differently")
	}
	b.Annotations = map[string]string{"dapr.io/log-level": "debug"}
	if templateHash(a) == templateHash(b) {
		t.Error("a changed template keeps its hash")
	}
}
