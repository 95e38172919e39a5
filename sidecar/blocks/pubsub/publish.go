package pubsub

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
	"github.com/outrigger-dev/outrigger/sidecar/blocks/pubsub/envelope"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
	"github.com/outrigger-dev/outrigger/sidecar/resiliency"
)

// OpPublish names publish calls for resiliency policies, metrics and traces.
const OpPublish = "pubsub.publish"

// DefaultBulkParallelism bounds the component calls of one bulk publish on a component
// without native bulk publishing.
const DefaultBulkParallelism = 50

// acquire finds the component, or Dapr's error for a missing one; release must be
// called when err is nil.
func (b *Block) acquire(name string) (Handle, func(), error) {
	if name == "" {
		return Handle{}, nil, apierrors.New(apierrors.PubsubEmpty, "pubsub name is empty")
	}
	if b.PubSubs == nil || len(b.PubSubs.Names()) == 0 {
		return Handle{}, nil, apierrors.New(apierrors.PubsubNotConfigured, "pubsub %s is not configured", name)
	}
	h, release, ok := b.PubSubs.Acquire(name)
	if !ok || h.PubSub == nil {
		if release != nil {
			release()
		}
		return Handle{}, nil, apierrors.New(apierrors.PubsubNotFound, "pubsub %s is not found", name).
			WithReason("DAPR_PUBSUB_NOT_FOUND", map[string]string{"appID": b.AppID})
	}
	return h, release, nil
}

// Publish wraps the message in a CloudEvent (unless metadata.rawPayload is true) and
// hands it to the component.
func (b *Block) Publish(ctx context.Context, req *PublishRequest) error {
	h, release, err := b.acquire(req.PubsubName)
	if err != nil {
		return err
	}
	defer release()
	if req.Topic == "" {
		return apierrors.New(apierrors.TopicNameEmpty, "topic is empty in pubsub %s", req.PubsubName)
	}
	if !h.Scopes.CanPublish(req.Topic) {
		return apierrors.New(apierrors.PubsubForbidden, "topic %s is not allowed for app id %s", req.Topic, b.AppID)
	}
	data, contentType, err := b.env().Build(envelope.Publish{
		Source: b.AppID, Topic: req.Topic, PubsubName: req.PubsubName,
		ContentType: req.ContentType, Data: req.Data, Metadata: req.Metadata,
		TraceParent: req.TraceParent, TraceState: req.TraceState,
		NativeTTL: pubsub.Has(h.PubSub, pubsub.FeatureMessageTTL),
	})
	if err != nil {
		return buildError(err, req.Topic, req.PubsubName)
	}
	err = b.runner().Run(ctx, resiliency.Target{Kind: "component", Name: req.PubsubName, Direction: resiliency.Outbound, Operation: OpPublish},
		func(ctx context.Context) error {
			return h.PubSub.Publish(ctx, &pubsub.PublishRequest{Topic: req.Topic, Data: data, ContentType: contentType, Metadata: req.Metadata})
		})
	if err != nil {
		return apierrors.Wrap(apierrors.PubsubPublishMessage, err, "error when publishing to topic %s in pubsub %s", req.Topic, req.PubsubName)
	}
	return nil
}

// BulkPublish publishes every entry, natively when the component can, else entry by
// entry in parallel, and reports the entries that failed. A request-level failure
// (unknown pub/sub, forbidden topic, a malformed entry) publishes nothing.
func (b *Block) BulkPublish(ctx context.Context, req *BulkPublishRequest) (*BulkPublishResponse, error) {
	h, release, err := b.acquire(req.PubsubName)
	if err != nil {
		return nil, err
	}
	defer release()
	if req.Topic == "" {
		return nil, apierrors.New(apierrors.TopicNameEmpty, "topic is empty in pubsub %s", req.PubsubName)
	}
	if !h.Scopes.CanPublish(req.Topic) {
		return nil, apierrors.New(apierrors.PubsubForbidden, "topic %s is not allowed for app id %s", req.Topic, b.AppID)
	}
	entries := make([]pubsub.BulkEntry, len(req.Entries))
	seen := make(map[string]bool, len(req.Entries))
	for i, e := range req.Entries {
		if e.EntryID == "" {
			return nil, apierrors.New(apierrors.PubsubEventsSer, "entry %d of the bulk publish to topic %s pubsub %s has no entryId", i, req.Topic, req.PubsubName)
		}
		if seen[e.EntryID] {
			return nil, apierrors.New(apierrors.PubsubEventsSer, "entryId %q is used twice in the bulk publish to topic %s pubsub %s", e.EntryID, req.Topic, req.PubsubName)
		}
		seen[e.EntryID] = true
		md := mergeMetadata(req.Metadata, e.Metadata)
		data, ct, err := b.env().Build(envelope.Publish{
			Source: b.AppID, Topic: req.Topic, PubsubName: req.PubsubName,
			ContentType: e.ContentType, Data: e.Event, Metadata: md,
			TraceParent: req.TraceParent, TraceState: req.TraceState,
			NativeTTL: pubsub.Has(h.PubSub, pubsub.FeatureMessageTTL),
		})
		if err != nil {
			return nil, buildError(fmt.Errorf("entry %q: %w", e.EntryID, err), req.Topic, req.PubsubName)
		}
		entries[i] = pubsub.BulkEntry{EntryID: e.EntryID, Data: data, ContentType: ct, Metadata: md}
	}

	var results []pubsub.BulkResult
	if bp, ok := h.PubSub.(pubsub.BulkPublisher); ok {
		results = bp.BulkPublish(ctx, req.Topic, entries, req.Metadata)
	} else {
		results = b.publishEach(ctx, req, h.PubSub, entries)
	}
	resp := &BulkPublishResponse{}
	for _, r := range results {
		if r.Err != nil {
			resp.FailedEntries = append(resp.FailedEntries, BulkPublishFailure{EntryID: r.EntryID, Error: r.Err.Error()})
		}
	}
	return resp, nil
}

func (b *Block) publishEach(ctx context.Context, req *BulkPublishRequest, p pubsub.PubSub, entries []pubsub.BulkEntry) []pubsub.BulkResult {
	results := make([]pubsub.BulkResult, len(entries))
	sem := make(chan struct{}, DefaultBulkParallelism)
	var wg sync.WaitGroup
	target := resiliency.Target{Kind: "component", Name: req.PubsubName, Direction: resiliency.Outbound, Operation: OpPublish}
	for i, e := range entries {
		results[i].EntryID = e.EntryID
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			results[i].Err = ctx.Err()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i].Err = b.runner().Run(ctx, target, func(ctx context.Context) error {
				return p.Publish(ctx, &pubsub.PublishRequest{Topic: req.Topic, Data: e.Data, ContentType: e.ContentType, Metadata: e.Metadata})
			})
		}()
	}
	wg.Wait()
	return results
}

// buildError is the API error for a message that cannot be wrapped: bad metadata, or a
// body that claims to be a CloudEvent and is not. Dapr answers the latter with 500;
// Outrigger answers 400, as the request is what is wrong.
func buildError(err error, topic, pubsubName string) error {
	if errors.Is(err, envelope.ErrMetadata) {
		return apierrors.Wrap(apierrors.PubsubRequestMetadata, err, "failed deserializing metadata for topic %s pubsub %s", topic, pubsubName)
	}
	return apierrors.Wrap(apierrors.PubsubCloudEventsSer, err, "cannot create cloudevent for topic %s in pubsub %s", topic, pubsubName)
}

func mergeMetadata(req, entry map[string]string) map[string]string {
	if len(entry) == 0 {
		return req
	}
	out := make(map[string]string, len(req)+len(entry))
	for k, v := range req {
		out[k] = v
	}
	for k, v := range entry {
		out[k] = v
	}
	return out
}

var errNoApp = errors.New("the sidecar has no app channel (--app-port is not set)")
