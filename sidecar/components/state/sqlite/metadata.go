package sqlite

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/metadata"
)

// Options are the component's metadata, with Dapr's names and defaults, except
// cleanupInterval (see below).
type Options struct {
	// ConnectionString is a file path ("data.db") or a "file:" URI, optionally with
	// query parameters for the driver. ":memory:" keeps the data in this process only.
	ConnectionString string `metadata:"connectionString"`
	// URL is Dapr's alias of connectionString.
	URL               string        `metadata:"url"`
	TableName         string        `metadata:"tableName" default:"state"`
	MetadataTableName string        `metadata:"metadataTableName" default:"metadata"`
	Timeout           time.Duration `metadata:"timeout" default:"20s" unit:"s"`
	// TimeoutInSeconds is Dapr's older name of timeout.
	TimeoutInSeconds *int `metadata:"timeoutInSeconds"`
	// CleanupInterval is how often expired rows are deleted; zero or negative disables
	// it (expired rows stay invisible either way). Dapr's default is disabled; ours is
	// an hour, because this is the embedded default store and its file would otherwise
	// only grow.
	CleanupInterval time.Duration `metadata:"cleanupInterval" default:"1h" unit:"s"`
	// CleanupIntervalInSeconds is Dapr's older name of cleanupInterval.
	CleanupIntervalInSeconds *int          `metadata:"cleanupIntervalInSeconds"`
	BusyTimeout              time.Duration `metadata:"busyTimeout" default:"2s"`
	// DisableWAL keeps the rollback journal: WAL needs shared memory, which network
	// file systems do not provide.
	DisableWAL      bool `metadata:"disableWAL"`
	ActorStateStore bool `metadata:"actorStateStore"`
}

func parseOptions(props map[string]string) (Options, error) {
	var o Options
	if err := metadata.Decode(props, &o); err != nil {
		return o, err
	}
	var errs []error
	if o.ConnectionString == "" {
		o.ConnectionString = o.URL
	}
	if strings.TrimSpace(o.ConnectionString) == "" {
		errs = append(errs, errors.New(`metadata "connectionString" is required (a file path such as "data.db" or a "file:" URI)`))
	}
	if _, set := (components.Metadata{Properties: props}).Property("timeout"); !set && o.TimeoutInSeconds != nil {
		o.Timeout = time.Duration(*o.TimeoutInSeconds) * time.Second
	}
	if _, set := (components.Metadata{Properties: props}).Property("cleanupInterval"); !set && o.CleanupIntervalInSeconds != nil {
		o.CleanupInterval = time.Duration(*o.CleanupIntervalInSeconds) * time.Second
	}
	if o.Timeout < time.Second {
		errs = append(errs, fmt.Errorf(`metadata "timeout": %s is below the minimum of 1s`, o.Timeout))
	}
	if !validIdentifier(o.TableName) {
		errs = append(errs, fmt.Errorf(`metadata "tableName": %q must be letters, digits and underscores`, o.TableName))
	}
	if !validIdentifier(o.MetadataTableName) {
		errs = append(errs, fmt.Errorf(`metadata "metadataTableName": %q must be letters, digits and underscores`, o.MetadataTableName))
	}
	if o.TableName != "" && strings.EqualFold(o.TableName, o.MetadataTableName) {
		errs = append(errs, fmt.Errorf(`metadata "tableName" and "metadataTableName" are both %q`, o.TableName))
	}
	o.BusyTimeout = o.BusyTimeout.Truncate(time.Millisecond)
	return o, errors.Join(errs...)
}

func validIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// isMemory reports whether the connection string names SQLite's in-memory database.
func (o Options) isMemory() bool {
	lc := strings.ToLower(o.ConnectionString)
	return strings.HasPrefix(lc, ":memory:") || strings.HasPrefix(lc, "file::memory:")
}

// dsn builds the driver's data source name: the user's path and parameters, plus the
// ones this store depends on. Those are refused when set by hand, because the store's
// correctness rests on them: BEGIN IMMEDIATE takes the write lock at the start of a
// transaction, so that an ETag checked inside it cannot change before the write, even
// from another process; the busy timeout makes a writer wait for that lock instead of
// failing.
func (o Options) dsn() (string, error) {
	base, rawQuery, _ := strings.Cut(o.ConnectionString, "?")
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return "", fmt.Errorf(`metadata "connectionString": query parameters: %w`, err)
	}
	for _, p := range q["_pragma"] {
		lp := strings.ToLower(strings.TrimSpace(p))
		for _, forbidden := range []struct{ pragma, use string }{
			{"busy_timeout", `the "busyTimeout" metadata`},
			{"journal_mode", `the "disableWAL" metadata`},
		} {
			if strings.HasPrefix(lp, forbidden.pragma) {
				return "", fmt.Errorf(`metadata "connectionString": _pragma=%s is set by the store; use %s instead`, p, forbidden.use)
			}
		}
	}
	for _, k := range []string{"_busy_timeout", "_timeout", "_journal_mode", "_journal"} {
		if q.Has(k) {
			return "", fmt.Errorf(`metadata "connectionString": %s is set by the store; use the "busyTimeout" or "disableWAL" metadata instead`, k)
		}
	}
	if v := q.Get("_txlock"); v != "" && !strings.EqualFold(v, "immediate") {
		return "", fmt.Errorf(`metadata "connectionString": _txlock=%s would let concurrent writers break ETag checks; remove it`, v)
	}
	q.Set("_txlock", "immediate")
	if o.BusyTimeout > 0 {
		q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", o.BusyTimeout.Milliseconds()))
	}
	readOnly := q.Get("mode") == "ro" || q.Get("immutable") == "1"
	switch {
	case o.isMemory():
		// Only MEMORY and OFF are possible here; OFF would make rollbacks impossible.
		q.Add("_pragma", "journal_mode(MEMORY)")
	case o.DisableWAL || readOnly:
		q.Add("_pragma", "journal_mode(DELETE)")
	default:
		q.Add("_pragma", "journal_mode(WAL)")
	}
	if !strings.HasPrefix(strings.ToLower(base), "file:") {
		base = "file:" + base
	}
	return base + "?" + q.Encode(), nil
}
