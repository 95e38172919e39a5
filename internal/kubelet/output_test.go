package kubelet

import (
	"bytes"
	"testing"
)

func TestLineWriter(t *testing.T) {
	var out, file bytes.Buffer
	c := &console{out: &out}
	node := &lineWriter{console: c, pod: "nodeapp-1", name: "node", file: &file}
	daprd := &lineWriter{console: c, pod: "nodeapp-1", name: "daprd"}
	_, _ = node.Write([]byte("Got a new order! Order ID: 1\nSuccessfully "))
	_, _ = daprd.Write([]byte("HTTP API called\r\n"))
	_, _ = node.Write([]byte("persisted state.\nno newline"))
	node.Flush()
	want := "nodeapp-1 node | Got a new order! Order ID: 1\n" +
		"nodeapp-1 daprd | HTTP API called\n" +
		"nodeapp-1 node  | Successfully persisted state.\n" +
		"nodeapp-1 node  | no newline\n"
	if out.String() != want {
		t.Errorf("console:\n%s\nwant:\n%s", out.String(), want)
	}
	if want := "Got a new order! Order ID: 1\nSuccessfully persisted state.\nno newline\n"; file.String() != want {
		t.Errorf("log file:\n%s\nwant:\n%s", file.String(), want)
	}
}
