package metadata

import (
	"strings"
	"testing"
	"time"
)

type options struct {
	Host      string        `metadata:"redisHost" required:"true"`
	DB        int           `metadata:"redisDB" default:"0"`
	TLS       bool          `metadata:"enableTLS"`
	Timeout   time.Duration `metadata:"timeout" default:"20s"`
	TTL       *int          `metadata:"ttlInSeconds"`
	Ratio     float64       `metadata:"ratio"`
	Cleanup   time.Duration `metadata:"cleanupInterval" unit:"s"`
	Topics    []string      `metadata:"allowedTopics"`
	unexposed string
}

func TestDecode(t *testing.T) {
	var o options
	err := Decode(map[string]string{"REDISHOST": "localhost:6379", "enableTLS": "yes", "timeout": "1500", "ttlInSeconds": "60",
		"ratio": "0.5", "allowedTopics": "a, b,,c", "cleanupInterval": "300"}, &o)
	if err != nil {
		t.Fatal(err)
	}
	if o.Host != "localhost:6379" || o.DB != 0 || !o.TLS || o.Timeout != 1500*time.Millisecond || o.TTL == nil || *o.TTL != 60 ||
		o.Ratio != 0.5 || strings.Join(o.Topics, "|") != "a|b|c" || o.Cleanup != 300*time.Second {
		t.Errorf("decoded %+v", o)
	}
	var d options
	if err := Decode(map[string]string{"redisHost": "h"}, &d); err != nil || d.Timeout != 20*time.Second || d.TTL != nil {
		t.Errorf("defaults: %+v, %v", d, err)
	}
}

func TestDecodeErrorsNameEveryProperty(t *testing.T) {
	var o options
	err := Decode(map[string]string{"redisDB": "zero", "enableTLS": "maybe", "timeout": "soon"}, &o)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`"redisHost" is required`, `"redisDB": "zero"`, `"enableTLS": "maybe"`, `"timeout": "soon"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %s", err, want)
		}
	}
	if err := Decode(map[string]string{}, o); err == nil {
		t.Error("a non-pointer is accepted")
	}
}
