package controllers_test

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
	"github.com/outrigger-dev/outrigger/controllers"
	"github.com/outrigger-dev/outrigger/internal/testenv"
	"github.com/outrigger-dev/outrigger/webhooks/validation"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The admission webhooks are installed with failurePolicy Fail, so they run too.
func env(t *testing.T) *testenv.Env {
	return testenv.Shared(t, controllers.SetupWithManager, validation.SetupWithManager)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// waitReady polls the object until its Ready condition has the status and reason, for
// the current generation, or the context deadline passes.
func waitReady(t *testing.T, ctx context.Context, c client.Client, obj client.Object, status func(client.Object) *common.Status,
	want metav1.ConditionStatus, reason string) *metav1.Condition {
	t.Helper()
	var last *metav1.Condition
	for {
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err == nil {
			st := status(obj)
			last = meta.FindStatusCondition(st.Conditions, common.ConditionReady)
			if last != nil && last.Status == want && last.Reason == reason &&
				st.ObservedGeneration == obj.GetGeneration() && last.ObservedGeneration == obj.GetGeneration() {
				return last
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: Ready never became %s/%s; last condition %+v", obj.GetName(), want, reason, last)
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}
