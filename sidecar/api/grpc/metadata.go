package grpc

import (
	"context"

	"google.golang.org/protobuf/types/known/emptypb"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"

	"github.com/outrigger-dev/outrigger/sidecar/api"
)

// GetMetadata mirrors Dapr's universal GetMetadata. Failed components have no field in
// Dapr's proto; they are reported by the HTTP API only.
func (s *server) GetMetadata(context.Context, *runtimev1.GetMetadataRequest) (*runtimev1.GetMetadataResponse, error) {
	m := s.rt.Metadata()
	out := &runtimev1.GetMetadataResponse{
		Id:               m.ID,
		RuntimeVersion:   m.RuntimeVersion,
		EnabledFeatures:  m.EnabledFeatures,
		ExtendedMetadata: api.ExtendedMetadata(m),
		AppConnectionProperties: &runtimev1.AppConnectionProperties{
			Port:           int32(m.AppConnectionProperties.Port),
			Protocol:       m.AppConnectionProperties.Protocol,
			ChannelAddress: m.AppConnectionProperties.ChannelAddress,
			MaxConcurrency: int32(m.AppConnectionProperties.MaxConcurrency),
		},
		RegisteredComponents: make([]*runtimev1.RegisteredComponents, len(m.Components)),
		Subscriptions:        []*runtimev1.PubsubSubscription{},
		HttpEndpoints:        []*runtimev1.MetadataHTTPEndpoint{},
		// Actors are not built yet: Dapr reports DISABLED without an actor state store.
		ActorRuntime: &runtimev1.ActorRuntime{RuntimeStatus: runtimev1.ActorRuntime_DISABLED},
	}
	if hc := m.AppConnectionProperties.Health; hc != nil {
		out.AppConnectionProperties.Health = &runtimev1.AppConnectionHealthProperties{
			HealthCheckPath:     hc.HealthCheckPath,
			HealthProbeInterval: hc.HealthProbeInterval,
			HealthProbeTimeout:  hc.HealthProbeTimeout,
			HealthThreshold:     int32(hc.HealthThreshold),
		}
	}
	for _, sub := range m.Subscriptions {
		ps := &runtimev1.PubsubSubscription{PubsubName: sub.PubsubName, Topic: sub.Topic, Metadata: sub.Metadata,
			DeadLetterTopic: sub.DeadLetterTopic, Rules: &runtimev1.PubsubSubscriptionRules{}}
		switch sub.Type {
		case "DECLARATIVE":
			ps.Type = runtimev1.PubsubSubscriptionType_DECLARATIVE
		case "PROGRAMMATIC":
			ps.Type = runtimev1.PubsubSubscriptionType_PROGRAMMATIC
		}
		for _, r := range sub.Rules {
			ps.Rules.Rules = append(ps.Rules.Rules, &runtimev1.PubsubSubscriptionRule{Match: r.Match, Path: r.Path})
		}
		out.Subscriptions = append(out.Subscriptions, ps)
	}
	for _, name := range m.HTTPEndpoints {
		out.HttpEndpoints = append(out.HttpEndpoints, &runtimev1.MetadataHTTPEndpoint{Name: name})
	}
	for i, c := range m.Components {
		caps := c.Capabilities
		if caps == nil {
			caps = []string{}
		}
		out.RegisteredComponents[i] = &runtimev1.RegisteredComponents{Name: c.Name, Type: c.Type, Version: c.Version, Capabilities: caps}
	}
	return out, nil
}

// SetMetadata records an extended attribute; an empty key is ignored, as in Dapr.
func (s *server) SetMetadata(_ context.Context, in *runtimev1.SetMetadataRequest) (*emptypb.Empty, error) {
	if in.GetKey() != "" {
		s.rt.SetExtendedMetadata(in.GetKey(), in.GetValue())
	}
	return &emptypb.Empty{}, nil
}

// Shutdown starts the sidecar's shutdown once this call has answered (Dapr waits for
// the call's context too), so the caller gets its reply before the server stops.
func (s *server) Shutdown(ctx context.Context, _ *runtimev1.ShutdownRequest) (*emptypb.Empty, error) {
	go func() {
		<-ctx.Done()
		s.rt.Shutdown()
	}()
	return &emptypb.Empty{}, nil
}
