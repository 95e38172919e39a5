package report

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
)

func testComponent(ns, name string, gen int64) *daprv1alpha1.Component {
	return &daprv1alpha1.Component{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: "uid-1", Generation: gen}}
}

func TestEventRoundTrip(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.UTC)
	tests := []struct {
		name      string
		err       error
		wantNote  string
		wantType  string
		wantError string
	}{
		{name: "loaded", wantNote: "app nodeapp (pod nodeapp-abc): loaded generation 3", wantType: corev1.EventTypeNormal},
		{name: "failed", err: errors.New(`init state store "statestore": dial tcp: connection refused`),
			wantNote:  `app nodeapp (pod nodeapp-abc): generation 3 failed to initialise: init state store "statestore": dial tcp: connection refused`,
			wantType:  corev1.EventTypeWarning,
			wantError: `init state store "statestore": dial tcp: connection refused`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := newEvent(testComponent("apps", "statestore", 3), "apps", "nodeapp", "nodeapp-abc", tt.err, at)
			if ev.Note != tt.wantNote || ev.Type != tt.wantType {
				t.Errorf("note %q type %s, want %q %s", ev.Note, ev.Type, tt.wantNote, tt.wantType)
			}
			if ev.ReportingController != Controller || ev.ReportingInstance != "nodeapp-abc" || ev.Regarding.Kind != "Component" ||
				ev.Regarding.UID != "uid-1" || ev.Related == nil || ev.Related.Name != "nodeapp-abc" || ev.Labels[LabelReport] != LabelReportComponent {
				t.Errorf("event = %+v", ev)
			}
			r, ok := Decode(ev)
			if !ok {
				t.Fatal("Decode refused the Event it wrote")
			}
			want := Report{Component: "statestore", ComponentUID: "uid-1", AppID: "nodeapp", Pod: "nodeapp-abc", Generation: 3,
				Loaded: tt.err == nil, Error: tt.wantError, At: at, Event: ev.Name}
			if r != want {
				t.Errorf("Decode = %+v, want %+v", r, want)
			}
			if again := newEvent(testComponent("apps", "statestore", 3), "apps", "nodeapp", "nodeapp-abc", tt.err, at.Add(time.Hour)); again.Name != ev.Name {
				t.Errorf("the same report names another Event: %s, %s", again.Name, ev.Name)
			}
		})
	}
}

func TestEventNamesDiffer(t *testing.T) {
	at := time.Now()
	names := map[string]string{}
	for what, ev := range map[string]any{
		"loaded gen 3":  newEvent(testComponent("apps", "statestore", 3), "apps", "nodeapp", "nodeapp-abc", nil, at),
		"loaded gen 4":  newEvent(testComponent("apps", "statestore", 4), "apps", "nodeapp", "nodeapp-abc", nil, at),
		"other pod":     newEvent(testComponent("apps", "statestore", 3), "apps", "nodeapp", "nodeapp-def", nil, at),
		"failed gen 3":  newEvent(testComponent("apps", "statestore", 3), "apps", "nodeapp", "nodeapp-abc", errors.New("x"), at),
		"other failure": newEvent(testComponent("apps", "statestore", 3), "apps", "nodeapp", "nodeapp-abc", errors.New("y"), at),
	} {
		name := ev.(interface{ GetName() string }).GetName()
		if prev, ok := names[name]; ok {
			t.Errorf("%s and %s share the Event name %s", what, prev, name)
		}
		names[name] = what
	}
}

func TestDecodeRejects(t *testing.T) {
	base := newEvent(testComponent("apps", "statestore", 3), "apps", "nodeapp", "nodeapp-abc", nil, time.Now())
	tests := []struct {
		name   string
		change func(ev *eventsv1.Event)
	}{
		{name: "another controller", change: func(ev *eventsv1.Event) { ev.ReportingController = "outrigger-operator" }},
		{name: "another kind", change: func(ev *eventsv1.Event) { ev.Regarding.Kind = "Pod" }},
		{name: "another reason", change: func(ev *eventsv1.Event) { ev.Reason = "SecretNotFound" }},
		{name: "no generation", change: func(ev *eventsv1.Event) { delete(ev.Annotations, AnnotationGeneration) }},
		{name: "bad generation", change: func(ev *eventsv1.Event) { ev.Annotations[AnnotationGeneration] = "three" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := base.DeepCopy()
			tt.change(ev)
			if r, ok := Decode(ev); ok {
				t.Errorf("Decode accepted %+v", r)
			}
		})
	}
}

func TestDecodeTakesTheLatestTime(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ev := newEvent(testComponent("apps", "statestore", 3), "apps", "nodeapp", "nodeapp-abc", nil, at)
	ev.Annotations[AnnotationReportedAt] = at.Add(time.Minute).Format(time.RFC3339Nano)
	if r, _ := Decode(ev); !r.At.Equal(at.Add(time.Minute)) {
		t.Errorf("At = %s, want reported-at", r.At)
	}
	ev.Annotations[AnnotationReportedAt] = "garbage"
	if r, _ := Decode(ev); !r.At.Equal(at) {
		t.Errorf("At = %s, want eventTime", r.At)
	}
}

func TestLimits(t *testing.T) {
	long := strings.Repeat("é", 2000)
	ev := newEvent(testComponent("apps", strings.Repeat("c", 253), 1), "apps", "nodeapp", strings.Repeat("p", 200), errors.New(long), time.Now())
	if len(ev.Note) > noteLimit || !utf8.ValidString(ev.Note) || !strings.HasSuffix(ev.Note, "…") {
		t.Errorf("note is %d bytes, valid UTF-8 %v", len(ev.Note), utf8.ValidString(ev.Note))
	}
	if len(ev.ReportingInstance) > instanceLimit {
		t.Errorf("reportingInstance is %d bytes", len(ev.ReportingInstance))
	}
	if len(ev.Name) > nameLimit {
		t.Errorf("name is %d bytes", len(ev.Name))
	}
	if r, ok := Decode(ev); !ok || r.Pod != strings.Repeat("p", 200) {
		t.Errorf("the full pod name should come back from the annotation: %+v", r)
	}
	if got := eventName("a-.b", "0123"); got != "a-.b.0123" {
		t.Errorf("eventName = %q", got)
	}
}
