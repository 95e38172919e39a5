package invoke

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"strings"
)

// W3C trace context headers.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// spanContext is a parsed W3C traceparent (version 00).
type spanContext struct {
	traceID [16]byte
	spanID  [8]byte
	flags   byte
}

func (sc spanContext) String() string {
	var b strings.Builder
	b.Grow(55)
	b.WriteString("00-")
	b.WriteString(hex.EncodeToString(sc.traceID[:]))
	b.WriteByte('-')
	b.WriteString(hex.EncodeToString(sc.spanID[:]))
	b.WriteByte('-')
	b.WriteString(hex.EncodeToString([]byte{sc.flags}))
	return b.String()
}

// parseTraceparent reads a traceparent header. Versions above 00 are read by their
// first four fields, as the W3C spec asks; all-zero ids and version ff are invalid.
func parseTraceparent(h string) (spanContext, bool) {
	var sc spanContext
	parts := strings.Split(strings.TrimSpace(h), "-")
	if len(parts) < 4 || len(parts[0]) != 2 || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		return sc, false
	}
	ver, err := hex.DecodeString(parts[0])
	if err != nil || ver[0] == 0xff || (ver[0] == 0 && len(parts) != 4) {
		return sc, false
	}
	if !isLowerHex(parts[1]) || !isLowerHex(parts[2]) || !isLowerHex(parts[3]) {
		return sc, false
	}
	_, _ = hex.Decode(sc.traceID[:], []byte(parts[1]))
	_, _ = hex.Decode(sc.spanID[:], []byte(parts[2]))
	flags, _ := hex.DecodeString(parts[3])
	sc.flags = flags[0]
	if sc.traceID == [16]byte{} || sc.spanID == [8]byte{} {
		return sc, false
	}
	return sc, true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// childSpan continues the trace of traceparent with a new span of this sidecar, or
// starts a trace when traceparent is absent or invalid. A new trace is not sampled:
// Outrigger records no spans yet, and the flag tells downstream tracers so.
//
// The ids come from math/rand/v2's generator (ChaCha8, seeded by the OS), which W3C's
// randomness requirements are met by, without a system call per span.
func childSpan(traceparent string) spanContext {
	sc, ok := parseTraceparent(traceparent)
	if !ok {
		sc = spanContext{}
		binary.BigEndian.PutUint64(sc.traceID[:8], rand.Uint64())
		binary.BigEndian.PutUint64(sc.traceID[8:], rand.Uint64()|1)
	}
	binary.BigEndian.PutUint64(sc.spanID[:], rand.Uint64()|1)
	return sc
}
