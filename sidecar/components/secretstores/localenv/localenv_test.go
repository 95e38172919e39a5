package localenv

import (
	"context"
	"reflect"
	"testing"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/secretstores"
)

func newStore(t *testing.T, prefix string) *Store {
	t.Helper()
	env := map[string]string{
		"DB_PASSWORD":       "pw",
		"MYAPP_DB_PASSWORD": "prefixed",
		"MYAPP_":            "only the prefix",
		"DAPR_API_TOKEN":    "sidecar secret",
		"MYAPP_DAPR_X":      "allowed: the variable is MYAPP_DAPR_X",
		"APP_API_TOKEN":     "app secret",
		"EMPTY":             "",
	}
	s := New()
	s.Environ = func() []string {
		var out []string
		for k, v := range env {
			out = append(out, k+"="+v)
		}
		return out
	}
	s.LookupEnv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	props := map[string]string{}
	if prefix != "" {
		props["prefix"] = prefix
	}
	if err := s.Init(context.Background(), components.Metadata{Name: "env", Properties: props}); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestGetSecret(t *testing.T) {
	tests := []struct {
		name, prefix, secret, want string
	}{
		{name: "set", secret: "DB_PASSWORD", want: "pw"},
		{name: "unset gives an empty value, as in Dapr", secret: "NOPE", want: ""},
		{name: "the sidecar's token is never served", secret: "DAPR_API_TOKEN", want: ""},
		{name: "nor the app's", secret: "APP_API_TOKEN", want: ""},
		{name: "prefix is prepended", prefix: "MYAPP_", secret: "DB_PASSWORD", want: "prefixed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newStore(t, tt.prefix).GetSecret(context.Background(), tt.secret, nil)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[string]string{tt.secret: tt.want}; !reflect.DeepEqual(got, want) {
				t.Errorf("GetSecret = %v, want %v", got, want)
			}
		})
	}
}

func TestBulkGetSecret(t *testing.T) {
	all, _ := newStore(t, "").BulkGetSecret(context.Background(), nil)
	if all["DB_PASSWORD"]["DB_PASSWORD"] != "pw" || all["DAPR_API_TOKEN"] != nil || all["APP_API_TOKEN"] != nil {
		t.Errorf("without prefix: %v", all)
	}
	prefixed, _ := newStore(t, "MYAPP_").BulkGetSecret(context.Background(), nil)
	want := map[string]map[string]string{
		"DB_PASSWORD": {"DB_PASSWORD": "prefixed"},
		"DAPR_X":      {"DAPR_X": "allowed: the variable is MYAPP_DAPR_X"},
	}
	if !reflect.DeepEqual(prefixed, want) {
		t.Errorf("with prefix: %v, want %v", prefixed, want)
	}
	if f := newStore(t, "").Features(); len(f) != 0 {
		t.Errorf("features = %v", f)
	}
}

func TestRegister(t *testing.T) {
	r := &components.Registry[secretstores.Store]{}
	Register(r)
	if _, err := r.Create(TypeName, ""); err != nil {
		t.Fatal(err)
	}
}
