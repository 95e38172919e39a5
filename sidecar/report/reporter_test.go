package report

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outrigger-dev/outrigger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// stepClock moves one second forward on every reading, so reports are ordered
// without waiting on the wall clock.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func testCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// waitReports polls the report Events of ns until cond holds for their decoded
// reports (by Event name), or the context ends.
func waitReports(t *testing.T, ctx context.Context, c client.Client, ns, what string, cond func(map[string]Report) bool) map[string]Report {
	t.Helper()
	var last map[string]Report
	for {
		list := &eventsv1.EventList{}
		if err := c.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{LabelReport: LabelReportComponent}); err == nil {
			last = map[string]Report{}
			for i := range list.Items {
				r, ok := Decode(&list.Items[i])
				if !ok {
					t.Fatalf("Event %s does not decode: %+v", list.Items[i].Name, list.Items[i])
				}
				last[r.Event] = r
			}
			if cond(last) {
				return last
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s; reports %+v", what, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func only(reports map[string]Report, keep func(Report) bool) []Report {
	var out []Report
	for _, r := range reports {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

func TestReporterRecordsAndRefreshesReports(t *testing.T) {
	e := testenv.Shared(t)
	ctx := testCtx(t)
	ns := e.Namespace(t, "report")
	clock := &stepClock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	ticks := make(chan time.Time)
	r, err := New(e.Config, ns, "nodeapp-abc", "nodeapp", logr.Discard(), WithClock(clock.Now), WithRefreshTicks(ticks))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })

	gen3 := testComponent(ns, "statestore", 3)
	r.ComponentLoaded(gen3)
	reports := waitReports(t, ctx, e.Client, ns, "the loaded report", func(m map[string]Report) bool { return len(m) == 1 })
	var loaded Report
	for _, rep := range reports {
		loaded = rep
	}
	if !loaded.Loaded || loaded.Generation != 3 || loaded.AppID != "nodeapp" || loaded.Pod != "nodeapp-abc" || loaded.Component != "statestore" {
		t.Fatalf("report = %+v", loaded)
	}
	ev := &eventsv1.Event{}
	if err := e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: loaded.Event}, ev); err != nil {
		t.Fatal(err)
	}
	if ev.Note != "app nodeapp (pod nodeapp-abc): loaded generation 3" || ev.Type != "Normal" || ev.Reason != ReasonLoaded ||
		ev.ReportingController != Controller || ev.ReportingInstance != "nodeapp-abc" {
		t.Errorf("Event = %+v", ev)
	}

	// The same report again, as after a restart, lands on the same Event, later.
	r.ComponentLoaded(gen3)
	waitReports(t, ctx, e.Client, ns, "the repeated report", func(m map[string]Report) bool {
		return len(m) == 1 && m[loaded.Event].At.After(loaded.At)
	})

	// The next generation fails: a Warning beside the old report.
	gen4 := testComponent(ns, "statestore", 4)
	r.ComponentFailed(gen4, errors.New(`init state store "statestore": dial tcp 10.0.0.1:6379: connect: connection refused`))
	reports = waitReports(t, ctx, e.Client, ns, "the failure", func(m map[string]Report) bool { return len(m) == 2 })
	failed := only(reports, func(r Report) bool { return !r.Loaded })
	if len(failed) != 1 || failed[0].Generation != 4 || failed[0].Error != `init state store "statestore": dial tcp 10.0.0.1:6379: connect: connection refused` {
		t.Fatalf("failure report = %+v", failed)
	}
	loadedAt := reports[loaded.Event].At

	// A refresh moves the current report only.
	ticks <- time.Time{}
	waitReports(t, ctx, e.Client, ns, "the refreshed failure", func(m map[string]Report) bool {
		return m[failed[0].Event].At.After(failed[0].At)
	})
	reports = waitReports(t, ctx, e.Client, ns, "both reports", func(m map[string]Report) bool { return len(m) == 2 })
	if !reports[loaded.Event].At.Equal(loadedAt) {
		t.Errorf("the superseded report was refreshed: %s, then %s", loadedAt, reports[loaded.Event].At)
	}

	// An Event that expired (deleted here) comes back with the next refresh.
	if err := e.Client.Delete(ctx, &eventsv1.Event{ObjectMeta: ev.ObjectMeta}); err != nil {
		t.Fatal(err)
	}
	failedEv := &eventsv1.Event{}
	failedEv.Namespace, failedEv.Name = ns, failed[0].Event
	if err := e.Client.Delete(ctx, failedEv); err != nil {
		t.Fatal(err)
	}
	ticks <- time.Time{}
	waitReports(t, ctx, e.Client, ns, "the failure recorded again", func(m map[string]Report) bool {
		_, ok := m[failed[0].Event]
		return len(m) == 1 && ok
	})

	// A removed component is no longer refreshed; what is queued is written by Close.
	r.ComponentRemoved(gen4)
	if err := e.Client.Delete(ctx, failedEv); err != nil {
		t.Fatal(err)
	}
	pubsub := testComponent(ns, "pubsub", 1)
	r.ComponentLoaded(pubsub)
	ticks <- time.Time{}
	ticks <- time.Time{} // the first tick has been handled once the second is taken
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	list := &eventsv1.EventList{}
	if err := e.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Regarding.Name != "pubsub" {
		t.Errorf("after Close, Events = %+v", list.Items)
	}
	r.ComponentLoaded(gen3) // ignored once closed
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCloseWritesPendingReports(t *testing.T) {
	e := testenv.Shared(t)
	ctx := testCtx(t)
	ns := e.Namespace(t, "report-close")
	r, err := New(e.Config, ns, "pythonapp-x", "pythonapp", logr.Discard(), WithRefreshInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		r.ComponentLoaded(testComponent(ns, "c"+string(rune('a'+i)), 1))
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	list := &eventsv1.EventList{}
	if err := e.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 5 {
		t.Errorf("Close left %d of 5 reports unwritten", 5-len(list.Items))
	}
}

// errorSink counts the errors logged through it.
type errorSink struct {
	mu     sync.Mutex
	errors []error
}

func (s *errorSink) Init(logr.RuntimeInfo)          {}
func (s *errorSink) Enabled(int) bool               { return false }
func (s *errorSink) Info(int, string, ...any)       {}
func (s *errorSink) WithValues(...any) logr.LogSink { return s }
func (s *errorSink) WithName(string) logr.LogSink   { return s }
func (s *errorSink) Error(err error, _ string, _ ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errors = append(s.errors, err)
}

func TestReporterGivesUpOnInvalidEvents(t *testing.T) {
	e := testenv.Shared(t)
	ctx := testCtx(t)
	ns := e.Namespace(t, "report-invalid")
	sink := &errorSink{}
	r, err := New(e.Config, ns, "nodeapp-abc", "nodeapp", logr.New(sink), WithRefreshInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	// No Component can have this name, nor an Event one derived from it: the API server
	// refuses the report for good, so it is logged once and not retried.
	r.ComponentLoaded(testComponent(ns, "Not_A_Name", 1))
	r.ComponentLoaded(testComponent(ns, "statestore", 1))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	list := &eventsv1.EventList{}
	if err := e.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(list.Items) != 1 || len(sink.errors) != 1 || !apierrors.IsInvalid(sink.errors[0]) {
		t.Errorf("Events %d, logged errors %v; want the valid report written and one Invalid error", len(list.Items), sink.errors)
	}
}

func TestNilReporter(t *testing.T) {
	var r *Reporter
	r.ComponentLoaded(testComponent("ns", "c", 1))
	r.ComponentFailed(testComponent("ns", "c", 1), errors.New("x"))
	r.ComponentRemoved(testComponent("ns", "c", 1))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNewNeedsThePod(t *testing.T) {
	if _, err := New(nil, "ns", "", "app", logr.Discard()); err == nil {
		t.Error("New accepted an empty pod name")
	}
}
