package localfile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/secretstores"
)

const nested = `{
  "redisPassword": "s3cret",
  "db": {"user": "admin", "password": "pw", "port": 5432, "tls": true, "opts": {"ssl": "on"}},
  "hosts": ["a", "b"],
  "nothing": null
}`

func initStore(t *testing.T, content string, props map[string]string) (*Store, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "secrets.json")
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	p := map[string]string{"secretsFile": file}
	for k, v := range props {
		p[k] = v
	}
	s := New()
	return s, s.Init(context.Background(), components.Metadata{Name: "local", Properties: p})
}

func TestGetSecret(t *testing.T) {
	tests := []struct {
		name   string
		props  map[string]string
		secret string
		want   map[string]string
	}{
		{name: "top-level string", secret: "redisPassword", want: map[string]string{"redisPassword": "s3cret"}},
		{name: "nested with the default separator", secret: "db:password", want: map[string]string{"db:password": "pw"}},
		{name: "number keeps its text", secret: "db:port", want: map[string]string{"db:port": "5432"}},
		{name: "boolean", secret: "db:tls", want: map[string]string{"db:tls": "true"}},
		{name: "two levels", secret: "db:opts:ssl", want: map[string]string{"db:opts:ssl": "on"}},
		{name: "list items by index", secret: "hosts:1", want: map[string]string{"hosts:1": "b"}},
		{name: "null is empty", secret: "nothing", want: map[string]string{"nothing": ""}},
		{name: "custom separator", props: map[string]string{"nestedSeparator": "."}, secret: "db.user", want: map[string]string{"db.user": "admin"}},
		{name: "multi-valued object", props: map[string]string{"multiValued": "true"}, secret: "db",
			want: map[string]string{"user": "admin", "password": "pw", "port": "5432", "tls": "true", "opts:ssl": "on"}},
		{name: "multi-valued string", props: map[string]string{"multiValued": "true"}, secret: "redisPassword",
			want: map[string]string{"redisPassword": "s3cret"}},
		{name: "multi-valued list", props: map[string]string{"multiValued": "true"}, secret: "hosts",
			want: map[string]string{"0": "a", "1": "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := initStore(t, nested, tt.props)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.GetSecret(context.Background(), tt.secret, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("GetSecret(%q) = %v, want %v", tt.secret, got, tt.want)
			}
		})
	}
}

func TestMissingSecretAndFeatures(t *testing.T) {
	s, err := initStore(t, nested, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSecret(context.Background(), "db", nil); !errors.Is(err, secretstores.ErrSecretNotFound) || !strings.Contains(err.Error(), `"db"`) {
		t.Errorf("an object is not a secret when single-valued: %v", err)
	}
	if len(s.Features()) != 0 {
		t.Errorf("single-valued features = %v", s.Features())
	}
	all, err := s.BulkGetSecret(context.Background(), nil)
	if err != nil || len(all) != 9 || all["db:user"]["db:user"] != "admin" {
		t.Errorf("BulkGetSecret = %v, %v", all, err)
	}
	all["db:user"]["db:user"] = "changed"
	if v, _ := s.GetSecret(context.Background(), "db:user", nil); v["db:user"] != "admin" {
		t.Error("a caller can change the store's secrets")
	}

	m, err := initStore(t, nested, map[string]string{"multiValued": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if !secretstores.Has(m, secretstores.FeatureMultipleKeyValuesPerSecret) {
		t.Errorf("multi-valued features = %v", m.Features())
	}
	if _, err := m.GetSecret(context.Background(), "nothing", nil); !errors.Is(err, secretstores.ErrSecretNotFound) {
		t.Errorf("a top-level null is not a secret: %v", err)
	}
}

func TestInitErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		props   map[string]string
		want    string
	}{
		{name: "not JSON", content: "redisPassword: x", want: "is not a JSON object"},
		{name: "a list", content: `["a"]`, want: "is not a JSON object"},
		{name: "two entries flatten to one name", content: `{"a:b": "x", "a": {"b": "y"}}`, want: `flatten to the secret name "a:b"`},
		{name: "missing file", props: map[string]string{"secretsFile": "/does/not/exist.json"}, want: "read secrets file"},
		{name: "no secretsFile", props: map[string]string{"secretsFile": ""}, want: `"secretsFile" is required`},
		{name: "bad multiValued", content: `{}`, props: map[string]string{"multiValued": "maybe"}, want: `"multiValued"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := initStore(t, tt.content, tt.props)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Init error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// A relative secretsFile is read from the working directory, as in Dapr.
func TestRelativePath(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "s.json"), []byte(`{"k": "v"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	s := New()
	if err := s.Init(context.Background(), components.Metadata{Properties: map[string]string{"secretsFile": "s.json"}}); err != nil {
		t.Fatal(err)
	}
	if v, err := s.GetSecret(context.Background(), "k", nil); err != nil || v["k"] != "v" {
		t.Errorf("GetSecret = %v, %v", v, err)
	}
}

func TestRegister(t *testing.T) {
	r := &components.Registry[secretstores.Store]{}
	Register(r)
	if _, err := r.Create(TypeName, "v1"); err != nil {
		t.Fatal(err)
	}
}
