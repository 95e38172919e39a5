package controllers_test

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	daprv2alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v2alpha1"
	"github.com/outrigger-dev/outrigger/controllers"
	"github.com/outrigger-dev/outrigger/internal/testenv"
)

func componentStatus(o client.Object) *common.Status {
	return &o.(*daprv1alpha1.Component).Status.Status
}
func subscriptionStatus(o client.Object) *common.Status {
	return &o.(*daprv2alpha1.Subscription).Status
}
func resiliencyStatus(o client.Object) *common.Status { return &o.(*daprv1alpha1.Resiliency).Status }

func TestComponentBecomesReadyWhenItsSecretAppears(t *testing.T) {
	e, c := env(t), ctx(t)
	ns := e.Namespace(t, "secret-later")
	comp := &daprv1alpha1.Component{ObjectMeta: metav1.ObjectMeta{Name: "statestore", Namespace: ns}}
	comp.Spec.Type, comp.Spec.Version = "state.redis", "v1"
	comp.Spec.Metadata = []common.NameValuePair{
		{Name: "redisHost", Value: common.DynamicValue{JSON: jsonValue(`"localhost:6379"`)}},
		{Name: "redisPassword", SecretKeyRef: common.SecretKeyRef{Name: "redis", Key: "redis-password"}},
	}
	if err := e.Client.Create(c, comp); err != nil {
		t.Fatal(err)
	}
	cond := waitReady(t, c, e.Client, comp, componentStatus, metav1.ConditionFalse, controllers.ReasonSecretNotFound)
	if !strings.Contains(cond.Message, `"redis"`) || !strings.Contains(cond.Message, "spec.metadata[1]") {
		t.Errorf("message %q should name the Secret and the field", cond.Message)
	}
	waitEvent(t, e, ns, "statestore", controllers.ReasonSecretNotFound)

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "redis", Namespace: ns}, StringData: map[string]string{"other": "x"}}
	if err := e.Client.Create(c, secret); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, e.Client, comp, componentStatus, metav1.ConditionFalse, controllers.ReasonSecretKeyNotFound)

	secret.StringData = map[string]string{"redis-password": "hunter2"}
	if err := e.Client.Update(c, secret); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, e.Client, comp, componentStatus, metav1.ConditionTrue, controllers.ReasonReady)

	// A spec change bumps the generation; the status must follow it.
	comp.Spec.Metadata[1].SecretKeyRef.Name = "gone"
	if err := e.Client.Update(c, comp); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, e.Client, comp, componentStatus, metav1.ConditionFalse, controllers.ReasonSecretNotFound)
	if comp.Generation < 2 {
		t.Errorf("generation = %d, want it bumped by the update", comp.Generation)
	}
}

func TestComponentWithSecretStoreThatAppearsLater(t *testing.T) {
	e, c := env(t), ctx(t)
	ns := e.Namespace(t, "store-later")
	comp := &daprv1alpha1.Component{ObjectMeta: metav1.ObjectMeta{Name: "statestore", Namespace: ns}}
	comp.Spec.Type, comp.Spec.Version = "state.redis", "v1"
	comp.Auth.SecretStore = "localsecrets"
	if err := e.Client.Create(c, comp); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, e.Client, comp, componentStatus, metav1.ConditionFalse, controllers.ReasonSecretStoreNotFound)

	store := &daprv1alpha1.Component{ObjectMeta: metav1.ObjectMeta{Name: "localsecrets", Namespace: ns}}
	store.Spec.Type, store.Spec.Version = "secretstores.local.file", "v1"
	if err := e.Client.Create(c, store); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, e.Client, comp, componentStatus, metav1.ConditionTrue, controllers.ReasonReady)
}

func TestSubscriptionFollowsItsPubsub(t *testing.T) {
	e, c := env(t), ctx(t)
	ns := e.Namespace(t, "sub")
	sub := &daprv1alpha1.Subscription{ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: ns}}
	sub.Spec.Pubsubname, sub.Spec.Topic, sub.Spec.Route = "pubsub", "orders", "/orders"
	if err := e.Client.Create(c, sub); err != nil {
		t.Fatal(err)
	}
	stored := &daprv2alpha1.Subscription{ObjectMeta: sub.ObjectMeta}
	waitReady(t, c, e.Client, stored, subscriptionStatus, metav1.ConditionFalse, controllers.ReasonPubsubNotFound)

	ps := &daprv1alpha1.Component{ObjectMeta: metav1.ObjectMeta{Name: "pubsub", Namespace: ns}}
	ps.Spec.Type, ps.Spec.Version = "pubsub.redis", "v1"
	if err := e.Client.Create(c, ps); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, e.Client, stored, subscriptionStatus, metav1.ConditionTrue, controllers.ReasonReady)

	// The status written through v2alpha1 reads back through v1alpha1 too.
	if err := e.Client.Get(c, client.ObjectKeyFromObject(sub), sub); err != nil {
		t.Fatal(err)
	}
	if len(sub.Status.Conditions) != 1 || sub.Status.Conditions[0].Status != metav1.ConditionTrue {
		t.Errorf("v1alpha1 status = %+v", sub.Status)
	}
}

func TestResiliencyFollowsItsComponents(t *testing.T) {
	e, c := env(t), ctx(t)
	ns := e.Namespace(t, "res")
	res := &daprv1alpha1.Resiliency{ObjectMeta: metav1.ObjectMeta{Name: "resiliency", Namespace: ns}}
	res.Spec.Policies.Timeouts = map[string]string{"general": "5s"}
	res.Spec.Targets.Components = map[string]daprv1alpha1.ComponentPolicyNames{"statestore": {Outbound: daprv1alpha1.PolicyNames{Timeout: "general"}}}
	if err := e.Client.Create(c, res); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, e.Client, res, resiliencyStatus, metav1.ConditionFalse, controllers.ReasonComponentNotFound)
	comp := &daprv1alpha1.Component{ObjectMeta: metav1.ObjectMeta{Name: "statestore", Namespace: ns}}
	comp.Spec.Type, comp.Spec.Version = "state.in-memory", "v1"
	if err := e.Client.Create(c, comp); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, e.Client, res, resiliencyStatus, metav1.ConditionTrue, controllers.ReasonReady)
}

// waitEvent waits for the Event that explains a condition, as kubectl describe shows it.
func waitEvent(t *testing.T, e *testenv.Env, ns, name, reason string) {
	t.Helper()
	c := ctx(t)
	for {
		list := &eventsv1.EventList{}
		if err := e.Client.List(c, list, client.InNamespace(ns)); err == nil {
			for _, ev := range list.Items {
				if ev.Regarding.Name == name && ev.Reason == reason && ev.Type == corev1.EventTypeWarning && ev.Note != "" {
					return
				}
			}
		}
		select {
		case <-c.Done():
			t.Fatalf("no %s Event for %s", reason, name)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func jsonValue(raw string) apiextensionsv1.JSON { return apiextensionsv1.JSON{Raw: []byte(raw)} }
