package runtime

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A caller that stalls its upload after the app has answered still gets the whole
// answer: the sidecar does not wait for the rest of a body that nobody will read.
func TestInvokeStalledUploadAfterEarlyAnswer(t *testing.T) {
	early := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "early")
	}))
	t.Cleanup(early.Close)
	m := newMesh(t)
	m.sidecar("b", early.URL)
	a := m.sidecar("a", early.URL)
	addr := strings.TrimPrefix(httpURL(a, ""), "http://")
	for _, target := range []string{"a", "b"} {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// Go's client would hold a partial body back; a raw connection sends it as is.
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		// 64 KiB, enough for every hop to pass it on, of a body announced as 1 MiB.
		_, err = io.WriteString(conn, "POST /v1.0/invoke/"+target+"/method/upload HTTP/1.1\r\nHost: sidecar\r\n"+
			"Content-Length: 1048576\r\n\r\n"+strings.Repeat("x", 64<<10))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		got, err := io.ReadAll(resp.Body) // ends only once the sidecar has finished the call
		_ = conn.Close()
		if err != nil || resp.StatusCode != http.StatusAccepted || string(got) != "early" {
			t.Fatalf("%s: %d %q %v", target, resp.StatusCode, got, err)
		}
	}
}
