package metricsauth_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/outrigger-dev/outrigger/internal/metricsauth"
	"github.com/outrigger-dev/outrigger/internal/testenv"
)

type countingReviews struct {
	metricsauth.TokenReviewer
	n atomic.Int32
}

func (c *countingReviews) Create(ctx context.Context, r *authenticationv1.TokenReview, o metav1.CreateOptions) (*authenticationv1.TokenReview, error) {
	c.n.Add(1)
	return c.TokenReviewer.Create(ctx, r, o)
}

type countingAccess struct {
	metricsauth.AccessReviewer
	n atomic.Int32
}

func (c *countingAccess) Create(ctx context.Context, r *authorizationv1.SubjectAccessReview, o metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error) {
	c.n.Add(1)
	return c.AccessReviewer.Create(ctx, r, o)
}

// Only a token of an account bound to a role that may get /metrics reads the metrics;
// the API server's answers are cached.
func TestGuard(t *testing.T) {
	env := testenv.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ns := env.Namespace(t, "metrics")
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, sa := range []string{"prometheus", "nobody"} {
		must(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}))
	}
	must(env.Client.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ns + "-metrics-reader"},
		Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}))
	must(env.Client.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: ns + "-metrics-reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ns + "-metrics-reader"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "prometheus"}}}))
	token := func(sa string) string {
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		must(err)
		return tr.Status.Token
	}
	prometheus, nobody := token("prometheus"), token("nobody")

	// The provider the operator uses builds from a rest.Config.
	httpClient, err := rest.HTTPClientFor(env.Config)
	must(err)
	if _, err := metricsauth.FilterProvider(env.Config, httpClient); err != nil {
		t.Fatal(err)
	}
	reviews := &countingReviews{TokenReviewer: cs.AuthenticationV1().TokenReviews()}
	access := &countingAccess{AccessReviewer: cs.AuthorizationV1().SubjectAccessReviews()}
	guard := &metricsauth.Guard{Reviews: reviews, Access: access}
	h, err := guard.Filter(testr.New(t), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "metrics")
	}))
	must(err)
	srv := httptest.NewServer(h)
	defer srv.Close()

	call := func(method, path, authorization string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, nil)
		must(err)
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		resp, err := http.DefaultClient.Do(req)
		must(err)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	for _, tt := range []struct {
		name, method, path, authorization string
		want                              int
	}{
		{"no token", http.MethodGet, "/metrics", "", http.StatusUnauthorized},
		{"not a bearer token", http.MethodGet, "/metrics", "Basic " + prometheus, http.StatusUnauthorized},
		{"a token the API server refuses", http.MethodGet, "/metrics", "Bearer not-a-token", http.StatusUnauthorized},
		{"an account without the role", http.MethodGet, "/metrics", "Bearer " + nobody, http.StatusForbidden},
		{"the reader", http.MethodGet, "/metrics", "Bearer " + prometheus, http.StatusOK},
		{"the reader, another verb", http.MethodPost, "/metrics", "Bearer " + prometheus, http.StatusForbidden},
		{"the reader, another path", http.MethodGet, "/debug", "Bearer " + prometheus, http.StatusForbidden},
	} {
		if got := call(tt.method, tt.path, tt.authorization); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
	reviewsBefore, accessBefore := reviews.n.Load(), access.n.Load()
	if got := call(http.MethodGet, "/metrics", "Bearer "+prometheus); got != http.StatusOK {
		t.Fatalf("again: %d", got)
	}
	if reviews.n.Load() != reviewsBefore || access.n.Load() != accessBefore {
		t.Errorf("a repeated request asked the API server again (token reviews %d -> %d, access reviews %d -> %d)",
			reviewsBefore, reviews.n.Load(), accessBefore, access.n.Load())
	}
}
