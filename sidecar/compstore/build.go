package compstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	pubsubblock "github.com/outrigger-dev/outrigger/sidecar/blocks/pubsub"
	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/secretstores"
)

// InitError is why a component did not load. Its message names the component the way
// the sidecar's start-up error shows it:
//
//	init state store "statestore" (state.redis/v1): dial tcp 127.0.0.1:6379: connection refused
type InitError struct {
	Name    string
	Type    string
	Version string
	Err     error
}

func (e *InitError) Error() string {
	family, _, _ := strings.Cut(e.Type, ".")
	return fmt.Sprintf("init %s %q (%s/%s): %v", noun(family), e.Name, e.Type, displayVersion(e.Version), e.Err)
}

func (e *InitError) Unwrap() error { return e.Err }

// noun names a family's components in messages.
func noun(family string) string {
	switch family {
	case "state":
		return "state store"
	case "secretstores":
		return "secret store"
	case "pubsub":
		return "pub/sub"
	case "bindings":
		return "binding"
	case "configuration":
		return "configuration store"
	case "lock":
		return "lock store"
	case "nameresolution":
		return "name resolver"
	case "workflow":
		return "workflow backend"
	case "crypto":
		return "crypto provider"
	}
	return "component"
}

// displayVersion shows an empty version as the v1 that the registries read it as.
func displayVersion(v string) string {
	if v == "" {
		return "v1"
	}
	return v
}

func (s *Store) wrap(c *daprv1alpha1.Component, err error) error {
	return &InitError{Name: c.Name, Type: c.Spec.Type, Version: c.Spec.Version, Err: err}
}

// built is an initialised instance, not yet published.
type built struct {
	family string
	state  *stateInstance
	secret secretstores.Store
	pubsub *pubsubInstance
	caps   []string
}

// initTimeout reads spec.initTimeout; as in Dapr, a missing or unusable value gives
// the default (the loader has already refused an unparsable one).
func initTimeout(c *daprv1alpha1.Component) time.Duration {
	if d, err := time.ParseDuration(c.Spec.InitTimeout); err == nil && d > 0 {
		return d
	}
	return DefaultInitTimeout
}

// build creates the component from its family's registry, resolves its metadata and
// initialises it, all within spec.initTimeout.
func (s *Store) build(ctx context.Context, c *daprv1alpha1.Component) (*built, error) {
	family, _, ok := components.SplitType(c.Spec.Type)
	if !ok {
		return nil, s.wrap(c, fmt.Errorf("type must be <family>.<name> with family one of %s", strings.Join(components.Families, ", ")))
	}
	b := &built{family: family}
	var inst components.Component
	switch family {
	case FamilyState:
		st, err := create(s.Registries.State, c)
		if err != nil {
			return nil, s.wrap(c, err)
		}
		b.state, inst = &stateInstance{Store: st}, st
	case FamilySecretStores:
		st, err := create(s.Registries.SecretStores, c)
		if err != nil {
			return nil, s.wrap(c, err)
		}
		b.secret, inst = st, st
	case FamilyPubsub:
		ps, err := create(s.Registries.Pubsub, c)
		if err != nil {
			return nil, s.wrap(c, err)
		}
		b.pubsub, inst = &pubsubInstance{PubSub: ps}, ps
	default:
		return nil, s.wrap(c, fmt.Errorf("Outrigger does not load %s components yet", family))
	}

	timeout := initTimeout(c)
	ictx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var md components.Metadata
	done := make(chan error, 1)
	go func() {
		props, err := s.resolveMetadata(ictx, c)
		if err != nil {
			done <- err
			return
		}
		md = components.Metadata{Name: c.Name, Type: c.Spec.Type, Version: c.Spec.Version, Properties: props,
			AppID: s.AppID, Namespace: s.Namespace}
		if err := inst.Init(ictx, md); err != nil {
			// What Init opened before failing is released; every component's Close
			// must cope with a failed Init.
			_ = inst.Close()
			done <- err
			return
		}
		done <- nil
	}()

	timedOut := func() bool { return errors.Is(ictx.Err(), context.DeadlineExceeded) && ctx.Err() == nil }
	select {
	case err := <-done:
		if err != nil {
			if timedOut() {
				err = fmt.Errorf("init did not finish within %s (spec.initTimeout): %w", timeout, err)
			}
			return nil, s.wrap(c, err)
		}
	case <-ictx.Done():
		// As Dapr does, stop waiting for a component that ignores its context; if it
		// finishes later, it is closed rather than leaked.
		go func() {
			if err := <-done; err == nil {
				_ = inst.Close()
			}
		}()
		if !timedOut() {
			return nil, s.wrap(c, ctx.Err())
		}
		return nil, s.wrap(c, fmt.Errorf("init did not finish within %s (spec.initTimeout)", timeout))
	}

	switch {
	case b.state != nil:
		b.caps = featureStrings(b.state.Features())
		b.state.keyPrefix = "appid"
		if p, ok := md.Property("keyPrefix"); ok && strings.TrimSpace(p) != "" {
			b.state.keyPrefix = strings.TrimSpace(p)
		}
	case b.secret != nil:
		b.caps = featureStrings(b.secret.Features())
	case b.pubsub != nil:
		b.caps = featureStrings(b.pubsub.Features())
		b.pubsub.scopes = pubsubblock.ParseScopes(md.Properties, s.AppID)
	}
	return b, nil
}

func create[T components.Component](r *components.Registry[T], c *daprv1alpha1.Component) (T, error) {
	if r == nil {
		var zero T
		return zero, fmt.Errorf("component type %s/%s is not implemented by Outrigger", c.Spec.Type, displayVersion(c.Spec.Version))
	}
	return r.Create(c.Spec.Type, c.Spec.Version)
}

func featureStrings[F ~string](fs []F) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = string(f)
	}
	return out
}
