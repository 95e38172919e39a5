package controllers

import (
	"fmt"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/outrigger-dev/outrigger/sidecar/report"
)

func TestComponentAppsStatus(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	loaded := func(pod string, gen int64, at int) report.Report {
		return report.Report{AppID: "nodeapp", Pod: pod, Generation: gen, Loaded: true, At: t0.Add(time.Duration(at) * time.Second), Event: fmt.Sprintf("l-%s-%d", pod, gen)}
	}
	failed := func(pod string, gen int64, at int, msg string) report.Report {
		return report.Report{AppID: "nodeapp", Pod: pod, Generation: gen, Error: msg, At: t0.Add(time.Duration(at) * time.Second), Event: fmt.Sprintf("f-%s-%d", pod, gen)}
	}
	live := func(pods ...string) map[string]bool {
		m := map[string]bool{}
		for _, p := range pods {
			m[p] = true
		}
		return m
	}
	tests := []struct {
		name       string
		gen        int64
		reports    []report.Report
		live       map[string]bool
		loaded     int32
		failed     int32
		failedApps []string
		status     metav1.ConditionStatus
		reason     string
		message    string
	}{
		{
			name: "no reports", gen: 1, live: live("a"),
			status: metav1.ConditionUnknown, reason: ReasonNoReports, message: "No sidecar has reported on generation 1 yet",
		},
		{
			name: "all loaded", gen: 2, live: live("a", "b"),
			reports: []report.Report{loaded("a", 2, 1), loaded("b", 2, 1)},
			loaded:  2, status: metav1.ConditionTrue, reason: ReasonAppsLoaded, message: "2 sidecars loaded generation 2",
		},
		{
			name: "one failed", gen: 2, live: live("a", "b"),
			reports: []report.Report{loaded("a", 2, 1), failed("b", 2, 1, "connection refused")},
			loaded:  1, failed: 1, failedApps: []string{"nodeapp/b"}, status: metav1.ConditionFalse, reason: ReasonAppsFailed,
			message: "1 sidecar failed to initialise generation 2 (nodeapp/b), 1 loaded it; first error: connection refused",
		},
		{
			name: "reports about an older generation are pending", gen: 3, live: live("a", "b"),
			reports: []report.Report{loaded("a", 2, 1), failed("b", 2, 2, "x"), loaded("b", 3, 3)},
			loaded:  1, status: metav1.ConditionTrue, reason: ReasonAppsLoaded, message: "1 sidecar loaded generation 3",
		},
		{
			name: "only older generations", gen: 3, live: live("a"),
			reports: []report.Report{loaded("a", 2, 1)},
			status:  metav1.ConditionUnknown, reason: ReasonNoReports, message: "No sidecar has reported on generation 3 yet",
		},
		{
			name: "a newer generation's failure supersedes the older load", gen: 4, live: live("a"),
			reports: []report.Report{loaded("a", 3, 1), failed("a", 4, 2, "bad password")},
			failed:  1, failedApps: []string{"nodeapp/a"}, status: metav1.ConditionFalse, reason: ReasonAppsFailed,
			message: "1 sidecar failed to initialise generation 4 (nodeapp/a), 0 loaded it; first error: bad password",
		},
		{
			name: "a later load supersedes the failure", gen: 4, live: live("a"),
			reports: []report.Report{failed("a", 4, 1, "x"), loaded("a", 4, 2)},
			loaded:  1, status: metav1.ConditionTrue, reason: ReasonAppsLoaded, message: "1 sidecar loaded generation 4",
		},
		{
			name: "a later failure of the same generation counts", gen: 4, live: live("a"),
			reports: []report.Report{loaded("a", 4, 1), failed("a", 4, 2, "x")},
			failed:  1, failedApps: []string{"nodeapp/a"}, status: metav1.ConditionFalse, reason: ReasonAppsFailed,
			message: "1 sidecar failed to initialise generation 4 (nodeapp/a), 0 loaded it; first error: x",
		},
		{
			name: "a tie goes to the failure", gen: 1, live: live("a"),
			reports: []report.Report{loaded("a", 1, 1), failed("a", 1, 1, "x")},
			failed:  1, failedApps: []string{"nodeapp/a"}, status: metav1.ConditionFalse, reason: ReasonAppsFailed,
			message: "1 sidecar failed to initialise generation 1 (nodeapp/a), 0 loaded it; first error: x",
		},
		{
			name: "pods that are gone do not count", gen: 1, live: live("a"),
			reports: []report.Report{loaded("a", 1, 1), failed("gone", 1, 1, "x")},
			loaded:  1, status: metav1.ConditionTrue, reason: ReasonAppsLoaded, message: "1 sidecar loaded generation 1",
		},
		{
			name: "reports about an earlier Component of the same name do not count", gen: 1, live: live("a", "b"),
			reports: []report.Report{
				{AppID: "nodeapp", Pod: "a", Generation: 1, Error: "old", ComponentUID: "old-uid", At: t0},
				{AppID: "nodeapp", Pod: "b", Generation: 1, Loaded: true, ComponentUID: "uid", At: t0},
			},
			loaded: 1, status: metav1.ConditionTrue, reason: ReasonAppsLoaded, message: "1 sidecar loaded generation 1",
		},
		{
			name: "failed apps are sorted and bounded", gen: 1,
			live: live("p1", "p2", "p3", "p4", "p5", "p6", "p7"),
			reports: []report.Report{
				failed("p7", 1, 1, "e7"), failed("p3", 1, 1, "e3"), failed("p5", 1, 1, "e5"), failed("p1", 1, 1, "e1"),
				failed("p6", 1, 1, "e6"), failed("p2", 1, 1, "e2"), loaded("p4", 1, 1),
			},
			loaded: 1, failed: 6, failedApps: []string{"nodeapp/p1", "nodeapp/p2", "nodeapp/p3", "nodeapp/p5", "nodeapp/p6"},
			status: metav1.ConditionFalse, reason: ReasonAppsFailed,
			message: "6 sidecars failed to initialise generation 1 (nodeapp/p1, nodeapp/p2, nodeapp/p3 and 3 more), 1 loaded it; first error: e1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The outcome must not depend on the order the cache lists the Events in.
			reversed := slices.Clone(tt.reports)
			slices.Reverse(reversed)
			for _, reports := range [][]report.Report{tt.reports, reversed} {
				apps, cond := componentAppsStatus(tt.gen, types.UID("uid"), reports, tt.live)
				if apps.Loaded != tt.loaded || apps.Failed != tt.failed || !slices.Equal(apps.FailedApps, tt.failedApps) {
					t.Errorf("apps = %+v, want loaded %d failed %d %v", apps, tt.loaded, tt.failed, tt.failedApps)
				}
				if cond.Type != ConditionAppsLoaded || cond.Status != tt.status || cond.Reason != tt.reason || cond.Message != tt.message || cond.ObservedGeneration != tt.gen {
					t.Errorf("condition = %+v\nwant %s/%s %q", cond, tt.status, tt.reason, tt.message)
				}
			}
		})
	}
}
