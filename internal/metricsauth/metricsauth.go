// Package metricsauth guards the operator's metrics endpoint: a request needs a bearer
// token that the API server authenticates (TokenReview) and a user it authorises to
// read the path (SubjectAccessReview of the non-resource URL), as controller-runtime's
// filters.WithAuthenticationAndAuthorization does. That filter links k8s.io/apiserver,
// whose package initialisation every start of the one binary paid, sidecars included;
// this does the same checks with client-go alone. Unlike it, client certificates are
// not accepted: Prometheus and kubectl present a token.
package metricsauth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// The cache lifetimes of controller-runtime's filter.
const (
	authnTTL     = time.Minute
	allowTTL     = 5 * time.Minute
	denyTTL      = 30 * time.Second
	reviewTime   = 10 * time.Second
	maxCacheSize = 1024
)

// FilterProvider is a metricsserver.Options.FilterProvider.
func FilterProvider(cfg *rest.Config, httpClient *http.Client) (metricsserver.Filter, error) {
	cs, err := kubernetes.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("metrics authentication: %w", err)
	}
	g := &Guard{Reviews: cs.AuthenticationV1().TokenReviews(), Access: cs.AuthorizationV1().SubjectAccessReviews()}
	return g.Filter, nil
}

// TokenReviewer and AccessReviewer are the two API calls a Guard makes.
type TokenReviewer interface {
	Create(ctx context.Context, r *authenticationv1.TokenReview, opts metav1.CreateOptions) (*authenticationv1.TokenReview, error)
}

type AccessReviewer interface {
	Create(ctx context.Context, r *authorizationv1.SubjectAccessReview, opts metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error)
}

// Guard authenticates and authorises requests, caching the API server's answers.
type Guard struct {
	Reviews TokenReviewer
	Access  AccessReviewer
	// Now is the clock of the caches; nil is time.Now.
	Now func() time.Time

	mu    sync.Mutex
	users map[[32]byte]cachedUser
	rules map[string]cachedRule
}

type cachedUser struct {
	user    *authenticationv1.UserInfo // nil: the token was refused
	expires time.Time
}

type cachedRule struct {
	allowed bool
	reason  string
	expires time.Time
}

// Filter wraps handler with the checks.
func (g *Guard) Filter(log logr.Logger, handler http.Handler) (http.Handler, error) {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		token, ok := bearer(req)
		if !ok {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		user, err := g.authenticate(req.Context(), token)
		if err != nil {
			log.Error(err, "Authentication failed")
			http.Error(w, "Authentication failed", http.StatusInternalServerError)
			return
		}
		if user == nil {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		verb := strings.ToLower(req.Method)
		allowed, reason, err := g.authorize(req.Context(), user, verb, req.URL.Path)
		if err != nil {
			msg := fmt.Sprintf("Authorization for user %s failed", user.Username)
			log.Error(err, msg)
			http.Error(w, msg, http.StatusInternalServerError)
			return
		}
		if !allowed {
			log.V(4).Info("Authorization denied", "user", user.Username, "reason", reason)
			http.Error(w, fmt.Sprintf("Authorization denied for user %s", user.Username), http.StatusForbidden)
			return
		}
		handler.ServeHTTP(w, req)
	}), nil
}

func bearer(req *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(req.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	return token, ok && strings.EqualFold(scheme, "bearer") && token != ""
}

func (g *Guard) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

// authenticate returns the token's user, or nil when the API server refuses it.
func (g *Guard) authenticate(ctx context.Context, token string) (*authenticationv1.UserInfo, error) {
	key := sha256.Sum256([]byte(token))
	g.mu.Lock()
	c, ok := g.users[key]
	g.mu.Unlock()
	if ok && g.now().Before(c.expires) {
		return c.user, nil
	}
	ctx, cancel := context.WithTimeout(ctx, reviewTime)
	defer cancel()
	review, err := g.Reviews.Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token review: %w", err)
	}
	var user *authenticationv1.UserInfo
	if review.Status.Authenticated {
		user = &review.Status.User
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.users == nil || len(g.users) >= maxCacheSize {
		g.users = map[[32]byte]cachedUser{}
	}
	g.users[key] = cachedUser{user: user, expires: g.now().Add(authnTTL)}
	return user, nil
}

// authorize asks whether user may verb the non-resource URL path.
func (g *Guard) authorize(ctx context.Context, user *authenticationv1.UserInfo, verb, path string) (bool, string, error) {
	key := user.UID + "\x00" + user.Username + "\x00" + strings.Join(user.Groups, ",") + "\x00" + verb + "\x00" + path
	g.mu.Lock()
	c, ok := g.rules[key]
	g.mu.Unlock()
	if ok && g.now().Before(c.expires) {
		return c.allowed, c.reason, nil
	}
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range user.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	ctx, cancel := context.WithTimeout(ctx, reviewTime)
	defer cancel()
	review, err := g.Access.Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user.Username, UID: user.UID, Groups: user.Groups, Extra: extra,
		NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: path, Verb: verb},
	}}, metav1.CreateOptions{})
	if err != nil {
		return false, "", fmt.Errorf("subject access review: %w", err)
	}
	allowed := review.Status.Allowed && !review.Status.Denied
	ttl := denyTTL
	if allowed {
		ttl = allowTTL
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.rules == nil || len(g.rules) >= maxCacheSize {
		g.rules = map[string]cachedRule{}
	}
	g.rules[key] = cachedRule{allowed: allowed, reason: review.Status.Reason, expires: g.now().Add(ttl)}
	return allowed, review.Status.Reason, nil
}
