// Package manifests renders the kustomize trees under config/ with the kustomize Go API,
// so that `make build-installer`, `make bundle` and the tests need no kubectl.
package manifests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// ImagePlaceholder is the image that config/manager names; the install paths replace
// it, in the manager's image and in its --sidecar-image flag, with the released image.
const ImagePlaceholder = "controller:latest"

// Render builds the kustomization in dir exactly as `kubectl kustomize` does.
func Render(dir string) ([]byte, error) {
	opts := krusty.MakeDefaultOptions()
	// kubectl kustomize leaves the order to the kustomization, else sorts as kustomize
	// always has (Namespaces and CRDs first): so does `make deploy`.
	opts.Reorder = krusty.ReorderOptionUnspecified
	k := krusty.MakeKustomizer(opts)
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	return out, nil
}

// SetImage replaces the image placeholder with image, as `make deploy IMG=...` does.
// The images transformer of kustomize cannot do it: it rewrites the container's image
// but not the --sidecar-image argument, which must be the same image.
func SetImage(rendered []byte, image string) []byte {
	if image == "" {
		return rendered
	}
	return bytes.ReplaceAll(rendered, []byte(ImagePlaceholder), []byte(image))
}

// Decode splits a multi-document YAML (or JSON) stream into objects.
func Decode(data []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		err := r.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

// RenderObjects renders dir and decodes the result.
func RenderObjects(dir string) ([]*unstructured.Unstructured, error) {
	data, err := Render(dir)
	if err != nil {
		return nil, err
	}
	objs, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", dir, err)
	}
	return objs, nil
}

// RepoRoot walks up from the working directory to the directory holding go.mod, so that
// the generators and the tests find config/ wherever they run.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			strings.Contains(string(data), "module github.com/outrigger-dev/outrigger\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the outrigger module")
		}
		dir = parent
	}
}
