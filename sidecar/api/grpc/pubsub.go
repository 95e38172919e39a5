package grpc

import (
	"context"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"

	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
	pubsubblock "github.com/outrigger-dev/outrigger/sidecar/blocks/pubsub"
)

func (s *server) pubsub() (pubsubblock.API, error) {
	if s.blocks.Pubsub == nil {
		return nil, toStatus(apierrors.New(apierrors.PubsubNotConfigured, "pubsub is not configured"))
	}
	return s.blocks.Pubsub, nil
}

// traceHeaders reads the W3C trace context of the call.
func traceHeaders(ctx context.Context) (traceParent, traceState string) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("traceparent"); len(v) > 0 {
		traceParent = v[0]
	}
	if v := md.Get("tracestate"); len(v) > 0 {
		traceState = v[0]
	}
	return traceParent, traceState
}

func (s *server) PublishEvent(ctx context.Context, in *runtimev1.PublishEventRequest) (*emptypb.Empty, error) {
	ps, err := s.pubsub()
	if err != nil {
		return nil, err
	}
	tp, ts := traceHeaders(ctx)
	err = ps.Publish(ctx, &pubsubblock.PublishRequest{
		PubsubName: in.GetPubsubName(), Topic: in.GetTopic(), Data: in.GetData(),
		ContentType: in.GetDataContentType(), Metadata: in.GetMetadata(), TraceParent: tp, TraceState: ts,
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &emptypb.Empty{}, nil
}

// BulkPublishEventAlpha1 reports the entries that failed in the response, so that a
// client learns which ones to send again; a request-level failure is an error.
func (s *server) BulkPublishEventAlpha1(ctx context.Context, in *runtimev1.BulkPublishRequest) (*runtimev1.BulkPublishResponse, error) {
	ps, err := s.pubsub()
	if err != nil {
		return nil, err
	}
	tp, ts := traceHeaders(ctx)
	req := &pubsubblock.BulkPublishRequest{PubsubName: in.GetPubsubName(), Topic: in.GetTopic(), Metadata: in.GetMetadata(), TraceParent: tp, TraceState: ts}
	for _, e := range in.GetEntries() {
		req.Entries = append(req.Entries, pubsubblock.BulkPublishEntry{EntryID: e.GetEntryId(), Event: e.GetEvent(), ContentType: e.GetContentType(), Metadata: e.GetMetadata()})
	}
	resp, err := ps.BulkPublish(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &runtimev1.BulkPublishResponse{}
	for _, f := range resp.FailedEntries {
		out.FailedEntries = append(out.FailedEntries, &runtimev1.BulkPublishResponseFailedEntry{EntryId: f.EntryID, Error: f.Error})
	}
	return out, nil
}
