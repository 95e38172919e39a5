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

// options are the component's metadata; the package comment describes each.
type options struct {
	ConnectionString string `metadata:"connectionString" required:"true"`
	ConsumerID       string `metadata:"consumerID"`
	TablePrefix      string `metadata:"tablePrefix" default:"pubsub_"`

	PollInterval      time.Duration `metadata:"pollInterval" default:"50ms"`
	VisibilityTimeout time.Duration `metadata:"visibilityTimeout" default:"30s"`
	// ProcessingTimeout is Dapr's Redis Streams name for the same setting; it applies
	// when visibilityTimeout is not set.
	ProcessingTimeout time.Duration `metadata:"processingTimeout"`
	RedeliverInterval time.Duration `metadata:"redeliverInterval" default:"1s"`
	Retention         time.Duration `metadata:"retention" default:"24h"`
	CleanupInterval   time.Duration `metadata:"cleanupInterval" default:"1m"`

	Timeout     time.Duration `metadata:"timeout" default:"20s"`
	BusyTimeout time.Duration `metadata:"busyTimeout" default:"5s"`
	DisableWAL  bool          `metadata:"disableWAL"`
}

// minVisibilityTimeout keeps lease renewal (three times per timeout) from turning into
// a stream of writes that starves the publishers of the write lock.
const minVisibilityTimeout = 100 * time.Millisecond

func parseOptions(props map[string]string) (options, error) {
	var o options
	if err := metadata.Decode(props, &o); err != nil {
		return o, err
	}
	md := components.Metadata{Properties: props}
	if _, set := md.Property("visibilityTimeout"); !set && o.ProcessingTimeout != 0 {
		o.VisibilityTimeout = o.ProcessingTimeout
	}
	var errs []error
	if o.ConnectionString != "" && o.isMemory() {
		errs = append(errs, errors.New(`metadata "connectionString": an in-memory database is private to one connection, so no other sidecar could share it; name a file, or use pubsub.in-memory`))
	}
	if !validIdentifier(o.TablePrefix) {
		errs = append(errs, fmt.Errorf(`metadata "tablePrefix": %q must be letters, digits and underscores`, o.TablePrefix))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		min  time.Duration
	}{
		{"pollInterval", o.PollInterval, time.Millisecond},
		{"visibilityTimeout", o.VisibilityTimeout, minVisibilityTimeout},
		{"timeout", o.Timeout, time.Millisecond},
	} {
		if d.v < d.min {
			errs = append(errs, fmt.Errorf(`metadata %q: %s is below the minimum of %s`, d.name, d.v, d.min))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"redeliverInterval", o.RedeliverInterval}, {"busyTimeout", o.BusyTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf(`metadata %q: %s is negative`, d.name, d.v))
		}
	}
	o.BusyTimeout = o.BusyTimeout.Truncate(time.Millisecond)
	return o, errors.Join(errs...)
}

// validIdentifier accepts what may sit inside a quoted table name without escaping;
// an empty prefix is allowed.
func validIdentifier(s string) bool {
	for _, r := range s {
		if !(r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

func (o options) isMemory() bool {
	lc := strings.ToLower(strings.TrimSpace(o.ConnectionString))
	return strings.HasPrefix(lc, ":memory:") || strings.HasPrefix(lc, "file::memory:") ||
		strings.Contains(lc, "mode=memory")
}

// dsn builds the driver's data source name: the user's path and parameters plus the
// ones the component relies on, which are refused when set by hand. BEGIN IMMEDIATE
// takes the write lock when a claim starts, so that two processes never read the same
// free message and both lease it; the busy timeout makes a writer queue for that lock
// instead of failing.
func (o options) dsn() (string, error) {
	base, rawQuery, _ := strings.Cut(strings.TrimSpace(o.ConnectionString), "?")
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return "", fmt.Errorf(`metadata "connectionString": query parameters: %w`, err)
	}
	userSync := false
	for _, p := range q["_pragma"] {
		lp := strings.ToLower(strings.TrimSpace(p))
		for _, forbidden := range []struct{ pragma, use string }{
			{"busy_timeout", `the "busyTimeout" metadata`},
			{"journal_mode", `the "disableWAL" metadata`},
		} {
			if strings.HasPrefix(lp, forbidden.pragma) {
				return "", fmt.Errorf(`metadata "connectionString": _pragma=%s is set by the component; use %s instead`, p, forbidden.use)
			}
		}
		if strings.HasPrefix(lp, "synchronous") {
			userSync = true
		}
	}
	for _, k := range []string{"_busy_timeout", "_timeout", "_journal_mode", "_journal"} {
		if q.Has(k) {
			return "", fmt.Errorf(`metadata "connectionString": %s is set by the component; use the "busyTimeout" or "disableWAL" metadata instead`, k)
		}
	}
	if v := q.Get("_txlock"); v != "" && !strings.EqualFold(v, "immediate") {
		return "", fmt.Errorf(`metadata "connectionString": _txlock=%s would let two consumers lease the same message; remove it`, v)
	}
	if q.Get("mode") == "ro" || q.Get("immutable") == "1" {
		return "", errors.New(`metadata "connectionString": the database must be writable: consuming a message writes its lease`)
	}
	q.Set("_txlock", "immediate")
	if o.BusyTimeout > 0 {
		q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", o.BusyTimeout.Milliseconds()))
	}
	if o.DisableWAL {
		q.Add("_pragma", "journal_mode(DELETE)")
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		if !userSync {
			// In WAL mode NORMAL loses nothing when a process dies, SIGKILL included;
			// only a power cut may drop the last commits. FULL would fsync every
			// publish, claim and ack.
			q.Add("_pragma", "synchronous(NORMAL)")
		}
	}
	if !strings.HasPrefix(strings.ToLower(base), "file:") {
		base = "file:" + base
	}
	return base + "?" + q.Encode(), nil
}
