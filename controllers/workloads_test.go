package controllers_test

import (
	"context"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outrigger-dev/outrigger/controllers"
	"github.com/outrigger-dev/outrigger/internal/testenv"
)

func podTemplate(labels, annotations map[string]string, sa string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			Containers:         []corev1.Container{{Name: "app", Image: "example/app"}},
		},
	}
}

func newDeployment(ns, name string, annotations map[string]string, sa string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podTemplate(labels, annotations, sa),
		},
	}
}

// eventually polls cond until it holds or the test's deadline passes.
func eventually(t *testing.T, c context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-c.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func exists(c context.Context, e *testenv.Env, obj client.Object, ns, name string) bool {
	err := e.Client.Get(c, types.NamespacedName{Namespace: ns, Name: name}, obj)
	return err == nil
}

func gone(c context.Context, e *testenv.Env, obj client.Object, ns, name string) bool {
	err := e.Client.Get(c, types.NamespacedName{Namespace: ns, Name: name}, obj)
	return apierrors.IsNotFound(err)
}

func subjects(b *rbacv1.RoleBinding) []string {
	var out []string
	for _, s := range b.Subjects {
		out = append(out, s.Name)
	}
	return out
}

func TestAppServiceAndSidecarRBACFollowAnnotatedDeployments(t *testing.T) {
	e, c := env(t), ctx(t)
	ns := e.Namespace(t, "apps")

	node := newDeployment(ns, "nodeapp", map[string]string{
		"dapr.io/enabled": "true", "dapr.io/app-id": "nodeapp", "dapr.io/app-port": "3000", "dapr.io/enable-api-logging": "true",
	}, "")
	plain := newDeployment(ns, "plain", nil, "")
	// A CronJob's pods are injected too: its service account gets the sidecar Role.
	cron := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly"},
		Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
			Template: podTemplate(nil, map[string]string{"dapr.io/enabled": "true", "dapr.io/app-id": "nightly",
				"dapr.io/disable-builtin-k8s-secret-store": "true"}, "batch-sa"),
		}}},
	}
	cron.Spec.JobTemplate.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever
	if err := e.Client.Create(c, cron); err != nil {
		t.Fatal(err)
	}
	quiet := newDeployment(ns, "quiet", map[string]string{
		"dapr.io/enabled": "true", "dapr.io/disable-builtin-k8s-secret-store": "true", "dapr.io/grpc-port": "50011",
	}, "quiet-sa")
	for _, d := range []*appsv1.Deployment{node, plain, quiet} {
		if err := e.Client.Create(c, d); err != nil {
			t.Fatal(err)
		}
	}

	svc := &corev1.Service{}
	eventually(t, c, "Service nodeapp-dapr", func() bool { return exists(c, e, svc, ns, "nodeapp-dapr") })
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("clusterIP = %q, want headless", svc.Spec.ClusterIP)
	}
	wantPorts := map[string][2]int32{"http": {80, 3500}, "dapr-grpc": {50001, 50001}, "dapr-internal": {50002, 50002}, "dapr-metrics": {9090, 9090}}
	if len(svc.Spec.Ports) != len(wantPorts) {
		t.Errorf("ports = %+v", svc.Spec.Ports)
	}
	for _, p := range svc.Spec.Ports {
		if w := wantPorts[p.Name]; p.Port != w[0] || p.TargetPort.IntVal != w[1] {
			t.Errorf("port %s = %d->%s, want %d->%d", p.Name, p.Port, p.TargetPort.String(), w[0], w[1])
		}
	}
	if svc.Spec.Selector["app"] != "nodeapp" {
		t.Errorf("selector = %v", svc.Spec.Selector)
	}
	if owner := metav1.GetControllerOf(svc); owner == nil || owner.Kind != "Deployment" || owner.Name != "nodeapp" {
		t.Errorf("owner = %+v, want the Deployment", owner)
	}
	for k, want := range map[string]string{"dapr.io/app-id": "nodeapp", "prometheus.io/probe": "true", "prometheus.io/port": "9090", "prometheus.io/path": "/"} {
		if svc.Annotations[k] != want {
			t.Errorf("annotation %s = %q, want %q", k, svc.Annotations[k], want)
		}
	}

	// app-id defaults to the workload's name; annotated ports are followed.
	quietSvc := &corev1.Service{}
	eventually(t, c, "Service quiet-dapr", func() bool { return exists(c, e, quietSvc, ns, "quiet-dapr") })
	for _, p := range quietSvc.Spec.Ports {
		if p.Name == "dapr-grpc" && p.TargetPort.IntVal != 50011 {
			t.Errorf("annotated grpc port not followed: %+v", p)
		}
	}
	if gone(c, e, &corev1.Service{}, ns, "plain-dapr") == false {
		t.Error("a Deployment without dapr.io/enabled got an app Service")
	}

	binding := &rbacv1.RoleBinding{}
	eventually(t, c, "sidecar RoleBinding for both accounts", func() bool {
		return exists(c, e, binding, ns, controllers.SidecarRoleName) && slices.Equal(subjects(binding), []string{"batch-sa", "default", "quiet-sa"})
	})
	role := &rbacv1.Role{}
	if !exists(c, e, role, ns, controllers.SidecarRoleName) || len(role.Rules) != 2 || role.Rules[0].APIGroups[0] != "dapr.io" ||
		!slices.Equal(role.Rules[0].Verbs, []string{"get", "list", "watch"}) ||
		role.Rules[1].APIGroups[0] != "events.k8s.io" || !slices.Equal(role.Rules[1].Verbs, []string{"create", "patch"}) {
		t.Errorf("sidecar Role = %+v", role.Rules)
	}
	secrets := &rbacv1.RoleBinding{}
	eventually(t, c, "secrets RoleBinding for the default account only", func() bool {
		return exists(c, e, secrets, ns, controllers.SidecarSecretsRoleName) && slices.Equal(subjects(secrets), []string{"default"})
	})

	// Edits to the managed Role are reverted.
	role.Rules[0].Verbs = append(role.Rules[0].Verbs, "delete")
	if err := e.Client.Update(c, role); err != nil {
		t.Fatal(err)
	}
	eventually(t, c, "the Role edit reverted", func() bool {
		return exists(c, e, role, ns, controllers.SidecarRoleName) && len(role.Rules[0].Verbs) == 3
	})

	// The Service goes away with its Deployment; the RBAC once no annotated workload is left.
	if err := e.Client.Delete(c, node); err != nil {
		t.Fatal(err)
	}
	eventually(t, c, "nodeapp-dapr deleted", func() bool { return gone(c, e, &corev1.Service{}, ns, "nodeapp-dapr") })
	eventually(t, c, "secrets RBAC removed with the last workload that reads Secrets", func() bool {
		return gone(c, e, &rbacv1.Role{}, ns, controllers.SidecarSecretsRoleName) && gone(c, e, &rbacv1.RoleBinding{}, ns, controllers.SidecarSecretsRoleName)
	})
	if err := e.Client.Delete(c, quiet); err != nil {
		t.Fatal(err)
	}
	if err := e.Client.Delete(c, cron); err != nil {
		t.Fatal(err)
	}
	eventually(t, c, "sidecar RBAC removed", func() bool {
		return gone(c, e, &rbacv1.Role{}, ns, controllers.SidecarRoleName) && gone(c, e, &rbacv1.RoleBinding{}, ns, controllers.SidecarRoleName)
	})
}

func TestAppServiceForStatefulSetAndAnnotationRemoval(t *testing.T) {
	e, c := env(t), ctx(t)
	ns := e.Namespace(t, "sts")
	labels := map[string]string{"app": "ledger"}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ledger"},
		Spec: appsv1.StatefulSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podTemplate(labels, map[string]string{"dapr.io/enabled": "true", "dapr.io/app-id": "books"}, ""),
		},
	}
	if err := e.Client.Create(c, sts); err != nil {
		t.Fatal(err)
	}
	eventually(t, c, "Service books-dapr", func() bool { return exists(c, e, &corev1.Service{}, ns, "books-dapr") })

	// Changing the app id moves the Service; turning injection off removes it.
	sts.Spec.Template.Annotations["dapr.io/app-id"] = "ledger2"
	if err := e.Client.Update(c, sts); err != nil {
		t.Fatal(err)
	}
	eventually(t, c, "Service moved to ledger2-dapr", func() bool {
		return exists(c, e, &corev1.Service{}, ns, "ledger2-dapr") && gone(c, e, &corev1.Service{}, ns, "books-dapr")
	})
	// Without an app id its pods would each be their own app: no Service then, as in Dapr.
	delete(sts.Spec.Template.Annotations, "dapr.io/app-id")
	if err := e.Client.Update(c, sts); err != nil {
		t.Fatal(err)
	}
	eventually(t, c, "Service removed without an app id", func() bool { return gone(c, e, &corev1.Service{}, ns, "ledger2-dapr") })
	if !gone(c, e, &corev1.Service{}, ns, "ledger-dapr") {
		t.Error("a Service was made for a StatefulSet without dapr.io/app-id")
	}
	sts.Spec.Template.Annotations["dapr.io/app-id"] = "ledger2"
	if err := e.Client.Update(c, sts); err != nil {
		t.Fatal(err)
	}
	eventually(t, c, "Service back", func() bool { return exists(c, e, &corev1.Service{}, ns, "ledger2-dapr") })
	sts.Spec.Template.Annotations["dapr.io/enabled"] = "false"
	if err := e.Client.Update(c, sts); err != nil {
		t.Fatal(err)
	}
	eventually(t, c, "Service removed", func() bool { return gone(c, e, &corev1.Service{}, ns, "ledger2-dapr") })
}
