package resiliency

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
)

// StatusError is an attempt that reached its target and was answered with a failure:
// an HTTP status outside 200-399 or a gRPC code other than OK. The attempt counts as a
// failure for the circuit breaker, and a retry policy with `matching` retries it only
// when its code is listed. An error that is not a StatusError (a refused connection, a
// timeout) carries no status and is retried whatever `matching` says, as in Dapr.
//
// The runner leaves the attempt's context alive when it fails with a StatusError, as
// after a success: the answer may be the one the caller gets, and its body may still
// be read under that context.
type StatusError struct {
	// Code is the HTTP status, or the gRPC code when GRPC is set.
	Code int
	GRPC bool
	// Err describes the failure; it may be nil.
	Err error
}

// HTTPStatus is a failed attempt answered with the HTTP status code.
func HTTPStatus(code int, err error) error { return &StatusError{Code: code, Err: err} }

// GRPCStatus is a failed attempt answered with the gRPC code.
func GRPCStatus(code codes.Code, err error) error {
	return &StatusError{Code: int(code), GRPC: true, Err: err}
}

func (e *StatusError) Error() string {
	switch {
	case e.Err != nil:
		return e.Err.Error()
	case e.GRPC:
		return "answered with gRPC code " + codes.Code(e.Code).String()
	}
	return "answered with HTTP status " + strconv.Itoa(e.Code)
}

func (e *StatusError) Unwrap() error { return e.Err }

func isStatus(err error) bool {
	var se *StatusError
	return errors.As(err, &se)
}

// codeRange is an inclusive range of status codes.
type codeRange struct{ lo, hi int }

// codeSet is the codes a retry's `matching` lists. nil (the list is absent or empty)
// holds every code; an empty, non-nil set holds none.
type codeSet []codeRange

func (s codeSet) has(code int) bool {
	if s == nil {
		return true
	}
	for _, r := range s {
		if r.lo <= code && code <= r.hi {
			return true
		}
	}
	return false
}

// The codes `matching` accepts, as Dapr validates them (pkg/resiliency/retry.go).
var (
	httpCodes = codeRange{100, 599}
	grpcCodes = codeRange{0, 16}
)

// parseCodes reads a `matching` list the way Dapr's parsePatterns does: comma-separated
// codes and lo-hi ranges, both ends within valid. An empty entry is skipped, so "," is
// a list that holds no code. Any other entry that is not a valid code or range is an
// error; Dapr then rejects the whole Resiliency. Like Dapr (strconv.Atoi), no spaces
// are allowed around a code. kind names the codes in errors, article included ("an
// HTTP").
func parseCodes(list string, valid codeRange, kind string) (codeSet, error) {
	if list == "" {
		return nil, nil
	}
	set := codeSet{}
	var bad []string
	for _, entry := range strings.Split(list, ",") {
		if entry == "" {
			continue
		}
		r, err := parseCodeRange(entry, valid, kind)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%q: %v", entry, err))
			continue
		}
		set = append(set, r)
	}
	if len(bad) > 0 {
		return nil, errors.New(strings.Join(bad, "; "))
	}
	return set, nil
}

func parseCodeRange(entry string, valid codeRange, kind string) (codeRange, error) {
	parts := strings.Split(entry, "-")
	if len(parts) > 2 {
		return codeRange{}, errors.New("more than one '-'")
	}
	var r codeRange
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return codeRange{}, fmt.Errorf("%q is not a number", p)
		}
		if !(valid.lo <= n && n <= valid.hi) {
			return codeRange{}, fmt.Errorf("%d is not %s status code (%d-%d)", n, kind, valid.lo, valid.hi)
		}
		if i == 0 {
			r = codeRange{n, n}
		} else {
			r.hi = n
		}
	}
	if r.hi < r.lo {
		return codeRange{}, errors.New("the range ends before it starts")
	}
	return r, nil
}
