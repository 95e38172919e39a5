package state

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
)

// Request metadata keys with a meaning to the block, Dapr's names.
const (
	MetadataTTL         = "ttlInSeconds"
	MetadataContentType = "contentType"
	// MetadataTTLExpireTime is set on a read of an item that expires (RFC 3339, UTC).
	MetadataTTLExpireTime = "ttlExpireTime"
)

// parseTTL reads metadata.ttlInSeconds: absent, -1 (Dapr's "never") and 0 mean no
// expiry; otherwise a whole number of seconds up to Dapr's limit of MaxInt32.
func parseTTL(code apierrors.Code, md map[string]string) (*time.Duration, error) {
	raw, ok := md[MetadataTTL]
	if !ok || strings.TrimSpace(raw) == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
	if err != nil {
		return nil, errBadRequest(code, "metadata %s: %q is not a whole number of seconds", MetadataTTL, raw)
	}
	if n < -1 || n > math.MaxInt32 {
		return nil, errBadRequest(code, "metadata %s: %d is out of range (-1 for no expiry, or 0 to %d)", MetadataTTL, n, math.MaxInt32)
	}
	if n <= 0 {
		return nil, nil
	}
	d := time.Duration(n) * time.Second
	return &d, nil
}

func contentType(md map[string]string) *string {
	if v, ok := md[MetadataContentType]; ok && v != "" {
		return &v
	}
	return nil
}

func checkOptions(code apierrors.Code, o state.Options) error {
	switch o.Concurrency {
	case "", state.FirstWrite, state.LastWrite:
	default:
		return errBadRequest(code, "concurrency %q is not %s or %s", o.Concurrency, state.FirstWrite, state.LastWrite)
	}
	return checkConsistency(code, o.Consistency)
}

func checkConsistency(code apierrors.Code, c string) error {
	switch c {
	case "", state.Eventual, state.Strong:
		return nil
	}
	return errBadRequest(code, "consistency %q is not %s or %s", c, state.Eventual, state.Strong)
}

// etag treats an empty ETag as none, as Dapr's stores do (an empty If-Match header, or
// an SDK that always sends the field).
func etag(e *string) *string {
	if e == nil || *e == "" {
		return nil
	}
	return e
}

// setRequest builds the store's request from the app's, with the key already prefixed.
func (b *Block) setRequest(code apierrors.Code, storeName string, h Handle, key string, r *SaveRequest) (*state.SetRequest, error) {
	if err := checkOptions(code, r.Options); err != nil {
		return nil, err
	}
	ttl, err := parseTTL(code, r.Metadata)
	if err != nil {
		return nil, err
	}
	if ttl != nil && !state.Has(h.Store, state.FeatureTTL) {
		return nil, errTTLNotSupported(storeName)
	}
	return &state.SetRequest{
		Key:         key,
		Value:       r.Value,
		ETag:        etag(r.ETag),
		ContentType: contentType(r.Metadata),
		TTL:         ttl,
		Options:     r.Options,
		Metadata:    r.Metadata,
	}, nil
}

func (b *Block) deleteRequest(code apierrors.Code, key string, r *DeleteRequest) (*state.DeleteRequest, error) {
	if err := checkOptions(code, r.Options); err != nil {
		return nil, err
	}
	return &state.DeleteRequest{Key: key, ETag: etag(r.ETag), Options: r.Options, Metadata: r.Metadata}, nil
}

// responseMetadata adds ttlExpireTime to what the store returned, without changing
// the store's map.
func responseMetadata(md map[string]string, expiry *time.Time) map[string]string {
	if expiry == nil {
		return md
	}
	out := make(map[string]string, len(md)+1)
	for k, v := range md {
		out[k] = v
	}
	out[MetadataTTLExpireTime] = expiry.UTC().Format(time.RFC3339)
	return out
}
