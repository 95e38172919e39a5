package grpc

import (
	"context"

	"google.golang.org/protobuf/types/known/emptypb"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"

	stateblock "github.com/outrigger-dev/outrigger/sidecar/blocks/state"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
)

// Values travel over gRPC as the app's bytes: no JSON encoding, unlike HTTP.

func (s *server) GetState(ctx context.Context, in *runtimev1.GetStateRequest) (*runtimev1.GetStateResponse, error) {
	item, err := s.blocks.State.Get(ctx, in.GetStoreName(), stateblock.GetRequest{
		Key:         in.GetKey(),
		Consistency: consistency(in.GetConsistency()),
		Metadata:    in.GetMetadata(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	// A missing key is an empty response, not an error (Dapr).
	out := &runtimev1.GetStateResponse{}
	if item != nil {
		out.Data = item.Value
		out.Etag = deref(item.ETag)
		out.Metadata = item.Metadata
	}
	return out, nil
}

func (s *server) GetBulkState(ctx context.Context, in *runtimev1.GetBulkStateRequest) (*runtimev1.GetBulkStateResponse, error) {
	items, err := s.blocks.State.BulkGet(ctx, in.GetStoreName(), stateblock.BulkGetRequest{
		Keys:        in.GetKeys(),
		Parallelism: int(in.GetParallelism()),
		Metadata:    in.GetMetadata(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	out := &runtimev1.GetBulkStateResponse{Items: make([]*runtimev1.BulkStateItem, len(items))}
	for i, it := range items {
		out.Items[i] = &runtimev1.BulkStateItem{
			Key:      it.Key,
			Data:     it.Value,
			Etag:     deref(it.ETag),
			Metadata: it.Metadata,
			Error:    it.Error,
		}
	}
	return out, nil
}

func (s *server) SaveState(ctx context.Context, in *runtimev1.SaveStateRequest) (*emptypb.Empty, error) {
	reqs := make([]stateblock.SaveRequest, len(in.GetStates()))
	for i, it := range in.GetStates() {
		reqs[i] = *saveRequest(it)
	}
	if err := s.blocks.State.Save(ctx, in.GetStoreName(), reqs); err != nil {
		return nil, toStatus(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *server) DeleteState(ctx context.Context, in *runtimev1.DeleteStateRequest) (*emptypb.Empty, error) {
	req := stateblock.DeleteRequest{
		Key:      in.GetKey(),
		ETag:     etag(in.GetEtag()),
		Options:  options(in.GetOptions()),
		Metadata: in.GetMetadata(),
	}
	if err := s.blocks.State.Delete(ctx, in.GetStoreName(), req); err != nil {
		return nil, toStatus(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *server) DeleteBulkState(ctx context.Context, in *runtimev1.DeleteBulkStateRequest) (*emptypb.Empty, error) {
	reqs := make([]stateblock.DeleteRequest, len(in.GetStates()))
	for i, it := range in.GetStates() {
		reqs[i] = *deleteRequest(it)
	}
	if err := s.blocks.State.DeleteBulk(ctx, in.GetStoreName(), reqs); err != nil {
		return nil, toStatus(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *server) ExecuteStateTransaction(ctx context.Context, in *runtimev1.ExecuteStateTransactionRequest) (*emptypb.Empty, error) {
	req := stateblock.TransactionRequest{
		Operations: make([]stateblock.TransactionOperation, len(in.GetOperations())),
		Metadata:   in.GetMetadata(),
	}
	for i, op := range in.GetOperations() {
		req.Operations[i].Operation = op.GetOperationType()
		switch op.GetOperationType() {
		case "upsert":
			req.Operations[i].Save = saveRequest(op.GetRequest())
		case "delete":
			req.Operations[i].Delete = deleteRequest(op.GetRequest())
		default:
			// The block rejects it with ERR_NOT_SUPPORTED_STATE_OPERATION, naming it.
		}
	}
	if err := s.blocks.State.Transact(ctx, in.GetStoreName(), req); err != nil {
		return nil, toStatus(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *server) QueryStateAlpha1(ctx context.Context, in *runtimev1.QueryStateRequest) (*runtimev1.QueryStateResponse, error) {
	res, err := s.blocks.State.Query(ctx, in.GetStoreName(), stateblock.QueryRequest{
		Query:    []byte(in.GetQuery()),
		Metadata: in.GetMetadata(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	out := &runtimev1.QueryStateResponse{}
	if res == nil || len(res.Results) == 0 {
		return out, nil
	}
	out.Token, out.Metadata = res.Token, res.Metadata
	out.Results = make([]*runtimev1.QueryStateItem, len(res.Results))
	for i, it := range res.Results {
		out.Results[i] = &runtimev1.QueryStateItem{Key: it.Key, Data: it.Data, Etag: deref(it.ETag), Error: it.Error}
	}
	return out, nil
}

func saveRequest(it *commonv1.StateItem) *stateblock.SaveRequest {
	return &stateblock.SaveRequest{
		Key:      it.GetKey(),
		Value:    it.GetValue(),
		ETag:     etag(it.GetEtag()),
		Options:  options(it.GetOptions()),
		Metadata: it.GetMetadata(),
	}
}

func deleteRequest(it *commonv1.StateItem) *stateblock.DeleteRequest {
	return &stateblock.DeleteRequest{
		Key:      it.GetKey(),
		ETag:     etag(it.GetEtag()),
		Options:  options(it.GetOptions()),
		Metadata: it.GetMetadata(),
	}
}

// etag: a present Etag message is an ETag even when its value is empty, as in Dapr.
func etag(e *commonv1.Etag) *string {
	if e == nil {
		return nil
	}
	v := e.GetValue()
	return &v
}

func options(o *commonv1.StateOptions) state.Options {
	if o == nil {
		return state.Options{}
	}
	return state.Options{Concurrency: concurrency(o.GetConcurrency()), Consistency: consistency(o.GetConsistency())}
}

func concurrency(c commonv1.StateOptions_StateConcurrency) string {
	switch c {
	case commonv1.StateOptions_CONCURRENCY_FIRST_WRITE:
		return state.FirstWrite
	case commonv1.StateOptions_CONCURRENCY_LAST_WRITE:
		return state.LastWrite
	default:
		return ""
	}
}

func consistency(c commonv1.StateOptions_StateConsistency) string {
	switch c {
	case commonv1.StateOptions_CONSISTENCY_EVENTUAL:
		return state.Eventual
	case commonv1.StateOptions_CONSISTENCY_STRONG:
		return state.Strong
	default:
		return ""
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
