package http

import (
	"net/http"

	"github.com/outrigger-dev/outrigger/sidecar/api"
	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
)

func (h *handler) routeHealth(mux *http.ServeMux) {
	mux.HandleFunc(patternHealthz, h.healthz)
	mux.HandleFunc(patternHealthzOutbound, h.healthzOutbound)
}

func (h *handler) routeMetadata(mux *http.ServeMux) {
	mux.HandleFunc("GET "+apiV1+"/metadata", h.getMetadata)
	mux.HandleFunc("PUT "+apiV1+"/metadata/{key}", h.putMetadata)
}

func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	if err := h.rt.Healthy(); err != nil {
		writeError(w, apierrors.Wrap(apierrors.HealthNotReady, err, "dapr is not ready"))
		return
	}
	// ?appid=X fails unless this sidecar's app is X (Dapr's check for name resolvers).
	if q := r.URL.Query(); q.Has("appid") && q.Get("appid") != h.rt.Metadata().ID {
		writeError(w, apierrors.New(apierrors.HealthAppIDNotMatch, "dapr app-id does not match"))
		return
	}
	writeEmpty(w)
}

func (h *handler) healthzOutbound(w http.ResponseWriter, _ *http.Request) {
	if err := h.rt.OutboundHealthy(); err != nil {
		writeError(w, apierrors.Wrap(apierrors.OutboundHealthNotReady, err, "dapr outbound is not ready"))
		return
	}
	writeEmpty(w)
}

// metadataResponse is Dapr's GET /v1.0/metadata body (pkg/api/http/metadata.go), with
// Outrigger's failedComponents. Empty lists are left out, as Dapr's omitempty does.
type metadataResponse struct {
	ID                      string                  `json:"id,omitempty"`
	RuntimeVersion          string                  `json:"runtimeVersion,omitempty"`
	EnabledFeatures         []string                `json:"enabledFeatures,omitempty"`
	Actors                  []activeActorsCount     `json:"actors,omitempty"`
	Components              []registeredComponent   `json:"components,omitempty"`
	FailedComponents        []failedComponent       `json:"failedComponents,omitempty"`
	Extended                map[string]string       `json:"extended,omitempty"`
	Subscriptions           []subscription          `json:"subscriptions,omitempty"`
	HTTPEndpoints           []httpEndpoint          `json:"httpEndpoints,omitempty"`
	AppConnectionProperties appConnectionProperties `json:"appConnectionProperties"`
	ActorRuntime            actorRuntime            `json:"actorRuntime"`
}

type activeActorsCount struct {
	Type  string `json:"type,omitempty"`
	Count int32  `json:"count,omitempty"`
}

type registeredComponent struct {
	Name         string   `json:"name,omitempty"`
	Type         string   `json:"type,omitempty"`
	Version      string   `json:"version,omitempty"`
	Capabilities []string `json:"capabilities,omitempty"`
}

type failedComponent struct {
	Name    string `json:"name"`
	Type    string `json:"type,omitempty"`
	Version string `json:"version,omitempty"`
	Error   string `json:"error"`
}

type subscription struct {
	PubsubName      string             `json:"pubsubname"`
	Topic           string             `json:"topic"`
	Metadata        map[string]string  `json:"metadata,omitempty"`
	Rules           []subscriptionRule `json:"rules,omitempty"`
	DeadLetterTopic string             `json:"deadLetterTopic"`
	Type            string             `json:"type"`
	// Error is Outrigger's addition: why the subscription is not in force.
	Error string `json:"error,omitempty"`
}

type subscriptionRule struct {
	Match string `json:"match,omitempty"`
	Path  string `json:"path,omitempty"`
}

type httpEndpoint struct {
	Name string `json:"name,omitempty"`
}

type appConnectionProperties struct {
	Port           int        `json:"port,omitempty"`
	Protocol       string     `json:"protocol,omitempty"`
	ChannelAddress string     `json:"channelAddress,omitempty"`
	MaxConcurrency int        `json:"maxConcurrency,omitempty"`
	Health         *appHealth `json:"health,omitempty"`
}

type appHealth struct {
	HealthCheckPath     string `json:"healthCheckPath,omitempty"`
	HealthProbeInterval string `json:"healthProbeInterval,omitempty"`
	HealthProbeTimeout  string `json:"healthProbeTimeout,omitempty"`
	HealthThreshold     int    `json:"healthThreshold,omitempty"`
	// Status is Outrigger's addition: the app health check's last state ("healthy" or
	// "unhealthy"), absent before the first probe.
	Status string `json:"status,omitempty"`
}

type actorRuntime struct {
	Status    string `json:"runtimeStatus"`
	HostReady bool   `json:"hostReady"`
	Placement string `json:"placement,omitempty"`
}

func toMetadataResponse(m api.Metadata) metadataResponse {
	out := metadataResponse{
		ID:              m.ID,
		RuntimeVersion:  m.RuntimeVersion,
		EnabledFeatures: m.EnabledFeatures,
		Extended:        api.ExtendedMetadata(m),
		AppConnectionProperties: appConnectionProperties{
			Port:           m.AppConnectionProperties.Port,
			Protocol:       m.AppConnectionProperties.Protocol,
			ChannelAddress: m.AppConnectionProperties.ChannelAddress,
			MaxConcurrency: m.AppConnectionProperties.MaxConcurrency,
		},
		// Actors are not built yet: Dapr reports DISABLED when no actor state store is
		// configured.
		ActorRuntime: actorRuntime{Status: "DISABLED"},
	}
	if hc := m.AppConnectionProperties.Health; hc != nil {
		out.AppConnectionProperties.Health = &appHealth{
			HealthCheckPath:     hc.HealthCheckPath,
			HealthProbeInterval: hc.HealthProbeInterval,
			HealthProbeTimeout:  hc.HealthProbeTimeout,
			HealthThreshold:     hc.HealthThreshold,
			Status:              hc.Status,
		}
	}
	for _, c := range m.Components {
		out.Components = append(out.Components, registeredComponent(c))
	}
	for _, c := range m.FailedComponents {
		out.FailedComponents = append(out.FailedComponents, failedComponent(c))
	}
	for _, name := range m.HTTPEndpoints {
		out.HTTPEndpoints = append(out.HTTPEndpoints, httpEndpoint{Name: name})
	}
	for _, s := range m.Subscriptions {
		sub := subscription{PubsubName: s.PubsubName, Topic: s.Topic, Metadata: s.Metadata, DeadLetterTopic: s.DeadLetterTopic, Type: s.Type, Error: s.Error}
		for _, r := range s.Rules {
			sub.Rules = append(sub.Rules, subscriptionRule(r))
		}
		out.Subscriptions = append(out.Subscriptions, sub)
	}
	return out
}

func (h *handler) getMetadata(w http.ResponseWriter, _ *http.Request) {
	writeValue(w, toMetadataResponse(h.rt.Metadata()))
}

func (h *handler) putMetadata(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	h.rt.SetExtendedMetadata(pathParam(r, "key"), string(body))
	writeEmpty(w)
}

func (h *handler) shutdown(w http.ResponseWriter, r *http.Request) {
	// Shut down once this response is sent (Dapr waits for the call's context too), so
	// that the caller gets its 204 before the listener closes.
	ctx := r.Context()
	go func() {
		<-ctx.Done()
		h.rt.Shutdown()
	}()
	writeEmpty(w)
}
