package mqtt3

import (
	"errors"
	"strings"
)

// filterTopic is the topic filter a subscription's messages match: a shared
// subscription ($share/<group>/<filter>, or $queue/<filter> on brokers that offer it)
// delivers messages under their own topic, not the subscribed name.
func filterTopic(filter string) string {
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		if _, f, found := strings.Cut(rest, "/"); found {
			return f
		}
		return ""
	}
	if rest, ok := strings.CutPrefix(filter, "$queue/"); ok {
		return rest
	}
	return filter
}

// matches reports whether a message's topic matches a topic filter, by the rules of
// MQTT 3.1.1 section 4.7.
func matches(filter, topic string) bool {
	filter = filterTopic(filter)
	// A wildcard in the first level does not match a topic that starts with $ (4.7.2),
	// so that subscribing to # does not take the broker's $SYS tree.
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "#") || strings.HasPrefix(filter, "+")) {
		return false
	}
	f, t := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, level := range f {
		switch {
		case level == "#":
			return true // matches the parent level too: "a/#" matches "a"
		case i >= len(t):
			return false
		case level != "+" && level != t[i]:
			return false
		}
	}
	return len(f) == len(t)
}

// validFilter checks what the broker would otherwise answer by dropping the
// connection, which would cost every subscription of the session a reconnect.
func validFilter(filter string) error {
	f := filterTopic(filter)
	if f == "" {
		return errors.New("topic is empty")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return errors.New(`"#" must be a whole level, and the last one`)
		}
		if strings.Contains(l, "+") && l != "+" {
			return errors.New(`"+" must be a whole level`)
		}
	}
	return nil
}

// validTopic checks a topic to publish to: a wildcard in it makes an MQTT 3.1.1 broker
// drop the connection.
func validTopic(topic string) error {
	if topic == "" {
		return errors.New("topic is empty")
	}
	if strings.ContainsAny(topic, "#+") {
		return errors.New(`a topic to publish to holds no wildcard ("+" or "#")`)
	}
	return nil
}
