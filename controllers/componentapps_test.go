package controllers_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	"github.com/outrigger-dev/outrigger/controllers"
	"github.com/outrigger-dev/outrigger/internal/testenv"
	"github.com/outrigger-dev/outrigger/sidecar/report"
)

// stepClock moves one second forward on every reading, so that one sidecar's reports
// are ordered without waiting on the wall clock.
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

// injectedPod is a pod as the injector leaves it; without a node it never runs, and a
// delete removes it at once.
func injectedPod(t *testing.T, c context.Context, e *testenv.Env, ns, app, name string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
			"dapr.io/sidecar-injected": "true", "dapr.io/app-id": app,
		}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/app"}}},
	}
	if err := e.Client.Create(c, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// sidecar is the Reporter of one injected pod.
func sidecar(t *testing.T, e *testenv.Env, ns, app, pod string, clock *stepClock) *report.Reporter {
	t.Helper()
	r, err := report.New(e.Config, ns, pod, app, logr.Discard(), report.WithClock(clock.Now), report.WithRefreshInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// waitApps polls the Component until its status.apps and AppsLoaded condition, for the
// current generation, match, or the context deadline passes.
func waitApps(t *testing.T, c context.Context, e *testenv.Env, comp *daprv1alpha1.Component, loaded, failed int32,
	failedApps []string, status metav1.ConditionStatus, reason string) *metav1.Condition {
	t.Helper()
	var last *metav1.Condition
	for {
		if err := e.Client.Get(c, client.ObjectKeyFromObject(comp), comp); err == nil {
			last = meta.FindStatusCondition(comp.Status.Conditions, controllers.ConditionAppsLoaded)
			apps := comp.Status.Apps
			if last != nil && last.Status == status && last.Reason == reason && last.ObservedGeneration == comp.Generation &&
				apps != nil && apps.Loaded == loaded && apps.Failed == failed && slices.Equal(apps.FailedApps, failedApps) {
				return last
			}
		}
		select {
		case <-c.Done():
			t.Fatalf("%s: want apps %d loaded, %d failed %v, AppsLoaded %s/%s; have apps %+v, condition %+v",
				comp.Name, loaded, failed, failedApps, status, reason, comp.Status.Apps, last)
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestComponentStatusCountsSidecarReports(t *testing.T) {
	e, c := env(t), ctx(t)
	ns := e.Namespace(t, "apps")
	comp := &daprv1alpha1.Component{ObjectMeta: metav1.ObjectMeta{Name: "statestore", Namespace: ns}}
	comp.Spec.Type, comp.Spec.Version = "state.redis", "v1"
	comp.Spec.Metadata = []common.NameValuePair{{Name: "redisHost", Value: common.DynamicValue{JSON: jsonValue(`"localhost:6379"`)}}}
	if err := e.Client.Create(c, comp); err != nil {
		t.Fatal(err)
	}
	injectedPod(t, c, e, ns, "nodeapp", "nodeapp-abc")
	python := injectedPod(t, c, e, ns, "pythonapp", "pythonapp-x")
	clock := &stepClock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	node := sidecar(t, e, ns, "nodeapp", "nodeapp-abc", clock)
	py := sidecar(t, e, ns, "pythonapp", "pythonapp-x", clock)

	waitApps(t, c, e, comp, 0, 0, nil, metav1.ConditionUnknown, controllers.ReasonNoReports)

	node.ComponentLoaded(comp)
	waitApps(t, c, e, comp, 1, 0, nil, metav1.ConditionTrue, controllers.ReasonAppsLoaded)

	py.ComponentFailed(comp, errors.New(`init state store "statestore": dial tcp 10.0.0.1:6379: connect: connection refused`))
	cond := waitApps(t, c, e, comp, 1, 1, []string{"pythonapp/pythonapp-x"}, metav1.ConditionFalse, controllers.ReasonAppsFailed)
	if !strings.Contains(cond.Message, "pythonapp/pythonapp-x") || !strings.Contains(cond.Message, "connection refused") {
		t.Errorf("message %q should name the app and pod and give the error", cond.Message)
	}
	// The Ready condition of the readiness reconciler survives next to AppsLoaded.
	waitReady(t, c, e.Client, comp, componentStatus, metav1.ConditionTrue, controllers.ReasonReady)
	if meta.FindStatusCondition(comp.Status.Conditions, controllers.ConditionAppsLoaded) == nil {
		t.Errorf("AppsLoaded is gone: %+v", comp.Status.Conditions)
	}
	// kubectl describe finds the reports through the core Events API.
	events := &corev1.EventList{}
	if err := e.Client.List(c, events, client.InNamespace(ns), client.MatchingFields{"involvedObject.uid": string(comp.UID)}); err != nil {
		t.Fatal(err)
	}
	var warnings []string
	for _, ev := range events.Items {
		if ev.Reason == report.ReasonInitFailed {
			warnings = append(warnings, ev.Message)
		}
	}
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], "app pythonapp (pod pythonapp-x): generation 1 failed to initialise: ") {
		t.Errorf("warnings on the Component = %q", warnings)
	}

	// A pod that is gone no longer counts.
	if err := e.Client.Delete(c, python); err != nil {
		t.Fatal(err)
	}
	waitApps(t, c, e, comp, 1, 0, nil, metav1.ConditionTrue, controllers.ReasonAppsLoaded)

	// A new generation starts with no reports; the old ones do not count for it.
	comp.Spec.Metadata[0].Value = common.DynamicValue{JSON: jsonValue(`"redis:6379"`)}
	if err := e.Client.Update(c, comp); err != nil {
		t.Fatal(err)
	}
	waitApps(t, c, e, comp, 0, 0, nil, metav1.ConditionUnknown, controllers.ReasonNoReports)

	// The newer generation's failure supersedes the pod's earlier load...
	node.ComponentFailed(comp, errors.New("bad host"))
	waitApps(t, c, e, comp, 0, 1, []string{"nodeapp/nodeapp-abc"}, metav1.ConditionFalse, controllers.ReasonAppsFailed)
	// ...and a later load of it supersedes the failure.
	node.ComponentLoaded(comp)
	waitApps(t, c, e, comp, 1, 0, nil, metav1.ConditionTrue, controllers.ReasonAppsLoaded)

	// A pod that stopped for good no longer counts either.
	pod := &corev1.Pod{}
	if err := e.Client.Get(c, client.ObjectKey{Namespace: ns, Name: "nodeapp-abc"}, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodSucceeded
	if err := e.Client.Status().Update(c, pod); err != nil {
		t.Fatal(err)
	}
	waitApps(t, c, e, comp, 0, 0, nil, metav1.ConditionUnknown, controllers.ReasonNoReports)
}

// A Component deleted and created again under the same name starts afresh: the
// reports about the first one do not count.
func TestComponentAppsIgnoreReportsAboutAnEarlierComponent(t *testing.T) {
	e, c := env(t), ctx(t)
	ns := e.Namespace(t, "apps-again")
	newComp := func() *daprv1alpha1.Component {
		comp := &daprv1alpha1.Component{ObjectMeta: metav1.ObjectMeta{Name: "pubsub", Namespace: ns}}
		comp.Spec.Type, comp.Spec.Version = "pubsub.redis", "v1"
		return comp
	}
	comp := newComp()
	if err := e.Client.Create(c, comp); err != nil {
		t.Fatal(err)
	}
	injectedPod(t, c, e, ns, "nodeapp", "nodeapp-abc")
	node := sidecar(t, e, ns, "nodeapp", "nodeapp-abc", &stepClock{t: time.Now()})
	node.ComponentFailed(comp, errors.New("boom"))
	waitApps(t, c, e, comp, 0, 1, []string{"nodeapp/nodeapp-abc"}, metav1.ConditionFalse, controllers.ReasonAppsFailed)

	if err := e.Client.Delete(c, comp); err != nil {
		t.Fatal(err)
	}
	again := newComp()
	eventually(t, c, "the Component created again", func() bool { return e.Client.Create(c, again) == nil })
	waitApps(t, c, e, again, 0, 0, nil, metav1.ConditionUnknown, controllers.ReasonNoReports)
}
