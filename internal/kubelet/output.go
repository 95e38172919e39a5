package kubelet

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// console interleaves the lines of every container on one writer, each prefixed with
// its pod and container, the prefixes padded to a common width.
type console struct {
	mu     sync.Mutex
	out    io.Writer
	color  bool
	width  int
	colors map[string]string
}

var palette = []string{"\x1b[36m", "\x1b[33m", "\x1b[35m", "\x1b[32m", "\x1b[34m", "\x1b[91m"}

func (c *console) line(pod, container string, text []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	prefix := pod + " " + container
	if len(prefix) > c.width {
		c.width = len(prefix)
	}
	var b bytes.Buffer
	if c.color {
		if c.colors == nil {
			c.colors = map[string]string{}
		}
		col, ok := c.colors[pod]
		if !ok {
			col = palette[len(c.colors)%len(palette)]
			c.colors[pod] = col
		}
		b.WriteString(col)
	}
	b.WriteString(prefix)
	b.WriteString(strings.Repeat(" ", c.width-len(prefix)))
	b.WriteString(" |")
	if c.color {
		b.WriteString("\x1b[0m")
	}
	b.WriteByte(' ')
	b.Write(text)
	b.WriteByte('\n')
	_, _ = c.out.Write(b.Bytes())
}

// lineWriter is a container's stdout and stderr: whole lines go to the console and to
// the container's log file.
type lineWriter struct {
	mu        sync.Mutex
	console   *console
	pod, name string
	file      io.Writer
	buf       []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	// A line with no end in sight is cut, so that it cannot grow without bound.
	if len(w.buf) > 64<<10 {
		w.emit(w.buf)
		w.buf = nil
	}
	return len(p), nil
}

func (w *lineWriter) emit(line []byte) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	if w.file != nil {
		_, _ = w.file.Write(append(append([]byte(nil), line...), '\n'))
	}
	w.console.line(w.pod, w.name, line)
}

// Flush writes a last line that had no newline.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
}
