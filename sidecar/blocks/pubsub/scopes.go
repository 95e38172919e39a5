package pubsub

import (
	"slices"
	"strings"
)

// Component metadata names of the topic scopes, Dapr's.
const (
	mdPublishingScopes   = "publishingScopes"
	mdSubscriptionScopes = "subscriptionScopes"
	mdAllowedTopics      = "allowedTopics"
	mdProtectedTopics    = "protectedTopics"
)

// Scopes are a component's topic restrictions for this app.
type Scopes struct {
	// Allowed, when not empty, is the only topics any app may use.
	Allowed []string
	// Protected topics may only be used by apps that list them in their scopes.
	Protected []string
	// Publishing and Subscribing are this app's entries in publishingScopes and
	// subscriptionScopes; nil when the app has none.
	Publishing  []string
	Subscribing []string
}

// ParseScopes reads a component's scopes for appID from its metadata, as Dapr does
// (pkg/scopes): names match case-insensitively, spaces are ignored, and scopes are
// "app1=t1,t2;app2=t3". An app listed with no topics ("app1=") may use none.
func ParseScopes(props map[string]string, appID string) Scopes {
	return Scopes{
		Allowed:     topicList(lookup(props, mdAllowedTopics)),
		Protected:   topicList(lookup(props, mdProtectedTopics)),
		Publishing:  appTopics(lookup(props, mdPublishingScopes), appID),
		Subscribing: appTopics(lookup(props, mdSubscriptionScopes), appID),
	}
}

func lookup(props map[string]string, name string) string {
	for k, v := range props {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

func topicList(v string) []string {
	v = strings.ReplaceAll(v, " ", "")
	if v == "" {
		return nil
	}
	var out []string
	for _, t := range strings.Split(v, ",") {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

func appTopics(v, appID string) []string {
	v = strings.ReplaceAll(v, " ", "")
	var out []string
	for _, entry := range strings.Split(v, ";") {
		app, topics, ok := strings.Cut(entry, "=")
		if !ok || app != appID {
			continue
		}
		for _, t := range strings.Split(topics, ",") {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// CanPublish reports whether the app may publish to topic.
func (s Scopes) CanPublish(topic string) bool { return s.allowed(topic, s.Publishing) }

// CanSubscribe reports whether the app may subscribe to topic.
func (s Scopes) CanSubscribe(topic string) bool { return s.allowed(topic, s.Subscribing) }

// allowed is Dapr's IsOperationAllowed: outside allowedTopics nothing is allowed; a
// protected topic needs the app's scope to list it; otherwise an app with scopes may
// use only what they list, and one without may use anything.
func (s Scopes) allowed(topic string, scoped []string) bool {
	if len(s.Allowed) > 0 && !slices.Contains(s.Allowed, topic) {
		return false
	}
	if !slices.Contains(s.Protected, topic) && len(scoped) == 0 {
		return true
	}
	return slices.Contains(scoped, topic)
}
