package resiliency

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"google.golang.org/grpc/codes"
)

func TestParseCodes(t *testing.T) {
	tests := []struct {
		list      string
		grpc      bool
		has, hasn []int
		err       string // part of the error; empty for none
	}{
		// No list retries every code of its kind.
		{list: "", has: []int{100, 404, 503, 599}},
		{list: "429,500-599", has: []int{429, 500, 503, 599}, hasn: []int{428, 430, 499, 404, 200}},
		{list: "503", has: []int{503}, hasn: []int{404, 500, 502, 504}},
		{list: "100-100,599", has: []int{100, 599}, hasn: []int{101, 598}},
		// Empty entries are skipped, as Dapr does; a list of only those retries no code.
		{list: "500,,502,", has: []int{500, 502}, hasn: []int{501}},
		{list: ",", hasn: []int{100, 404, 503}},
		{list: "1-4,8-14", grpc: true, has: []int{1, 2, 4, 8, 14}, hasn: []int{0, 5, 7, 15, 16}},
		{list: "0,16", grpc: true, has: []int{0, 16}, hasn: []int{1, 15}},

		{list: "15", err: `"15": 15 is not an HTTP status code (100-599)`},
		{list: "99", err: "99 is not an HTTP status code"},
		{list: "600", err: "600 is not an HTTP status code"},
		{list: "500-600", err: "600 is not an HTTP status code"},
		{list: "17", grpc: true, err: "17 is not a gRPC status code (0-16)"},
		{list: "1,2,503", grpc: true, err: `"503": 503 is not a gRPC status code`},
		{list: "599-500", err: "the range ends before it starts"},
		{list: "404-405-500", err: "more than one '-'"},
		{list: "-1", err: `"" is not a number`},
		{list: "500-", err: `"" is not a number`},
		{list: "5xx", err: `"5xx" is not a number`},
		// As strconv.Atoi in Dapr: no spaces around a code.
		{list: "429, 503", err: `" 503" is not a number`},
		// Every bad entry is named.
		{list: "15,503,abc", err: `"15": 15 is not an HTTP status code (100-599); "abc": "abc" is not a number`},
	}
	for _, tt := range tests {
		t.Run(tt.list, func(t *testing.T) {
			valid, kind := httpCodes, "an HTTP"
			if tt.grpc {
				valid, kind = grpcCodes, "a gRPC"
			}
			set, err := parseCodes(tt.list, valid, kind)
			if wantedErr(t, err, tt.err) {
				return
			}
			for _, c := range tt.has {
				if !set.has(c) {
					t.Errorf("%d is not matched", c)
				}
			}
			for _, c := range tt.hasn {
				if set.has(c) {
					t.Errorf("%d is matched", c)
				}
			}
		})
	}
}

// wantedErr fails t unless err says want, or is nil when want is empty; it reports
// whether an error was wanted.
func wantedErr(t *testing.T, err error, want string) bool {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatal(err)
		}
		return false
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want %q", err, want)
	}
	return true
}

func TestCompileMatchingErrors(t *testing.T) {
	_, err := Compile(parse(t, `
metadata: {name: r}
spec:
  policies:
    retries:
      codes: {matching: {httpStatusCodes: "429,15", gRPCStatusCodes: "99"}}
      fine: {matching: {httpStatusCodes: "503"}}
  targets: {apps: {b: {retry: fine}}}`), logr.Discard())
	if err == nil {
		t.Fatal("compiled")
	}
	// Dapr rejects the whole Resiliency; so does Compile, naming the field.
	for _, w := range []string{
		`Resiliency "r": policies.retries.codes: matching.httpStatusCodes: "15": 15 is not an HTTP status code (100-599)`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	_, err = Compile(parse(t, "metadata: {name: r}\nspec: {policies: {retries: {codes: {matching: {gRPCStatusCodes: '2-40'}}}}}"), logr.Discard())
	if err == nil || !strings.Contains(err.Error(), `policies.retries.codes: matching.gRPCStatusCodes: "2-40": 40 is not a gRPC status code (0-16)`) {
		t.Errorf("gRPC list: %v", err)
	}
}

func TestRetryMatching(t *testing.T) {
	boom := errors.New("connection refused")
	tests := []struct {
		name     string
		matching string
		failure  error
		calls    int // the op always fails; maxRetries is 3
	}{
		{"no matching retries a status", "", HTTPStatus(404, nil), 4},
		{"listed HTTP status", "{httpStatusCodes: '503'}", HTTPStatus(503, nil), 4},
		{"HTTP status not listed", "{httpStatusCodes: '503'}", HTTPStatus(404, nil), 1},
		{"HTTP status in a range", "{httpStatusCodes: '429,500-599'}", HTTPStatus(502, nil), 4},
		// A failure without a status is retried whatever the lists say.
		{"no status", "{httpStatusCodes: '503', gRPCStatusCodes: '14'}", boom, 4},
		{"timeout", "{httpStatusCodes: '503'}", context.DeadlineExceeded, 4},
		// A list of one kind leaves the codes of the other kind all retried.
		{"gRPC code without a gRPC list", "{httpStatusCodes: '503'}", GRPCStatus(codes.NotFound, nil), 4},
		{"HTTP status without an HTTP list", "{gRPCStatusCodes: '14'}", HTTPStatus(404, nil), 4},
		{"listed gRPC code", "{gRPCStatusCodes: '1-4,8-14'}", GRPCStatus(codes.Unavailable, boom), 4},
		{"gRPC code not listed", "{gRPCStatusCodes: '1-4,8-14'}", GRPCStatus(codes.NotFound, boom), 1},
		// The code's kind decides the list: gRPC 14 is not HTTP 14.
		{"gRPC code against the gRPC list only", "{httpStatusCodes: '100-599', gRPCStatusCodes: '1'}", GRPCStatus(codes.Unavailable, nil), 1},
		{"a list of no code", "{httpStatusCodes: ','}", HTTPStatus(503, nil), 1},
		// Wrapped, the status still decides.
		{"wrapped status not listed", "{httpStatusCodes: '503'}", errWrapped(HTTPStatus(404, nil)), 1},
		{"wrapped listed status", "{httpStatusCodes: '503'}", errWrapped(HTTPStatus(503, nil)), 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			retry := "{duration: 1ms, maxRetries: 3}"
			if tt.matching != "" {
				retry = "{duration: 1ms, maxRetries: 3, matching: " + tt.matching + "}"
			}
			p := compile(t, "metadata: {name: r}\nspec:\n  policies: {retries: {r: "+retry+"}}\n  targets: {apps: {b: {retry: r}}}\n")
			failure := tt.failure
			calls := 0
			err := p.Run(context.Background(), appB, func(context.Context) error { calls++; return failure })
			if calls != tt.calls {
				t.Errorf("%d calls, want %d", calls, tt.calls)
			}
			if !errors.Is(err, failure) {
				t.Errorf("err %v, want %v", err, failure)
			}
		})
	}
}

func errWrapped(err error) error { return errors.Join(errors.New("invoke b"), err) }

// The context of an attempt answered with a failing status stays alive, as after a
// success: the caller may get that answer and read its body. Other failures end it.
func TestStatusErrorKeepsTheAttemptContext(t *testing.T) {
	p := compile(t, "metadata: {name: r}\nspec:\n  policies: {timeouts: {long: 1h}}\n  targets: {apps: {b: {timeout: long}}}")
	for _, tt := range []struct {
		err   error
		alive bool
	}{
		{HTTPStatus(503, nil), true},
		{Permanent(HTTPStatus(503, nil)), true},
		{GRPCStatus(codes.Internal, errors.New("boom")), true},
		{errors.New("boom"), false},
	} {
		var attempt context.Context
		_ = p.Run(context.Background(), appB, func(ctx context.Context) error { attempt = ctx; return tt.err })
		if alive := attempt.Err() == nil; alive != tt.alive {
			t.Errorf("%v: context alive %v, want %v", tt.err, alive, tt.alive)
		}
	}
}

func TestMayRetry(t *testing.T) {
	p := compile(t, `
metadata: {name: r}
spec:
  policies:
    retries: {some: {maxRetries: 2}, none: {maxRetries: 0}}
    timeouts: {t: 1s}
  targets:
    apps: {b: {retry: some}, c: {retry: none}, d: {timeout: t}}`)
	var live Live
	for _, tt := range []struct {
		r      Runner
		target Target
		want   bool
	}{
		{p, appB, true},
		{p, Target{Kind: "app", Name: "c"}, false},
		{p, Target{Kind: "app", Name: "d"}, false},
		{p, Target{Kind: "app", Name: "b", Direction: Inbound}, false},
		{Direct{}, appB, false},
		{(*Policies)(nil), appB, false},
		{&live, appB, false},
	} {
		if got := MayRetry(tt.r, tt.target); got != tt.want {
			t.Errorf("%T %+v: %v, want %v", tt.r, tt.target, got, tt.want)
		}
	}
	live.Store(p)
	if !MayRetry(&live, appB) {
		t.Error("Live with a retry policy")
	}
}
