package routing

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
)

// event decodes JSON the way a delivered message is decoded (numbers as float64).
func event(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPath(t *testing.T) {
	widget := `{"type":"com.example.widget","source":"shop","data":{"kind":"widget","count":5,"tags":["a","b"]}}`
	gadget := `{"type":"com.example.gadget","source":"shop","data":{"kind":"gadget","count":1}}`

	tests := []struct {
		name     string
		rules    []Rule
		def      string
		event    string
		wantPath string
		wantOK   bool
		wantErr  string // substring; empty: no error
	}{
		{
			name:     "first matching rule wins",
			rules:    []Rule{{Match: `event.type == "com.example.widget"`, Path: "/widgets"}, {Match: `event.source == "shop"`, Path: "/shop"}},
			def:      "/default",
			event:    widget,
			wantPath: "/widgets", wantOK: true,
		},
		{
			name:     "order matters: an earlier broader rule shadows a later one",
			rules:    []Rule{{Match: `event.source == "shop"`, Path: "/shop"}, {Match: `event.type == "com.example.widget"`, Path: "/widgets"}},
			event:    widget,
			wantPath: "/shop", wantOK: true,
		},
		{
			name:     "falls through to a later rule",
			rules:    []Rule{{Match: `event.type == "com.example.widget"`, Path: "/widgets"}, {Match: `event.type == "com.example.gadget"`, Path: "/gadgets"}},
			def:      "/default",
			event:    gadget,
			wantPath: "/gadgets", wantOK: true,
		},
		{
			name:     "default when nothing matches",
			rules:    []Rule{{Match: `event.type == "nope"`, Path: "/nope"}},
			def:      "/default",
			event:    widget,
			wantPath: "/default", wantOK: true,
		},
		{
			name:   "no match and no default",
			rules:  []Rule{{Match: `event.type == "nope"`, Path: "/nope"}},
			event:  widget,
			wantOK: false,
		},
		{
			name:   "no rules and no default",
			event:  widget,
			wantOK: false,
		},
		{
			name:     "only a default",
			def:      "/default",
			event:    widget,
			wantPath: "/default", wantOK: true,
		},
		{
			name:     "empty match always matches, even before other rules",
			rules:    []Rule{{Match: "", Path: "/always"}, {Match: `event.type == "com.example.widget"`, Path: "/widgets"}},
			event:    widget,
			wantPath: "/always", wantOK: true,
		},
		{
			name:     "blank match is trimmed to empty",
			rules:    []Rule{{Match: "  \n\t ", Path: "/always"}},
			event:    widget,
			wantPath: "/always", wantOK: true,
		},
		{
			name:     "explicit empty path as the fallback (gRPC without routes)",
			rules:    []Rule{{Path: ""}},
			event:    widget,
			wantPath: "", wantOK: true,
		},
		{
			name:     "nested data, numbers and has()",
			rules:    []Rule{{Match: `has(event.data.count) && event.data.count > 3 && "b" in event.data.tags`, Path: "/big"}},
			def:      "/small",
			event:    widget,
			wantPath: "/big", wantOK: true,
		},
		{
			name:     "has() on a missing field is false, not an error",
			rules:    []Rule{{Match: `has(event.data.missing)`, Path: "/m"}},
			def:      "/default",
			event:    widget,
			wantPath: "/default", wantOK: true,
		},
		{
			name:     "surrounding whitespace in match",
			rules:    []Rule{{Match: "  event.data.kind == 'gadget'  ", Path: "/gadgets"}},
			event:    gadget,
			wantPath: "/gadgets", wantOK: true,
		},
		{
			name:    "missing key is an error, not a miss",
			rules:   []Rule{{Match: `event.data.missing == "x"`, Path: "/x"}},
			def:     "/default",
			event:   widget,
			wantErr: "rule 0",
		},
		{
			name:    "error stops at the failing rule even when a later rule would match",
			rules:   []Rule{{Match: `event.type == "nope"`, Path: "/nope"}, {Match: `event.nothing`, Path: "/x"}, {Match: `true`, Path: "/t"}},
			event:   widget,
			wantErr: "rule 1",
		},
		{
			name:    "non-bool result is an error",
			rules:   []Rule{{Match: `event.type`, Path: "/x"}},
			def:     "/default",
			event:   widget,
			wantErr: "was not a boolean",
		},
		{
			name:    "a name other than event compiles but fails at evaluation",
			rules:   []Rule{{Match: `source == "shop"`, Path: "/x"}},
			event:   widget,
			wantErr: "rule 0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Compile(tt.rules, tt.def)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			path, ok, err := r.Path(event(t, tt.event))
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Path = %q, %v; want error containing %q", path, ok, tt.wantErr)
				}
				if !errors.Is(err, ErrMatch) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v; want ErrMatch containing %q", err, tt.wantErr)
				}
				if ok || path != "" {
					t.Fatalf("Path = %q, %v alongside an error", path, ok)
				}
				return
			}
			if err != nil {
				t.Fatalf("Path: %v", err)
			}
			if path != tt.wantPath || ok != tt.wantOK {
				t.Fatalf("Path = %q, %v; want %q, %v", path, ok, tt.wantPath, tt.wantOK)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name  string
		rules []Rule
		want  []string
	}{
		{
			name:  "syntax error names index and expression",
			rules: []Rule{{Match: "true", Path: "/a"}, {Match: "event.type ==", Path: "/b"}},
			want:  []string{"rule 1", `"event.type =="`},
		},
		{
			name:  "type error",
			rules: []Rule{{Match: `1 + "a"`, Path: "/a"}},
			want:  []string{"rule 0", "no matching overload"},
		},
		{
			name:  "unknown function does not loop",
			rules: []Rule{{Match: `nosuchfunc(event.type)`, Path: "/a"}},
			want:  []string{"rule 0", "nosuchfunc"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Compile(tt.rules, "/default")
			if err == nil {
				t.Fatalf("Compile = %v; want error", r)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLen(t *testing.T) {
	tests := []struct {
		name  string
		rules []Rule
		def   string
		want  int
	}{
		{"nothing", nil, "", 0},
		{"default only", nil, "/d", 1},
		{"rules and default", []Rule{{Match: "true", Path: "/a"}, {Path: "/b"}}, "/d", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Compile(tt.rules, tt.def)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Len(); got != tt.want {
				t.Fatalf("Len = %d; want %d", got, tt.want)
			}
		})
	}
	var nilRoutes *Routes
	if nilRoutes.Len() != 0 {
		t.Fatal("nil Routes has rules")
	}
	if _, ok, err := nilRoutes.Path(map[string]any{}); ok || err != nil {
		t.Fatalf("nil Routes matched: %v, %v", ok, err)
	}
}

func TestNilAndEmptyEvent(t *testing.T) {
	// A message body of JSON null reaches routing as a nil map in Dapr; a default still
	// routes it and a field reference fails.
	r, err := Compile([]Rule{{Match: `has(event.type)`, Path: "/typed"}}, "/default")
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []map[string]any{nil, {}} {
		path, ok, err := r.Path(ev)
		if err != nil || !ok || path != "/default" {
			t.Fatalf("Path(%v) = %q, %v, %v; want /default", ev, path, ok, err)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	r, err := Compile([]Rule{
		{Match: `event.data.n % 2 == 0`, Path: "/even"},
	}, "/odd")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				n := g*1000 + i
				want := "/odd"
				if n%2 == 0 {
					want = "/even"
				}
				path, ok, err := r.Path(map[string]any{"data": map[string]any{"n": n}})
				if err != nil || !ok || path != want {
					t.Errorf("n=%d: Path = %q, %v, %v; want %q", n, path, ok, err, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}
