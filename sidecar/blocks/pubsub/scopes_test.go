package pubsub

import "testing"

func TestScopes(t *testing.T) {
	cases := []struct {
		name     string
		props    map[string]string
		topic    string
		pub, sub bool
	}{
		{"no scopes", nil, "t", true, true},
		{"allowedTopics admits", map[string]string{"allowedTopics": "a, t"}, "t", true, true},
		{"allowedTopics refuses", map[string]string{"allowedTopics": "a"}, "t", false, false},
		{"publishing scope admits", map[string]string{"publishingScopes": "app=t;other=x"}, "t", true, true},
		{"publishing scope refuses", map[string]string{"publishingScopes": "app=x"}, "t", false, true},
		{"empty scope refuses all", map[string]string{"subscriptionScopes": "app="}, "t", true, false},
		{"other app's scope does not apply", map[string]string{"publishingScopes": "other=x"}, "t", true, true},
		{"protected needs a scope", map[string]string{"protectedTopics": "t"}, "t", false, false},
		{"protected with scope", map[string]string{"protectedTopics": "t", "PublishingScopes": "app=t"}, "t", true, false},
		{"allowed but not scoped", map[string]string{"allowedTopics": "t", "subscriptionScopes": "app=y"}, "t", true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := ParseScopes(c.props, "app")
			if got := s.CanPublish(c.topic); got != c.pub {
				t.Errorf("CanPublish(%q) = %v, want %v (%+v)", c.topic, got, c.pub, s)
			}
			if got := s.CanSubscribe(c.topic); got != c.sub {
				t.Errorf("CanSubscribe(%q) = %v, want %v (%+v)", c.topic, got, c.sub, s)
			}
		})
	}
}
