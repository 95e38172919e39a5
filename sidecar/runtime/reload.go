package runtime

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/go-logr/logr"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	daprv2alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v2alpha1"
	"github.com/outrigger-dev/outrigger/sidecar/appchannel"
	"github.com/outrigger-dev/outrigger/sidecar/blocks/invoke"
	"github.com/outrigger-dev/outrigger/sidecar/resiliency"
	"github.com/outrigger-dev/outrigger/sidecar/resources"
)

// live holds the resources other than Components that change while the sidecar runs;
// the component store keeps the Components.
type live struct {
	mu            sync.Mutex
	subscriptions []resources.Resource[*daprv2alpha1.Subscription]
	endpoints     []*daprv1alpha1.HTTPEndpoint // in load order, for the metadata
	// endpointSet is what the invoke block reads per call.
	endpointSet invoke.SwappableEndpoints
	// configs are the Configurations of the --config file; exactly one is in effect.
	configs []*daprv1alpha1.Configuration
	// resiliencies are the Resiliency resources in load order, and policies what the
	// blocks run their calls under: their compilation, swapped on every change.
	resiliencies []*daprv1alpha1.Resiliency
	policies     resiliency.Live
	// components are the Component manifests in force for this app, loaded or failed,
	// by name: a Secret they read may change and call for a new instance.
	components map[string]*daprv1alpha1.Component
}

// init records the resources the sidecar started with.
func (l *live) init(set *resources.Set) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.subscriptions = slices.Clone(set.Subscriptions)
	l.components = map[string]*daprv1alpha1.Component{}
	for _, c := range set.Components {
		l.components[c.Object.Name] = c.Object
	}
	l.endpoints = nil
	for _, e := range set.HTTPEndpoints {
		l.endpoints = append(l.endpoints, e.Object)
	}
	l.storeEndpointsLocked()
}

// initResiliency compiles the Resiliency resources the sidecar starts with.
func (l *live) initResiliency(set *resources.Set, log logr.Logger) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.resiliencies = nil
	for _, r := range set.Resiliencies {
		l.resiliencies = append(l.resiliencies, r.Object)
	}
	p, err := resiliency.Compile(l.resiliencies, log)
	if err != nil {
		return fmt.Errorf("resiliency policies: %w", err)
	}
	l.policies.Store(p)
	return nil
}

func (l *live) storeEndpointsLocked() {
	m := make(invoke.StaticEndpoints, len(l.endpoints))
	for _, e := range l.endpoints {
		m[e.Name] = e
	}
	l.endpointSet.Store(m)
}

// endpointNames lists the HTTPEndpoints for the metadata API.
func (l *live) endpointNames() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	names := make([]string, 0, len(l.endpoints))
	for _, e := range l.endpoints {
		names = append(names, e.Name)
	}
	return names
}

// upsert applies an event to a list kept in load order: an added resource goes last,
// an updated one keeps its place, a deleted one goes.
func upsert[T resources.Object](list []T, ev resources.Event, obj T) []T {
	i := slices.IndexFunc(list, func(o T) bool { return o.GetName() == obj.GetName() })
	switch {
	case ev.Type == resources.Deleted:
		if i >= 0 {
			list = slices.Delete(list, i, i+1)
		}
	case i >= 0:
		list[i] = obj
	default:
		list = append(list, obj)
	}
	return list
}

// startHotReload watches the resources paths and the --config file in standalone mode
// and applies each change while the sidecar serves; the apply functions take events of
// any Source. stop ends the watch and waits for the change being applied.
func (r *Runtime) startHotReload(ctx context.Context) (stop func()) {
	if r.DisableHotReload {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	watch := func(what string, src resources.Source, apply func(context.Context, resources.Event)) {
		events := make(chan resources.Event, 16)
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer close(events)
			err := src.Watch(ctx, events)
			switch {
			case err == nil || ctx.Err() != nil:
			case errors.Is(err, errors.ErrUnsupported):
				r.log.Info("Changes to "+what+" apply after a restart", "reason", err.Error())
			default:
				r.log.Error(err, "Watching "+what+" stopped; further changes apply after a restart")
			}
		}()
		go func() {
			defer wg.Done()
			for ev := range events {
				if ctx.Err() == nil {
					apply(ctx, ev)
				}
			}
		}()
	}
	if r.source != nil {
		watch("the resources", r.source, r.applyResource)
	}
	if r.configSource != nil {
		watch("the --config file", r.configSource, r.applyConfiguration)
	}
	r.log.V(1).Info("Watching resources for changes", "paths", r.cfg.ResourcesPaths, "config", r.cfg.ConfigPath)
	return func() {
		cancel()
		wg.Wait()
	}
}

// applyResource applies one change of the resources paths, touching nothing else.
func (r *Runtime) applyResource(ctx context.Context, ev resources.Event) {
	name := ev.Object.GetName()
	log := r.log.WithValues(string(ev.Kind), name, "event", ev.Type.String(), "file", ev.Origin.File)
	switch ev.Kind {
	case resources.KindComponent:
		// The store logs why an initialisation failed and lists it in the metadata.
		if c, ok := ev.Object.(*daprv1alpha1.Component); ok {
			r.live.mu.Lock()
			if ev.Type == resources.Deleted {
				delete(r.live.components, name)
			} else if r.live.components != nil {
				r.live.components[name] = c
			}
			r.live.mu.Unlock()
		}
		err := r.components.Apply(ctx, ev)
		if err != nil && ctx.Err() == nil {
			log.Info("Component change not applied; the instance loaded before, if any, keeps serving", "reason", err.Error())
		}
		r.reportApply(ctx, ev, err)
	case resources.KindSubscription:
		s, ok := ev.Object.(*daprv2alpha1.Subscription)
		if !ok {
			return
		}
		r.live.mu.Lock()
		subs := r.live.subscriptions
		i := slices.IndexFunc(subs, func(x resources.Resource[*daprv2alpha1.Subscription]) bool { return x.Object.Name == name })
		switch {
		case ev.Type == resources.Deleted:
			if i >= 0 {
				subs = slices.Delete(subs, i, i+1)
			}
		case i >= 0:
			subs[i] = resources.Resource[*daprv2alpha1.Subscription]{Object: s, Origin: ev.Origin}
		default:
			subs = append(subs, resources.Resource[*daprv2alpha1.Subscription]{Object: s, Origin: ev.Origin})
		}
		r.live.subscriptions = subs
		declared := declaredSubscriptions(subs)
		// Under the lock, so that two changes reach the block in the order they happened.
		r.pubsub.SetDeclared(declared)
		r.live.mu.Unlock()
		log.Info("Subscription applied", "pubsubname", s.Spec.Pubsubname, "topic", s.Spec.Topic)
	case resources.KindHTTPEndpoint:
		e, ok := ev.Object.(*daprv1alpha1.HTTPEndpoint)
		if !ok {
			return
		}
		r.live.mu.Lock()
		r.live.endpoints = upsert(r.live.endpoints, ev, e)
		r.live.storeEndpointsLocked()
		r.live.mu.Unlock()
		log.Info("HTTPEndpoint applied", "baseUrl", e.Spec.BaseURL)
	case resources.KindConfiguration:
		if r.cfg.Mode == ModeKubernetes && name == r.cfg.ConfigPath {
			// In Kubernetes mode --config names a Configuration of the namespace.
			r.applyConfiguration(ctx, ev)
			return
		}
		// As in Dapr's self-hosted mode, only the file named by --config configures the
		// sidecar; a Configuration among the resources is read and left alone.
		log.V(1).Info("Ignoring a Configuration in the resources paths; --config names the one in use")
	case resources.KindResiliency:
		res, ok := ev.Object.(*daprv1alpha1.Resiliency)
		if !ok {
			return
		}
		r.live.mu.Lock()
		defer r.live.mu.Unlock()
		list := upsert(slices.Clone(r.live.resiliencies), ev, res)
		p, err := resiliency.Compile(list, r.log.WithName("resiliency"))
		if err != nil {
			log.Error(err, "Resiliency change not applied; the policies in effect stay")
			return
		}
		r.live.resiliencies = list
		r.live.policies.Store(p)
		log.Info("Resiliency applied", "resiliencies", len(list))
	}
}

// applyConfiguration applies a change of the --config file: its access control and
// trust domain, the only settings of a Configuration the sidecar uses. While the file
// holds no Configuration or several, or one whose access control is invalid, the
// access control in effect stays: a half-saved file must not open the app to every
// caller.
func (r *Runtime) applyConfiguration(_ context.Context, ev resources.Event) {
	c, ok := ev.Object.(*daprv1alpha1.Configuration)
	if !ok || r.invocation == nil {
		return
	}
	r.live.mu.Lock()
	defer r.live.mu.Unlock()
	r.live.configs = upsert(r.live.configs, ev, c)
	log := r.log.WithValues("config", r.cfg.ConfigPath)
	if n := len(r.live.configs); n != 1 {
		log.Info("The --config file must hold exactly one Configuration; the access control in effect stays", "configurations", n)
		return
	}
	conf := r.live.configs[0]
	var trustDomain string
	var acl *invoke.ACL
	if ac := conf.Spec.AccessControl; ac != nil {
		var err error
		if acl, err = invoke.ParseACL(ac, !appchannel.IsGRPC(r.cfg.AppProtocol)); err != nil {
			log.Error(err, "Configuration change not applied; the access control in effect stays", "Configuration", conf.Name)
			return
		}
		trustDomain = ac.TrustDomain
	}
	r.invocation.block.SetAccessControl(trustDomain, acl)
	log.Info("Access control applied", "Configuration", conf.Name, "enforced", acl != nil)
}
