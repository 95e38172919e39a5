package jetstream

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// maxNamePart bounds each readable part of a derived name, well inside the server's
// limits on stream and consumer names (which also become file names).
const maxNamePart = 64

// defaultStreamPrefix starts the name of a stream Outrigger creates for a topic that
// no stream covers and streamName does not name.
const defaultStreamPrefix = "outrigger-"

// defaultStreamName is the stream Outrigger creates for a topic: one per topic, so that
// sidecars never race to edit one stream's subject list.
func defaultStreamName(topic string) string {
	clean, changed := cleanName(topic)
	name := defaultStreamPrefix + clean
	if changed {
		name += "-" + shortHash(topic)
	}
	return name
}

// consumerName is the durable consumer of a group on a topic: "<group>_<topic>". A
// hash of both is appended when either had to be cleaned or shortened, or when the
// group holds "_" and the name could be split two ways, so distinct pairs never share a
// consumer.
func consumerName(group, topic string) string {
	g, gChanged := cleanName(group)
	t, tChanged := cleanName(topic)
	name := g + "_" + t
	if gChanged || tChanged || strings.Contains(group, "_") {
		name += "_" + shortHash(group+"\x00"+topic)
	}
	return name
}

// cleanName replaces what a stream or consumer name cannot hold (whitespace, ".",
// "*", ">", path separators, non-printable characters) with "_" and shortens it; it
// reports whether it changed anything.
func cleanName(s string) (string, bool) {
	changed := false
	var b strings.Builder
	for _, r := range s {
		if r <= ' ' || strings.ContainsRune(".*>/\\", r) || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			r = '_'
			changed = true
		}
		b.WriteRune(r)
	}
	out := b.String()
	if len(out) > maxNamePart {
		out = strings.ToValidUTF8(out[:maxNamePart], "")
		changed = true
	}
	return out, changed
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

// checkTopic rejects a topic that is not a NATS subject; a wildcard is allowed when
// subscribing only.
func checkTopic(topic string, subscribing bool) error {
	if topic == "" {
		return errors.New("topic is empty")
	}
	if strings.IndexFunc(topic, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
		return fmt.Errorf("topic %q is not a NATS subject: it holds whitespace or a control character", topic)
	}
	for _, tok := range strings.Split(topic, ".") {
		switch {
		case tok == "":
			return fmt.Errorf("topic %q is not a NATS subject: it has an empty token (a leading, trailing or doubled \".\")", topic)
		case tok == "*" || tok == ">":
			if !subscribing {
				return fmt.Errorf("topic %q holds the wildcard %q: a message is published to one subject", topic, tok)
			}
		}
	}
	return nil
}

// covers reports whether every subject matched by subject is matched by the stream
// subject pattern.
func covers(pattern, subject string) bool {
	p := strings.Split(pattern, ".")
	s := strings.Split(subject, ".")
	for i, tok := range s {
		if i >= len(p) {
			return false
		}
		switch p[i] {
		case ">":
			return true
		case "*":
			if tok == ">" {
				return false
			}
		default:
			if p[i] != tok {
				return false
			}
		}
	}
	return len(p) == len(s)
}
