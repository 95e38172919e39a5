package state

import (
	"errors"

	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
)

// Reasons of gRPC's ErrorInfo, Dapr's ("DAPR_STATE_" + its kit code).
const (
	reasonNotFound         = "DAPR_STATE_NOT_FOUND"
	reasonNotConfigured    = "DAPR_STATE_NOT_CONFIGURED"
	reasonIllegalKey       = "DAPR_STATE_ILLEGAL_KEY"
	reasonTxNotSupported   = "DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED"
	reasonQueryUnsupported = "DAPR_STATE_QUERYING_NOT_SUPPORTED"
	reasonQueryFailed      = "DAPR_STATE_QUERY_FAILED"
	// Outrigger's own: Dapr passes ttlInSeconds to a store without TTL, which then
	// ignores it, and the app believes its data will expire.
	reasonTTLNotSupported = "DAPR_STATE_TTL_NOT_SUPPORTED"
)

func appIDMeta(appID string) map[string]string {
	if appID == "" {
		return nil
	}
	return map[string]string{"appID": appID}
}

func (b *Block) errNotFound(store string) error {
	return apierrors.New(apierrors.StateStoreNotFound, "state store %s is not found", store).
		WithReason(reasonNotFound, appIDMeta(b.AppID))
}

func (b *Block) errNotConfigured(store string) error {
	return apierrors.New(apierrors.StateStoresNotConfigured, "state store %s is not configured", store).
		WithReason(reasonNotConfigured, appIDMeta(b.AppID))
}

func errIllegalKey(store, key string) error {
	return apierrors.New(apierrors.MalformedRequest, "%s", illegalKeyMessage(key)).
		WithReason(reasonIllegalKey, map[string]string{"stateStore": store})
}

func errEmptyKey(store string) error {
	// Dapr's HTTP message; its gRPC one is "state key cannot be empty".
	return apierrors.New(apierrors.MalformedRequest, `"key" is a required field`).
		WithReason(reasonIllegalKey, map[string]string{"stateStore": store})
}

func errTransactionsNotSupported(store string) error {
	return apierrors.New(apierrors.StateStoreNotSupported, "state store %s doesn't support transactions", store).
		WithReason(reasonTxNotSupported, nil)
}

func errQueryNotSupported() error {
	// Dapr's message does not name the store.
	return apierrors.New(apierrors.StateStoreNotSupportedQuery,
		"state store does not support querying").WithReason(reasonQueryUnsupported, nil)
}

func errTTLNotSupported(store string) error {
	return apierrors.New(apierrors.StateStoreNotSupported.BadRequest(),
		"state store %s doesn't support TTL: remove metadata ttlInSeconds or use a store that declares TTL", store).
		WithReason(reasonTTLNotSupported, nil)
}

// errBadRequest is input the store would refuse anyway (an unknown concurrency value,
// a ttlInSeconds that is not a number). Dapr lets the store fail and answers 500 under
// the operation's code; we keep the code, so that apps matching on it still do, but
// answer 400, because the fault is the request's.
func errBadRequest(code apierrors.Code, format string, args ...any) error {
	return apierrors.New(code.BadRequest(), format, args...)
}

// storeError wraps a failed store call under the operation's code, with Dapr's
// statuses for ETag failures: a mismatch is 409/Aborted, an ETag the store could not
// have issued 400/InvalidArgument.
func storeError(code apierrors.Code, cause error, format string, args ...any) error {
	var ee *state.ETagError
	if errors.As(cause, &ee) {
		switch ee.Kind {
		case state.ETagMismatch:
			code = code.Conflict()
		case state.ETagInvalid:
			code = code.BadRequest()
		}
	}
	return apierrors.Wrap(code, cause, format, args...)
}

func errQueryFailed(store string, callerError bool, cause error) error {
	code := apierrors.StateQuery
	if callerError {
		code = code.BadRequest()
	}
	return apierrors.Wrap(code, cause, "state store %s query failed", store).
		WithReason(reasonQueryFailed, nil)
}
