// Package bench holds the benchmarks that compare Outrigger with a baseline measured in
// the same run: the sidecar against the backend's own client, the sidecar's start-up
// against Dapr's published figures. Run them with `make bench`.
package bench
