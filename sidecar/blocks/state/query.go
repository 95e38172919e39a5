package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/outrigger-dev/outrigger/sidecar/components/state"
)

// ParseQuery reads Dapr's query language:
//
//	{"filter": {"AND": [{"EQ": {"state": "CA"}}, {"IN": {"person.org": ["a", "b"]}}]},
//	 "sort": [{"key": "state", "order": "DESC"}],
//	 "page": {"limit": 3, "token": "..."}}
//
// AND and OR take arrays of at least two filters (Dapr's rule), IN an array of values;
// each other operator an object with one key and one value. Beyond Dapr's EQ, IN, AND
// and OR it accepts NEQ, GT, GTE, LT and LTE. Errors give the path to the fault.
func ParseQuery(raw []byte) (*state.Query, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, errors.New("the query is empty; send a JSON object such as {\"filter\":{\"EQ\":{\"key\":\"value\"}}}")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("the query is not a JSON object: %w", err)
	}
	if top == nil {
		return nil, errors.New("the query is not a JSON object")
	}
	q := &state.Query{}
	for _, k := range sortedKeys(top) {
		v := top[k]
		switch k {
		case "filter":
			var node any
			if err := json.Unmarshal(v, &node); err != nil {
				return nil, fmt.Errorf("filter: %w", err)
			}
			if node == nil {
				continue
			}
			f, err := parseFilter("filter", node)
			if err != nil {
				return nil, err
			}
			q.Filter = f
		case "sort":
			s, err := parseSort(v)
			if err != nil {
				return nil, err
			}
			q.Sort = s
		case "page":
			p, err := parsePage(v)
			if err != nil {
				return nil, err
			}
			q.Page = p
		default:
			// Dapr ignores unknown fields; a misspelt "filter" would then return
			// every item, so we say so instead.
			return nil, fmt.Errorf("unknown field %q (the query has filter, sort and page)", k)
		}
	}
	return q, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func parseFilter(path string, node any) (*state.Filter, error) {
	m, ok := node.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: must be an object with one operator (EQ, NEQ, GT, GTE, LT, LTE, IN, AND, OR)", path)
	}
	if len(m) != 1 {
		return nil, fmt.Errorf("%s: must have exactly one operator, has %d", path, len(m))
	}
	for op, arg := range m {
		here := path + "." + op
		switch op {
		case state.OpAND, state.OpOR:
			list, ok := arg.([]any)
			if !ok {
				return nil, fmt.Errorf("%s: must be an array of filters", here)
			}
			if len(list) < 2 {
				return nil, fmt.Errorf("%s: must have at least two filters, has %d", here, len(list))
			}
			f := &state.Filter{Op: op}
			for i, child := range list {
				c, err := parseFilter(fmt.Sprintf("%s[%d]", here, i), child)
				if err != nil {
					return nil, err
				}
				f.Children = append(f.Children, c)
			}
			return f, nil
		case state.OpEQ, state.OpNEQ, state.OpGT, state.OpGTE, state.OpLT, state.OpLTE, state.OpIN:
			pair, ok := arg.(map[string]any)
			if !ok || len(pair) != 1 {
				return nil, fmt.Errorf("%s: must be an object with exactly one key and its value, such as {\"state\": \"CA\"}", here)
			}
			for key, val := range pair {
				if key == "" {
					return nil, fmt.Errorf("%s: the key is empty", here)
				}
				switch op {
				case state.OpIN:
					if _, ok := val.([]any); !ok {
						return nil, fmt.Errorf("%s.%s: IN needs an array of values", here, key)
					}
				case state.OpGT, state.OpGTE, state.OpLT, state.OpLTE:
					switch val.(type) {
					case float64, string:
					default:
						return nil, fmt.Errorf("%s.%s: %s compares with a number or a string", here, key, op)
					}
				}
				return &state.Filter{Op: op, Key: key, Value: val}, nil
			}
		default:
			return nil, fmt.Errorf("%s: unknown operator %q (EQ, NEQ, GT, GTE, LT, LTE, IN, AND, OR)", path, op)
		}
	}
	return nil, fmt.Errorf("%s: empty", path) // unreachable: len(m) == 1
}

func parseSort(raw json.RawMessage) ([]state.Sorting, error) {
	var items []map[string]any
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, errors.New(`sort: must be an array of {"key": "...", "order": "ASC" or "DESC"}`)
	}
	out := make([]state.Sorting, 0, len(items))
	for i, it := range items {
		var s state.Sorting
		for k, v := range it {
			str, ok := v.(string)
			switch {
			case k == "key" && ok:
				s.Key = str
			case k == "order" && ok:
				s.Order = strings.ToUpper(str)
			case k == "key" || k == "order":
				return nil, fmt.Errorf("sort[%d].%s: must be a string", i, k)
			default:
				return nil, fmt.Errorf("sort[%d]: unknown field %q (key, order)", i, k)
			}
		}
		if s.Key == "" {
			return nil, fmt.Errorf("sort[%d].key: is required", i)
		}
		switch s.Order {
		case "":
			s.Order = state.SortAsc
		case state.SortAsc, state.SortDesc:
		default:
			return nil, fmt.Errorf("sort[%d].order: %q is not ASC or DESC", i, s.Order)
		}
		out = append(out, s)
	}
	return out, nil
}

func parsePage(raw json.RawMessage) (state.Pagination, error) {
	var p struct {
		Limit *float64 `json:"limit"`
		Token *string  `json:"token"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return state.Pagination{}, fmt.Errorf(`page: must be {"limit": <whole number>, "token": "<string>"}: %v`, err)
	}
	var out state.Pagination
	if p.Limit != nil {
		l := *p.Limit
		if l < 0 || l != math.Trunc(l) || l > math.MaxInt32 {
			return out, fmt.Errorf("page.limit: %v is not a whole number from 0 to %d", l, math.MaxInt32)
		}
		out.Limit = int(l)
	}
	if p.Token != nil {
		out.Token = *p.Token
	}
	return out, nil
}
