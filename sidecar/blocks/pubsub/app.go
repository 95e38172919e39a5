package pubsub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/outrigger-dev/outrigger/sidecar/appchannel"
	"github.com/outrigger-dev/outrigger/sidecar/blocks/pubsub/envelope"
	"github.com/outrigger-dev/outrigger/sidecar/resiliency"
)

// Status is the app's answer to a delivery.
type Status int

const (
	StatusSuccess Status = iota
	StatusRetry
	StatusDrop
)

// Delivery is one event for the app.
type Delivery struct {
	Event map[string]any
	// Body is what goes to an HTTP app: the broker's bytes as they came (Dapr forwards
	// them untouched), or the wrapping event of a raw message; nil encodes Event.
	Body       []byte
	Path       string
	PubsubName string
	Topic      string
	// Metadata is what the broker reported of the message.
	Metadata map[string]string
}

// BulkDelivery is a batch of events for one path.
type BulkDelivery struct {
	ID         string
	Path       string
	PubsubName string
	Topic      string
	Entries    []BulkEntry
}

// BulkEntry is one event of a batch.
type BulkEntry struct {
	EntryID  string
	Event    map[string]any
	Metadata map[string]string
}

// App is the app as pub/sub sees it.
type App interface {
	// Subscriptions are the app's programmatic subscriptions.
	Subscriptions(ctx context.Context) ([]Subscription, error)
	// Deliver hands one event to the app. An error is a failed delivery, to retry.
	Deliver(ctx context.Context, d *Delivery) (Status, error)
	// DeliverBulk hands a batch to the app and returns each entry's status; an entry the
	// app did not answer for is retried.
	DeliverBulk(ctx context.Context, d *BulkDelivery) (map[string]Status, error)
}

// ParseStatus reads an app's status word; Dapr compares it exactly, Outrigger ignores
// case. An empty status is success, as in Dapr; an unknown one is a retry.
func ParseStatus(s string) (Status, bool) {
	switch strings.ToUpper(s) {
	case "", "SUCCESS":
		return StatusSuccess, true
	case "RETRY":
		return StatusRetry, true
	case "DROP":
		return StatusDrop, true
	}
	return StatusRetry, false
}

// HTTPApp reaches an app over its HTTP channel.
type HTTPApp struct {
	Channel *appchannel.Channel
}

// subscriptionJSON is one entry of the app's /dapr/subscribe answer, v1 (route) or v2
// (routes) shaped.
type subscriptionJSON struct {
	PubsubName string            `json:"pubsubname"`
	Topic      string            `json:"topic"`
	Route      string            `json:"route"`
	Metadata   map[string]string `json:"metadata"`
	Routes     *struct {
		Rules []struct {
			Match string `json:"match"`
			Path  string `json:"path"`
		} `json:"rules"`
		Default string `json:"default"`
	} `json:"routes"`
	DeadLetterTopic string `json:"deadLetterTopic"`
	BulkSubscribe   *struct {
		Enabled            bool  `json:"enabled"`
		MaxMessagesCount   int32 `json:"maxMessagesCount"`
		MaxAwaitDurationMs int32 `json:"maxAwaitDurationMs"`
	} `json:"bulkSubscribe"`
}

// Subscriptions asks GET /dapr/subscribe. An app without the route (404) has none.
func (a HTTPApp) Subscriptions(ctx context.Context) ([]Subscription, error) {
	resp, err := a.Channel.Do(ctx, &appchannel.Request{Method: http.MethodGet, Path: "/dapr/subscribe", Header: http.Header{}})
	if err != nil {
		return nil, fmt.Errorf("GET /dapr/subscribe: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("GET /dapr/subscribe: read the answer: %w", err)
	}
	if resp.Status == http.StatusNotFound {
		return nil, nil
	}
	if resp.Status < 200 || resp.Status > 299 {
		return nil, fmt.Errorf("GET /dapr/subscribe answered %d: %s", resp.Status, truncate(body))
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	var in []subscriptionJSON
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("GET /dapr/subscribe: the answer is not a JSON array of subscriptions: %w", err)
	}
	var out []Subscription
	for i, s := range in {
		if s.PubsubName == "" || s.Topic == "" {
			return nil, fmt.Errorf("GET /dapr/subscribe: entry %d has no pubsubname or no topic", i)
		}
		sub := Subscription{PubsubName: s.PubsubName, Topic: s.Topic, Metadata: s.Metadata, DeadLetterTopic: s.DeadLetterTopic, Default: s.Route}
		if s.Routes != nil {
			for _, r := range s.Routes.Rules {
				sub.Rules = append(sub.Rules, RuleInfo{Match: r.Match, Path: r.Path})
			}
			if s.Routes.Default != "" {
				sub.Default = s.Routes.Default
			}
		}
		if s.BulkSubscribe != nil {
			sub.Bulk = bulkSettings(s.BulkSubscribe.Enabled, s.BulkSubscribe.MaxMessagesCount, s.BulkSubscribe.MaxAwaitDurationMs)
		}
		out = append(out, sub)
	}
	return out, nil
}

func bulkSettings(enabled bool, maxMessages, maxAwaitMs int32) BulkSubscribe {
	b := BulkSubscribe{Enabled: enabled, MaxMessages: int(maxMessages), MaxAwait: time.Duration(maxAwaitMs) * time.Millisecond}
	if b.MaxMessages <= 0 {
		b.MaxMessages = DefaultBulkMaxMessages
	}
	if b.MaxAwait <= 0 {
		b.MaxAwait = DefaultBulkMaxAwait
	}
	return b
}

func truncate(b []byte) string {
	if len(b) > 512 {
		return string(b[:512]) + "..."
	}
	return string(b)
}

// appResponse is the app's JSON answer to a delivery.
type appResponse struct {
	Status string `json:"status"`
}

// Deliver POSTs the event to its path as application/cloudevents+json. A 2xx answer
// is read for its status (an empty or unreadable body is success, as in Dapr); 404
// drops the message; anything else is retried, and carries its status for the retry
// policy's `matching`, as in Dapr.
func (a HTTPApp) Deliver(ctx context.Context, d *Delivery) (Status, error) {
	body := d.Body
	if body == nil {
		var err error
		if body, err = json.Marshal(d.Event); err != nil {
			return StatusRetry, fmt.Errorf("encode event: %w", err)
		}
	}
	h := http.Header{}
	h.Set("Content-Type", "application/cloudevents+json")
	setTrace(h, d.Event)
	for k, v := range d.Metadata {
		if validHeaderName(k) {
			h.Set(k, v)
		}
	}
	resp, err := a.Channel.Do(ctx, &appchannel.Request{Method: http.MethodPost, Path: d.Path, Header: h,
		Body: bytes.NewReader(body), ContentLength: int64(len(body))})
	if err != nil {
		return StatusRetry, fmt.Errorf("error returned from app channel while sending pub/sub event to app: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.Status >= 200 && resp.Status <= 299:
		var ar appResponse
		if json.Unmarshal(answer, &ar) != nil {
			return StatusSuccess, nil
		}
		st, _ := ParseStatus(ar.Status)
		return st, nil
	case resp.Status == http.StatusNotFound:
		return StatusDrop, nil
	}
	return StatusRetry, resiliency.HTTPStatus(resp.Status,
		fmt.Errorf("app answered %d for event %v on %s: %s", resp.Status, d.Event["id"], d.Path, truncate(answer)))
}

// DeliverBulk POSTs the batch as Dapr's bulk envelope and reads the statuses.
func (a HTTPApp) DeliverBulk(ctx context.Context, d *BulkDelivery) (map[string]Status, error) {
	type entry struct {
		EntryID     string            `json:"entryId"`
		Event       map[string]any    `json:"event"`
		ContentType string            `json:"contentType"`
		Metadata    map[string]string `json:"metadata"`
	}
	payload := struct {
		ID         string            `json:"id"`
		Entries    []entry           `json:"entries"`
		Metadata   map[string]string `json:"metadata"`
		PubsubName string            `json:"pubsubname"`
		Topic      string            `json:"topic"`
		Type       string            `json:"type"`
	}{ID: d.ID, PubsubName: d.PubsubName, Topic: d.Topic, Type: envelope.DefaultType, Metadata: map[string]string{}}
	for _, e := range d.Entries {
		payload.Entries = append(payload.Entries, entry{EntryID: e.EntryID, Event: e.Event, ContentType: "application/cloudevents+json", Metadata: e.Metadata})
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode bulk events: %w", err)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	resp, err := a.Channel.Do(ctx, &appchannel.Request{Method: http.MethodPost, Path: d.Path, Header: h,
		Body: bytes.NewReader(body), ContentLength: int64(len(body))})
	if err != nil {
		return nil, fmt.Errorf("error returned from app channel while sending bulk pub/sub event to app: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.Status == http.StatusNotFound {
		out := map[string]Status{}
		for _, e := range d.Entries {
			out[e.EntryID] = StatusDrop
		}
		return out, nil
	}
	if resp.Status < 200 || resp.Status > 299 {
		return nil, resiliency.HTTPStatus(resp.Status,
			fmt.Errorf("app answered %d for a batch of %d events on %s: %s", resp.Status, len(d.Entries), d.Path, truncate(answer)))
	}
	var ar struct {
		Statuses []struct {
			EntryID string `json:"entryId"`
			Status  string `json:"status"`
		} `json:"statuses"`
	}
	if err := json.Unmarshal(answer, &ar); err != nil {
		return nil, fmt.Errorf("the app's answer to a batch on %s is not {\"statuses\":[...]}: %w", d.Path, err)
	}
	out := map[string]Status{}
	for _, s := range ar.Statuses {
		st, _ := ParseStatus(s.Status)
		out[s.EntryID] = st
	}
	return out, nil
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", c) {
			return false
		}
	}
	return true
}

func setTrace(h http.Header, ev map[string]any) {
	if tp, ok := ev["traceparent"].(string); ok && tp != "" {
		h.Set("traceparent", tp)
	} else if tid, ok := ev["traceid"].(string); ok && tid != "" {
		h.Set("traceparent", tid)
	}
	if ts, ok := ev["tracestate"].(string); ok && ts != "" {
		h.Set("tracestate", ts)
	}
}

// GRPCApp reaches an app through its AppCallback service.
type GRPCApp struct {
	Conn grpc.ClientConnInterface
	// Token is sent as dapr-api-token (APP_API_TOKEN).
	Token string
}

func (a GRPCApp) ctx(ctx context.Context) context.Context {
	if a.Token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, appchannel.APITokenHeader, a.Token)
	}
	return ctx
}

// Subscriptions calls ListTopicSubscriptions; an app that does not implement it has
// none.
func (a GRPCApp) Subscriptions(ctx context.Context) ([]Subscription, error) {
	resp, err := runtimev1.NewAppCallbackClient(a.Conn).ListTopicSubscriptions(a.ctx(ctx), &emptypb.Empty{})
	if err != nil {
		if status.Code(err) == codes.Unimplemented {
			return nil, nil
		}
		return nil, fmt.Errorf("ListTopicSubscriptions: %w", err)
	}
	var out []Subscription
	for i, s := range resp.GetSubscriptions() {
		if s.GetPubsubName() == "" || s.GetTopic() == "" {
			return nil, fmt.Errorf("ListTopicSubscriptions: entry %d has no pubsub_name or no topic", i)
		}
		sub := Subscription{PubsubName: s.GetPubsubName(), Topic: s.GetTopic(), Metadata: s.GetMetadata(), DeadLetterTopic: s.GetDeadLetterTopic()}
		for _, r := range s.GetRoutes().GetRules() {
			sub.Rules = append(sub.Rules, RuleInfo{Match: r.GetMatch(), Path: r.GetPath()})
		}
		sub.Default = s.GetRoutes().GetDefault()
		if len(sub.Rules) == 0 && sub.Default == "" {
			// Dapr gives a gRPC subscription without routes the path "".
			sub.Rules = []RuleInfo{{Path: ""}}
		}
		if bs := s.GetBulkSubscribe(); bs != nil {
			sub.Bulk = bulkSettings(bs.GetEnabled(), bs.GetMaxMessagesCount(), bs.GetMaxAwaitDurationMs())
		}
		out = append(out, sub)
	}
	return out, nil
}

// Deliver calls OnTopicEvent. Unimplemented drops the message, as in Dapr; any other
// error is retried, a gRPC status with its code for the retry policy's `matching`.
func (a GRPCApp) Deliver(ctx context.Context, d *Delivery) (Status, error) {
	req, err := topicEventRequest(d.Event, d.Path, d.PubsubName, d.Topic)
	if err != nil {
		return StatusRetry, err
	}
	ctx = a.ctx(ctx)
	if tp, ok := d.Event["traceparent"].(string); ok && tp != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", tp)
	}
	resp, err := runtimev1.NewAppCallbackClient(a.Conn).OnTopicEvent(ctx, req)
	if err != nil {
		st, ok := status.FromError(err)
		if ok && st.Code() == codes.Unimplemented {
			return StatusDrop, nil
		}
		err = fmt.Errorf("error returned from app while processing pub/sub event %v: %w", d.Event["id"], err)
		if ok {
			err = resiliency.GRPCStatus(st.Code(), err)
		}
		return StatusRetry, err
	}
	switch resp.GetStatus() {
	case runtimev1.TopicEventResponse_SUCCESS:
		return StatusSuccess, nil
	case runtimev1.TopicEventResponse_DROP:
		return StatusDrop, nil
	}
	return StatusRetry, nil
}

// topicEventRequest is Dapr's gRPC envelope: the CloudEvent's attributes as fields,
// its data as bytes, and every other attribute in extensions.
func topicEventRequest(ev map[string]any, path, pubsubName, topic string) (*runtimev1.TopicEventRequest, error) {
	data, contentType, err := envelope.DataBytes(ev)
	if err != nil {
		return nil, fmt.Errorf("event %v: %w", ev["id"], err)
	}
	ext := map[string]any{}
	for k, v := range ev {
		switch k {
		case "id", "source", "type", "specversion", "datacontenttype", "data", "data_base64", "topic", "pubsubname":
		default:
			ext[k] = v
		}
	}
	extensions, err := structpb.NewStruct(ext)
	if err != nil {
		return nil, fmt.Errorf("event %v: extensions: %w", ev["id"], err)
	}
	str := func(k string) string { s, _ := ev[k].(string); return s }
	return &runtimev1.TopicEventRequest{
		Id: str("id"), Source: str("source"), Type: str("type"), SpecVersion: str("specversion"),
		DataContentType: contentType, Data: data, Topic: topic, PubsubName: pubsubName, Path: path, Extensions: extensions,
	}, nil
}

// DeliverBulk calls OnBulkTopicEventAlpha1.
func (a GRPCApp) DeliverBulk(ctx context.Context, d *BulkDelivery) (map[string]Status, error) {
	req := &runtimev1.TopicEventBulkRequest{Id: d.ID, Topic: d.Topic, PubsubName: d.PubsubName, Type: envelope.DefaultType, Path: d.Path}
	for _, e := range d.Entries {
		tr, err := topicEventRequest(e.Event, d.Path, d.PubsubName, d.Topic)
		if err != nil {
			return nil, err
		}
		req.Entries = append(req.Entries, &runtimev1.TopicEventBulkRequestEntry{
			EntryId: e.EntryID, ContentType: "application/cloudevents+json", Metadata: e.Metadata,
			Event: &runtimev1.TopicEventBulkRequestEntry_CloudEvent{CloudEvent: &runtimev1.TopicEventCERequest{
				Id: tr.Id, Source: tr.Source, Type: tr.Type, SpecVersion: tr.SpecVersion,
				DataContentType: tr.DataContentType, Data: tr.Data, Extensions: tr.Extensions,
			}},
		})
	}
	resp, err := runtimev1.NewAppCallbackAlphaClient(a.Conn).OnBulkTopicEventAlpha1(a.ctx(ctx), req)
	if err != nil {
		if status.Code(err) == codes.Unimplemented {
			out := map[string]Status{}
			for _, e := range d.Entries {
				out[e.EntryID] = StatusDrop
			}
			return out, nil
		}
		return nil, fmt.Errorf("OnBulkTopicEventAlpha1: %w", err)
	}
	out := map[string]Status{}
	for _, s := range resp.GetStatuses() {
		switch s.GetStatus() {
		case runtimev1.TopicEventResponse_SUCCESS:
			out[s.GetEntryId()] = StatusSuccess
		case runtimev1.TopicEventResponse_DROP:
			out[s.GetEntryId()] = StatusDrop
		default:
			out[s.GetEntryId()] = StatusRetry
		}
	}
	return out, nil
}
