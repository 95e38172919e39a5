// Package report tells the operator, through Kubernetes Events on each Component,
// whether this sidecar loaded the Component or failed to initialise it.
//
// The sidecar writes the Events (Reporter) and the operator reads them back (Decode)
// to fill the Component's status.apps and its AppsLoaded condition; the format of a
// report lives only here.
//
// Each distinct report (component, pod, outcome, message) is one events.k8s.io/v1
// Event with a name derived from its content, so a report made again, after a retry
// or a restart, lands on the same Event. Events are immutable in events.k8s.io/v1
// except for their metadata, so the time of the latest report is kept in the
// annotation outrigger.dev/reported-at; refreshing it also renews the Event's TTL on
// the API server (--event-ttl, one hour by default).
package report

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
)

// The fields of a report Event.
const (
	// Controller is the reportingController of every report.
	Controller = "outrigger.dev/sidecar"
	// ReasonLoaded (Normal): the sidecar initialised this generation and serves it.
	ReasonLoaded = "ComponentLoaded"
	// ReasonInitFailed (Warning): this generation failed to initialise; the sidecar
	// keeps serving the instance it had, if any.
	ReasonInitFailed = "ComponentInitFailed"
	// Action of every report.
	Action = "Load"

	// LabelReport marks report Events, so that the operator watches only those.
	LabelReport = "outrigger.dev/report"
	// LabelReportComponent is the value of LabelReport on Component reports.
	LabelReportComponent = "component"

	AnnotationAppID      = "outrigger.dev/app-id"
	AnnotationPod        = "outrigger.dev/pod"
	AnnotationGeneration = "outrigger.dev/generation"
	// AnnotationReportedAt is the time, RFC 3339 with nanoseconds, at which the sidecar
	// last made or refreshed this report.
	AnnotationReportedAt = "outrigger.dev/reported-at"
)

// Limits of events.k8s.io/v1 (k8s.io/kubernetes/pkg/apis/core/validation).
const (
	noteLimit     = 1024
	instanceLimit = 128
	nameLimit     = 253
)

const failedMarker = " failed to initialise: "

// Report is one sidecar's latest word about one Component.
type Report struct {
	Component    string
	ComponentUID types.UID
	AppID        string
	Pod          string
	Generation   int64
	// Loaded is true for ReasonLoaded; otherwise Error says why initialisation failed.
	Loaded bool
	Error  string
	// At is when the sidecar last made or refreshed the report.
	At time.Time
	// Event is the name of the Event that carries the report.
	Event string
}

// App is the report's "app-id/pod" as listed in status.apps.failedApps.
func (r Report) App() string { return r.AppID + "/" + r.Pod }

// Decode reads a report back from an Event, and reports false for any Event that is
// not a sidecar's report about a Component.
func Decode(ev *eventsv1.Event) (Report, bool) {
	if ev.ReportingController != Controller || ev.Regarding.Kind != "Component" {
		return Report{}, false
	}
	r := Report{
		Component:    ev.Regarding.Name,
		ComponentUID: ev.Regarding.UID,
		AppID:        ev.Annotations[AnnotationAppID],
		Pod:          ev.Annotations[AnnotationPod],
		Event:        ev.Name,
		At:           ev.EventTime.Time,
	}
	switch ev.Reason {
	case ReasonLoaded:
		r.Loaded = true
	case ReasonInitFailed:
		r.Error = ev.Note
		if _, cause, ok := strings.Cut(ev.Note, failedMarker); ok {
			r.Error = cause
		}
	default:
		return Report{}, false
	}
	if r.Pod == "" {
		r.Pod = ev.ReportingInstance
	}
	gen, err := strconv.ParseInt(ev.Annotations[AnnotationGeneration], 10, 64)
	if err != nil || r.Pod == "" {
		return Report{}, false
	}
	r.Generation = gen
	if ev.Series != nil && ev.Series.LastObservedTime.After(r.At) {
		r.At = ev.Series.LastObservedTime.Time
	}
	if at, err := time.Parse(time.RFC3339Nano, ev.Annotations[AnnotationReportedAt]); err == nil && at.After(r.At) {
		r.At = at
	}
	return r, true
}

// newEvent builds the Event of one report. Its name depends only on what it says, so
// the same report made twice names the same Event.
func newEvent(c *daprv1alpha1.Component, namespace, appID, pod string, initErr error, at time.Time) *eventsv1.Event {
	ns := c.Namespace
	if ns == "" {
		ns = namespace
	}
	reason, eventType := ReasonLoaded, corev1.EventTypeNormal
	note := fmt.Sprintf("app %s (pod %s): loaded generation %d", appID, pod, c.Generation)
	if initErr != nil {
		reason, eventType = ReasonInitFailed, corev1.EventTypeWarning
		note = fmt.Sprintf("app %s (pod %s): generation %d%s%s", appID, pod, c.Generation, failedMarker, initErr.Error())
	}
	note = truncate(note, noteLimit)
	sum := sha256.Sum256([]byte(strings.Join([]string{string(c.UID), c.Name, pod, reason, note}, "\x00")))
	return &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns,
			Name:      eventName(c.Name, hex.EncodeToString(sum[:8])),
			Labels:    map[string]string{LabelReport: LabelReportComponent},
			Annotations: map[string]string{
				AnnotationAppID:      appID,
				AnnotationPod:        pod,
				AnnotationGeneration: strconv.FormatInt(c.Generation, 10),
				AnnotationReportedAt: at.UTC().Format(time.RFC3339Nano),
			},
		},
		EventTime:           metav1.NewMicroTime(at),
		ReportingController: Controller,
		ReportingInstance:   truncate(pod, instanceLimit),
		Action:              Action,
		Reason:              reason,
		Type:                eventType,
		Note:                note,
		Regarding: corev1.ObjectReference{
			APIVersion: daprv1alpha1.GroupVersion.String(), Kind: "Component",
			Namespace: ns, Name: c.Name, UID: c.UID,
		},
		Related: &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: namespace, Name: pod},
	}
}

// eventName is "<component>.<hash>", shortening the component name so that the whole
// stays a DNS subdomain.
func eventName(component, hash string) string {
	if max := nameLimit - len(hash) - 1; len(component) > max {
		component = strings.TrimRight(component[:max], ".-")
	}
	return component + "." + hash
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence, marking
// the cut with an ellipsis.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	cut := n - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}
