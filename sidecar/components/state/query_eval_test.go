package state

import (
	"errors"
	"slices"
	"testing"
)

func TestEvaluateQuery(t *testing.T) {
	items := []QueryCandidate{
		{Key: "a||1", Data: []byte(`{"n":5,"s":"b","t":{"x":true}}`)},
		{Key: "a||2", Data: []byte(`{"n":1,"s":"a"}`)},
		{Key: "a||3", Data: []byte(`{"n":"7","s":"c","t":{"x":false}}`)},
		{Key: "a||4", Data: []byte(`not json`)},
		{Key: "a||5", Data: []byte(`{"n":null}`)},
		{Key: "b||1", Data: []byte(`{"n":5}`)},
	}
	f := func(op, key string, v any) *Filter { return &Filter{Op: op, Key: key, Value: v} }
	for _, tc := range []struct {
		name string
		q    Query
		want []string
	}{
		{"prefix scopes, non-JSON skipped", Query{KeyPrefix: "a||"}, []string{"a||1", "a||2", "a||3", "a||5"}},
		{"no prefix", Query{}, []string{"a||1", "a||2", "a||3", "a||5", "b||1"}},
		{"EQ number", Query{KeyPrefix: "a||", Filter: f(OpEQ, "n", float64(5))}, []string{"a||1"}},
		{"EQ does not coerce strings", Query{KeyPrefix: "a||", Filter: f(OpEQ, "n", float64(7))}, nil},
		{"EQ null", Query{KeyPrefix: "a||", Filter: f(OpEQ, "n", nil)}, []string{"a||5"}},
		{"NEQ skips missing fields", Query{KeyPrefix: "a||", Filter: f(OpNEQ, "s", "a")}, []string{"a||1", "a||3"}},
		{"GT numbers only", Query{KeyPrefix: "a||", Filter: f(OpGT, "n", float64(1))}, []string{"a||1"}},
		{"LTE strings", Query{KeyPrefix: "a||", Filter: f(OpLTE, "s", "b")}, []string{"a||1", "a||2"}},
		{"nested bool", Query{KeyPrefix: "a||", Filter: f(OpEQ, "t.x", false)}, []string{"a||3"}},
		{"IN", Query{KeyPrefix: "a||", Filter: f(OpIN, "s", []any{"c", "a", "zz"})}, []string{"a||2", "a||3"}},
		{"sort mixed types ASC", Query{KeyPrefix: "a||", Sort: []Sorting{{Key: "n"}}}, []string{"a||5", "a||2", "a||1", "a||3"}},
		{"sort DESC", Query{KeyPrefix: "a||", Sort: []Sorting{{Key: "s", Order: "DESC"}}}, []string{"a||3", "a||1", "a||2", "a||5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := EvaluateQuery(&tc.q, items)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range resp.Results {
				got = append(got, r.Key)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("keys = %v, want %v", got, tc.want)
			}
		})
	}
	for _, q := range []Query{
		{Page: Pagination{Token: "x"}},
		{Page: Pagination{Token: "-1"}},
		{Page: Pagination{Limit: -1}},
		{Filter: &Filter{Op: "LIKE", Key: "s"}},
		{Filter: &Filter{Op: OpIN, Key: "s", Value: "a"}},
		{Sort: []Sorting{{Key: "s", Order: "sideways"}}},
	} {
		if _, err := EvaluateQuery(&q, items); !errors.Is(err, ErrInvalidQuery) {
			t.Errorf("%+v: err = %v, want ErrInvalidQuery", q, err)
		}
	}
	resp, err := EvaluateQuery(&Query{KeyPrefix: "a||", Page: Pagination{Limit: 3, Token: "3"}}, items)
	if err != nil || len(resp.Results) != 1 || resp.Token != "" {
		t.Fatalf("last page = %+v, %v", resp, err)
	}
	resp, err = EvaluateQuery(&Query{KeyPrefix: "a||", Page: Pagination{Token: "99"}}, items)
	if err != nil || len(resp.Results) != 0 {
		t.Fatalf("page past the end = %+v, %v", resp, err)
	}
}
