// Package localfile is the secretstores.local.file component: secrets read once, at
// Init, from a JSON file, for local development.
package localfile

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/metadata"
	"github.com/outrigger-dev/outrigger/sidecar/components/secretstores"
)

// Type is the component type this package implements.
const TypeName = "secretstores.local.file"

// Register adds the store to a secret store registry.
func Register(r *components.Registry[secretstores.Store]) {
	r.Register(TypeName, func() secretstores.Store { return New() })
}

// Options are Dapr's metadata of local.file.
type Options struct {
	// SecretsFile is the JSON file. As in Dapr, a relative path is resolved against the
	// sidecar's working directory, not the component file's directory.
	SecretsFile string `metadata:"secretsFile" required:"true"`
	// NestedSeparator joins the keys of nested objects into one secret name.
	NestedSeparator string `metadata:"nestedSeparator" default:":"`
	// MultiValued makes each top-level key one secret, whose nested keys (flattened with
	// NestedSeparator) are its keys.
	MultiValued bool `metadata:"multiValued" default:"false"`
}

// Store is a local.file secret store.
type Store struct {
	opts    Options
	secrets map[string]map[string]string
}

var _ secretstores.Store = (*Store)(nil)

// New returns an uninitialised store.
func New() *Store { return &Store{} }

func (s *Store) Init(_ context.Context, md components.Metadata) error {
	if err := metadata.Decode(md.Properties, &s.opts); err != nil {
		return err
	}
	data, err := os.ReadFile(s.opts.SecretsFile)
	if err != nil {
		return fmt.Errorf("read secrets file: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("secrets file %s is not a JSON object: %w", s.opts.SecretsFile, err)
	}
	s.secrets = map[string]map[string]string{}
	if !s.opts.MultiValued {
		flat := map[string]string{}
		if err := s.flatten(flat, nil, doc); err != nil {
			return err
		}
		for k, v := range flat {
			s.secrets[k] = map[string]string{k: v}
		}
		return nil
	}
	for _, k := range slices.Sorted(maps.Keys(doc)) {
		switch v := doc[k].(type) {
		case nil:
			// Dapr leaves out what is neither a string nor an object; null has no value
			// to give, so it is left out here too.
		case map[string]any, []any:
			flat := map[string]string{}
			if err := s.flatten(flat, nil, v); err != nil {
				return err
			}
			s.secrets[k] = flat
		default:
			// Dapr drops numbers and booleans at the top level of a multi-valued file;
			// they are kept here, as single-valued secrets, which no Dapr app can miss.
			s.secrets[k] = map[string]string{k: scalarText(v)}
		}
	}
	return nil
}

// flatten turns nested objects and lists into keys joined with the separator
// ({"db": {"password": "x"}} gives "db:password"), as Dapr does, lists being indexed
// from 0.
func (s *Store) flatten(out map[string]string, prefix []string, v any) error {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if err := s.flatten(out, append(prefix, k), v[k]); err != nil {
				return err
			}
		}
	case []any:
		for i, item := range v {
			if err := s.flatten(out, append(prefix, strconv.Itoa(i)), item); err != nil {
				return err
			}
		}
	default:
		key := strings.Join(prefix, s.opts.NestedSeparator)
		if _, dup := out[key]; dup {
			// Dapr stops reading the file here without saying so; half a file of secrets
			// is worse than a clear error.
			return fmt.Errorf("secrets file %s: two entries flatten to the secret name %q (nestedSeparator %q)",
				s.opts.SecretsFile, key, s.opts.NestedSeparator)
		}
		out[key] = scalarText(v)
	}
	return nil
}

// scalarText renders a JSON scalar as its text. Dapr formats non-strings with %s, which
// turns 5 into "%!s(float64=5)"; the number's own text is what anyone would expect.
func scalarText(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func (s *Store) Features() []secretstores.Feature {
	if s.opts.MultiValued {
		return []secretstores.Feature{secretstores.FeatureMultipleKeyValuesPerSecret}
	}
	return []secretstores.Feature{}
}

func (s *Store) GetSecret(_ context.Context, name string, _ map[string]string) (map[string]string, error) {
	v, ok := s.secrets[name]
	if !ok {
		return nil, secretstores.NotFound(name)
	}
	return maps.Clone(v), nil
}

func (s *Store) BulkGetSecret(context.Context, map[string]string) (map[string]map[string]string, error) {
	out := make(map[string]map[string]string, len(s.secrets))
	for k, v := range s.secrets {
		out[k] = maps.Clone(v)
	}
	return out, nil
}

func (s *Store) Close() error { return nil }
