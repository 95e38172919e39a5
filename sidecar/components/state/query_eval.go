package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// ErrInvalidQuery marks a query the app got wrong (an unknown operator, a bad page
// token), so that the block can answer 400 rather than blame the store.
var ErrInvalidQuery = errors.New("invalid query")

// Filter operators, Dapr's names.
const (
	OpEQ  = "EQ"
	OpNEQ = "NEQ"
	OpGT  = "GT"
	OpGTE = "GTE"
	OpLT  = "LT"
	OpLTE = "LTE"
	OpIN  = "IN"
	OpAND = "AND"
	OpOR  = "OR"
)

// Sort orders.
const (
	SortAsc  = "ASC"
	SortDesc = "DESC"
)

// QueryCandidate is one stored item offered to EvaluateQuery.
type QueryCandidate struct {
	Key         string
	Data        []byte
	ETag        *string
	ContentType *string
}

// EvaluateQuery answers q over items held in memory, for stores that have no query
// engine of their own: it keeps the items under q.KeyPrefix whose value is JSON and
// matches the filter, sorts them (by key when no sort is given, so that pages are
// stable), and cuts the page. The page token is the offset of the next item.
//
// Items whose value is not JSON are never returned: a query result carries the value
// as JSON, and a filter could not address a field in it anyway.
func EvaluateQuery(q *Query, items []QueryCandidate) (*QueryResponse, error) {
	if q == nil {
		q = &Query{}
	}
	offset := 0
	if q.Page.Token != "" {
		n, err := strconv.Atoi(q.Page.Token)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: page token %q was not issued by this store", ErrInvalidQuery, q.Page.Token)
		}
		offset = n
	}
	if q.Page.Limit < 0 {
		return nil, fmt.Errorf("%w: page limit %d is negative", ErrInvalidQuery, q.Page.Limit)
	}
	if err := ValidateFilter(q.Filter); err != nil {
		return nil, err
	}
	for _, s := range q.Sort {
		if s.Key == "" {
			return nil, fmt.Errorf("%w: sort key is empty", ErrInvalidQuery)
		}
		if o := strings.ToUpper(s.Order); o != "" && o != SortAsc && o != SortDesc {
			return nil, fmt.Errorf("%w: sort order %q is not ASC or DESC", ErrInvalidQuery, s.Order)
		}
	}

	type row struct {
		c   QueryCandidate
		doc any
	}
	rows := make([]row, 0, len(items))
	for _, c := range items {
		if !strings.HasPrefix(c.Key, q.KeyPrefix) {
			continue
		}
		var doc any
		if err := json.Unmarshal(c.Data, &doc); err != nil {
			continue
		}
		if q.Filter != nil && !MatchFilter(q.Filter, doc) {
			continue
		}
		rows = append(rows, row{c, doc})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].c.Key < rows[j].c.Key })
	if len(q.Sort) > 0 {
		sort.SliceStable(rows, func(i, j int) bool {
			for _, s := range q.Sort {
				a, _ := LookupPath(rows[i].doc, s.Key)
				b, _ := LookupPath(rows[j].doc, s.Key)
				c := orderValues(a, b)
				if strings.EqualFold(s.Order, SortDesc) {
					c = -c
				}
				if c != 0 {
					return c < 0
				}
			}
			return false
		})
	}

	resp := &QueryResponse{}
	if offset >= len(rows) {
		return resp, nil
	}
	end := len(rows)
	if q.Page.Limit > 0 && offset+q.Page.Limit < end {
		end = offset + q.Page.Limit
		resp.Token = strconv.Itoa(end)
	}
	for _, r := range rows[offset:end] {
		resp.Results = append(resp.Results, QueryItem{
			Key:         r.c.Key,
			Data:        json.RawMessage(bytes.Clone(r.c.Data)),
			ETag:        r.c.ETag,
			ContentType: r.c.ContentType,
		})
	}
	return resp, nil
}

// ValidateFilter checks a filter tree's shape; the block's parser already enforces it,
// but stores may be called directly.
func ValidateFilter(f *Filter) error {
	if f == nil {
		return nil
	}
	switch f.Op {
	case OpAND, OpOR:
		if len(f.Children) == 0 {
			return fmt.Errorf("%w: %s has no operands", ErrInvalidQuery, f.Op)
		}
		for _, c := range f.Children {
			if err := ValidateFilter(c); err != nil {
				return err
			}
		}
	case OpIN:
		if _, ok := f.Value.([]any); !ok {
			return fmt.Errorf("%w: IN on %q needs an array", ErrInvalidQuery, f.Key)
		}
	case OpEQ, OpNEQ, OpGT, OpGTE, OpLT, OpLTE:
		if f.Key == "" {
			return fmt.Errorf("%w: %s has an empty key", ErrInvalidQuery, f.Op)
		}
	default:
		return fmt.Errorf("%w: unknown filter operator %q", ErrInvalidQuery, f.Op)
	}
	return nil
}

// MatchFilter reports whether a decoded JSON value matches the filter. A comparison on
// a field the value lacks is false, NEQ included, as SQL treats NULL; order
// comparisons (GT...) only hold between two numbers or two strings.
func MatchFilter(f *Filter, doc any) bool {
	switch f.Op {
	case OpAND:
		for _, c := range f.Children {
			if !MatchFilter(c, doc) {
				return false
			}
		}
		return true
	case OpOR:
		for _, c := range f.Children {
			if MatchFilter(c, doc) {
				return true
			}
		}
		return false
	}
	v, ok := LookupPath(doc, f.Key)
	if !ok {
		return false
	}
	switch f.Op {
	case OpEQ:
		return EqualValues(v, f.Value)
	case OpNEQ:
		return !EqualValues(v, f.Value)
	case OpIN:
		list, _ := f.Value.([]any)
		for _, x := range list {
			if EqualValues(v, x) {
				return true
			}
		}
		return false
	case OpGT, OpGTE, OpLT, OpLTE:
		c, ok := CompareValues(v, f.Value)
		if !ok {
			return false
		}
		switch f.Op {
		case OpGT:
			return c > 0
		case OpGTE:
			return c >= 0
		case OpLT:
			return c < 0
		default:
			return c <= 0
		}
	}
	return false
}

// LookupPath follows a dotted path ("person.org") into a decoded JSON value.
func LookupPath(doc any, path string) (any, bool) {
	cur := doc
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// EqualValues compares two decoded JSON values; numbers compare by value whatever
// their Go type, since filters and documents may be decoded differently.
func EqualValues(a, b any) bool {
	if x, ok := toFloat(a); ok {
		y, ok := toFloat(b)
		return ok && x == y
	}
	return reflect.DeepEqual(a, b)
}

// CompareValues orders two numbers or two strings; ok is false for any other pair.
func CompareValues(a, b any) (int, bool) {
	if x, ok := toFloat(a); ok {
		y, ok := toFloat(b)
		if !ok {
			return 0, false
		}
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	}
	if x, ok := a.(string); ok {
		y, ok := b.(string)
		if !ok {
			return 0, false
		}
		return strings.Compare(x, y), true
	}
	return 0, false
}

// orderValues is a total order for sorting: missing and null first, then booleans,
// numbers, strings, and anything else (kept in key order).
func orderValues(a, b any) int {
	ra, rb := typeRank(a), typeRank(b)
	if ra != rb {
		return ra - rb
	}
	switch ra {
	case 1:
		x, y := a.(bool), b.(bool)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	case 2, 3:
		c, _ := CompareValues(a, b)
		return c
	}
	return 0
}

func typeRank(v any) int {
	switch v.(type) {
	case nil:
		return 0
	case bool:
		return 1
	case string:
		return 3
	}
	if _, ok := toFloat(v); ok {
		return 2
	}
	return 4
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case uint64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}
