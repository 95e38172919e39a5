package postgresql

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/outrigger-dev/outrigger/sidecar/components/state"
)

// Query answers Dapr's state query API in SQL over the jsonb column, with the same
// semantics as the shared evaluator (state.EvaluateQuery): only JSON values under the
// query's key prefix, a comparison on a missing field is false, order comparisons
// only between two numbers or two strings, sorting by type then value (missing and
// null first), ties and unsorted results in key order, and the page token the offset
// of the next item. Every value, key prefix and field path travels as a parameter.
func (s *Store) Query(ctx context.Context, q *state.Query, _ map[string]string) (*state.QueryResponse, error) {
	db, err := s.db()
	if err != nil {
		return nil, err
	}
	bq, err := buildQuery(s.opts.table, q)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	resp := &state.QueryResponse{}
	rows, err := db.Query(ctx, bq.sql, bq.args...)
	if err == nil {
		resp.Results, err = pgx.AppendRows(resp.Results, rows, func(row pgx.CollectableRow) (state.QueryItem, error) {
			var key, etag string
			var data []byte
			err := row.Scan(&key, &data, &etag)
			return state.QueryItem{Key: key, Data: json.RawMessage(data), ETag: &etag}, err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("%s: query: %w", TypeName, err)
	}
	if bq.limit > 0 && len(resp.Results) > bq.limit {
		resp.Results = resp.Results[:bq.limit]
		resp.Token = strconv.Itoa(bq.offset + bq.limit)
	}
	return resp, nil
}

type builtQuery struct {
	sql           string
	args          []any
	offset, limit int
}

// buildQuery turns a query into one parameterised SELECT. It fetches one row more
// than the page's limit, to know whether another page follows.
func buildQuery(table string, q *state.Query) (*builtQuery, error) {
	if q == nil {
		q = &state.Query{}
	}
	bq := &builtQuery{limit: q.Page.Limit}
	if q.Page.Token != "" {
		n, err := strconv.Atoi(q.Page.Token)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: page token %q was not issued by this store", state.ErrInvalidQuery, q.Page.Token)
		}
		bq.offset = n
	}
	if q.Page.Limit < 0 {
		return nil, fmt.Errorf("%w: page limit %d is negative", state.ErrInvalidQuery, q.Page.Limit)
	}
	if err := state.ValidateFilter(q.Filter); err != nil {
		return nil, err
	}

	b := &sqlBuilder{}
	var sb strings.Builder
	sb.WriteString(`SELECT key, ` + readValue + `, xmin::text FROM ` + table +
		` WHERE NOT isbinary AND ` + live + ` AND starts_with(key, ` + b.arg(q.KeyPrefix) + `)`)
	if q.Filter != nil {
		cond, err := b.filter(q.Filter)
		if err != nil {
			return nil, err
		}
		sb.WriteString(" AND " + cond)
	}
	sb.WriteString(" ORDER BY ")
	for _, s := range q.Sort {
		if s.Key == "" {
			return nil, fmt.Errorf("%w: sort key is empty", state.ErrInvalidQuery)
		}
		dir := "ASC"
		switch strings.ToUpper(s.Order) {
		case "", state.SortAsc:
		case state.SortDesc:
			dir = "DESC"
		default:
			return nil, fmt.Errorf("%w: sort order %q is not ASC or DESC", state.ErrInvalidQuery, s.Order)
		}
		e := b.field(s.Key)
		// Type rank first (missing and null, booleans, numbers, strings, the rest),
		// then the value within its type; strings in byte order, as Go compares them.
		fmt.Fprintf(&sb, `CASE WHEN %[1]s IS NULL OR jsonb_typeof(%[1]s) = 'null' THEN 0 WHEN jsonb_typeof(%[1]s) = 'boolean' THEN 1
			WHEN jsonb_typeof(%[1]s) = 'number' THEN 2 WHEN jsonb_typeof(%[1]s) = 'string' THEN 3 ELSE 4 END %[2]s,
			CASE WHEN jsonb_typeof(%[1]s) = 'boolean' THEN (%[1]s)::boolean END %[2]s,
			CASE WHEN jsonb_typeof(%[1]s) = 'number' THEN (%[1]s)::numeric END %[2]s,
			CASE WHEN jsonb_typeof(%[1]s) = 'string' THEN (%[1]s #>> '{}') COLLATE "C" END %[2]s, `, e, dir)
	}
	sb.WriteString(`key COLLATE "C"`)
	if bq.limit > 0 {
		sb.WriteString(" LIMIT " + b.arg(bq.limit+1))
	}
	if bq.offset > 0 {
		sb.WriteString(" OFFSET " + b.arg(bq.offset))
	}
	bq.sql, bq.args = sb.String(), b.args
	return bq, nil
}

type sqlBuilder struct {
	args []any
}

// arg adds a parameter and returns its placeholder.
func (b *sqlBuilder) arg(v any) string {
	b.args = append(b.args, v)
	return "$" + strconv.Itoa(len(b.args))
}

// field is the jsonb at a dotted path of the value, NULL when absent; the path is a
// text[] parameter, so no part of a key reaches the SQL text.
func (b *sqlBuilder) field(key string) string {
	return "(value #> " + b.arg(strings.Split(key, ".")) + "::text[])"
}

func (b *sqlBuilder) filter(f *state.Filter) (string, error) {
	switch f.Op {
	case state.OpAND, state.OpOR:
		parts := make([]string, 0, len(f.Children))
		for _, c := range f.Children {
			p, err := b.filter(c)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return "(" + strings.Join(parts, " "+f.Op+" ") + ")", nil
	case state.OpEQ, state.OpNEQ:
		v, err := jsonText(f.Key, f.Value)
		if err != nil {
			return "", err
		}
		op := "="
		if f.Op == state.OpNEQ {
			op = "<>"
		}
		return "(" + b.field(f.Key) + " " + op + " " + b.arg(v) + "::text::jsonb)", nil
	case state.OpIN:
		list, _ := f.Value.([]any)
		texts := make([]string, len(list))
		for i, x := range list {
			v, err := jsonText(f.Key, x)
			if err != nil {
				return "", err
			}
			texts[i] = v
		}
		return "(" + b.field(f.Key) + " = ANY(" + b.arg(texts) + "::text[]::jsonb[]))", nil
	case state.OpGT, state.OpGTE, state.OpLT, state.OpLTE:
		op := map[string]string{state.OpGT: ">", state.OpGTE: ">=", state.OpLT: "<", state.OpLTE: "<="}[f.Op]
		switch v := f.Value.(type) {
		case string:
			e := b.field(f.Key)
			return "(jsonb_typeof(" + e + ") = 'string' AND (" + e + ` #>> '{}') COLLATE "C" ` + op + " " + b.arg(v) + "::text)", nil
		case float64, float32, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, json.Number:
			t, err := jsonText(f.Key, v)
			if err != nil {
				return "", err
			}
			e := b.field(f.Key)
			return "(jsonb_typeof(" + e + ") = 'number' AND " + e + " " + op + " " + b.arg(t) + "::text::jsonb)", nil
		default:
			// Only numbers and strings have an order. No parameter is added: PostgreSQL
			// refuses parameters a statement does not use.
			return "FALSE", nil
		}
	}
	return "", fmt.Errorf("%w: unknown filter operator %q", state.ErrInvalidQuery, f.Op)
}

func jsonText(key string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("%w: value for %q: %v", state.ErrInvalidQuery, key, err)
	}
	return string(b), nil
}
