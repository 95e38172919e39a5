package state

import "encoding/json"

// Query is a parsed state query, Dapr's query language: a filter tree, sorting and
// paging. The block parses the request's JSON into it; stores evaluate it.
type Query struct {
	Filter *Filter
	Sort   []Sorting
	Page   Pagination
	// KeyPrefix scopes the query: a store returns only keys that start with it, so that
	// an app never sees another app's items ("<appid>||"). Empty means every key.
	KeyPrefix string
}

// Filter is one node: a comparison on a key (EQ, NEQ, GT, GTE, LT, LTE, IN) or a
// combination of children (AND, OR). Keys are dotted paths into the JSON value
// ("person.org"); a leading "value." is not used (Dapr's keys address the value itself).
type Filter struct {
	Op       string
	Key      string
	Value    any // for comparisons; a []any for IN
	Children []*Filter
}

// Sorting orders results by a key, "ASC" (default) or "DESC".
type Sorting struct {
	Key   string
	Order string
}

// Pagination limits a page; Token continues after a previous page.
type Pagination struct {
	Limit int
	Token string
}

// QueryItem is one result; Error is set instead of Data for an item that could not be
// read.
type QueryItem struct {
	Key         string
	Data        json.RawMessage
	ETag        *string
	Error       string
	ContentType *string
}

// QueryResponse is a page of results; Token is empty on the last page.
type QueryResponse struct {
	Results  []QueryItem
	Token    string
	Metadata map[string]string
}
