package resources

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsyaml "sigs.k8s.io/yaml"
)

// ManifestError is one problem in a manifest, placed at its file and line.
type ManifestError struct {
	Origin Origin
	// Line is the line of the offending key or value in Origin.File; 0 when unknown.
	Line int
	// Kind and Name identify the resource once they are known.
	Kind string
	Name string
	// Field is the path of the offending field, such as spec.metadata[0].name.
	Field string
	Msg   string
}

func (e *ManifestError) Error() string {
	var b strings.Builder
	b.WriteString(e.Origin.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	switch {
	case e.Kind != "" && e.Name != "":
		fmt.Fprintf(&b, "%s %q (document %d): ", e.Kind, e.Name, e.Origin.Document)
	case e.Kind != "":
		fmt.Fprintf(&b, "%s (document %d): ", e.Kind, e.Origin.Document)
	default:
		fmt.Fprintf(&b, "document %d: ", e.Origin.Document)
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// chunk is one YAML document of a file and the line it starts on.
type chunk struct {
	line int
	data []byte
}

// splitDocuments cuts a file at its "---" lines. Each chunk keeps its separator line,
// which a YAML parser accepts as the start of a single document, so that a line number
// inside a chunk plus the chunk's start gives the line in the file. A "---" at column
// 0 cannot occur inside a scalar, whose continuation lines are indented.
func splitDocuments(data []byte) []chunk {
	var chunks []chunk
	start, startLine := 0, 1
	line := 1
	for off := 0; off < len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		next := len(data)
		if end >= 0 {
			next = off + end + 1
		}
		if off > start && isSeparator(data[off:next]) {
			chunks = append(chunks, chunk{line: startLine, data: data[start:off]})
			start, startLine = off, line
		}
		off = next
		line++
	}
	return append(chunks, chunk{line: startLine, data: data[start:]})
}

func isSeparator(l []byte) bool {
	if !bytes.HasPrefix(l, []byte("---")) {
		return false
	}
	rest := l[3:]
	return len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\n' || rest[0] == '\r'
}

var yamlLineRE = regexp.MustCompile(`yaml: line (\d+): (.*)`)

// yamlErrorAt splits a YAML parser's error into its line (made absolute with the
// chunk's start) and its message.
func yamlErrorAt(err error, start int) (line int, msg string) {
	s := err.Error()
	if m := yamlLineRE.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		return start + n - 1, m[2]
	}
	return 0, strings.TrimPrefix(s, "yaml: ")
}

// syntaxErrorAt places a YAML syntax error. The parser reports the line where the
// enclosing construct began (a block mapping's first key), often far above the mistake,
// so the first line at which the document stops parsing is found by parsing longer and
// longer prefixes of it; the later of the two lines is reported.
func syntaxErrorAt(data []byte, err error, start int) (line int, msg string) {
	line, msg = yamlErrorAt(err, start)
	lines := bytes.SplitAfter(data, []byte("\n"))
	var n yamlv3.Node
	end := 0
	for i, l := range lines {
		end += len(l)
		if yamlv3.Unmarshal(data[:end], &n) != nil {
			if at := start + i; at > line {
				line = at
			}
			break
		}
	}
	if i := line - start; i >= 0 && i < len(lines) {
		if text := strings.TrimRight(string(lines[i]), "\r\n"); strings.TrimSpace(text) != "" {
			msg += fmt.Sprintf(" (at %q)", text)
		}
	}
	return line, msg
}

// document is one parsed YAML document: the top-level mapping node gives lines for
// field paths.
type document struct {
	origin Origin
	data   []byte
	root   *yamlv3.Node
}

// lineOf returns the line of the deepest node that path reaches: the field itself when
// it is present, else its nearest present parent (a missing required field is reported
// at its parent).
func (d *document) lineOf(path string) int {
	_, line, _ := d.resolve(path)
	return line
}

// resolve follows path, a field.Path string ("spec.metadata[0].name",
// "spec.policies.retries[fast]") or an encoding/json error path, which has no list
// indices ("spec.metadata.value"): there the first list item having the field is taken.
// It returns the path with those indices filled in, the line of the deepest node
// reached, and the node itself when the whole path is present.
func (d *document) resolve(path string) (canon string, line int, node *yamlv3.Node) {
	offset := d.origin.Line - 1
	line = d.root.Line + offset
	n := d.root
	var p *field.Path
	complete := true
	for _, el := range splitPath(path) {
		key, val, index := child(n, el)
		if val == nil {
			complete = false
			break
		}
		switch {
		case index >= 0:
			p = p.Index(index)
			if !el.bracket {
				p = p.Child(el.name)
			}
		case el.bracket:
			p = p.Key(el.name)
		default:
			p = p.Child(el.name)
		}
		n = val
		line = val.Line + offset
		if key != nil {
			line = key.Line + offset
		}
	}
	if !complete {
		return path, line, nil
	}
	return p.String(), line, n
}

type pathElem struct {
	name    string
	bracket bool // [name]: a list index or a map key
}

func splitPath(p string) []pathElem {
	var out []pathElem
	for p != "" {
		switch p[0] {
		case '.':
			p = p[1:]
		case '[':
			end := strings.IndexByte(p, ']')
			if end < 0 {
				return append(out, pathElem{name: p[1:], bracket: true})
			}
			out = append(out, pathElem{name: p[1:end], bracket: true})
			p = p[end+1:]
		default:
			end := strings.IndexAny(p, ".[")
			if end < 0 {
				end = len(p)
			}
			out = append(out, pathElem{name: p[:end]})
			p = p[end:]
		}
	}
	return out
}

func deref(n *yamlv3.Node) *yamlv3.Node {
	for n != nil && n.Kind == yamlv3.AliasNode {
		n = n.Alias
	}
	return n
}

// child follows one path element from n, returning the key node (for mappings), the
// value node, or nil when the element is not present, and the list index taken (-1
// when n is not a list).
func child(n *yamlv3.Node, el pathElem) (key, val *yamlv3.Node, index int) {
	n = deref(n)
	if n == nil {
		return nil, nil, -1
	}
	switch n.Kind {
	case yamlv3.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == el.name {
				return n.Content[i], deref(n.Content[i+1]), -1
			}
		}
	case yamlv3.SequenceNode:
		if el.bracket {
			if i, err := strconv.Atoi(el.name); err == nil && i >= 0 && i < len(n.Content) {
				return nil, deref(n.Content[i]), i
			}
			return nil, nil, -1
		}
		for i, item := range n.Content {
			if k, v, _ := child(item, el); v != nil {
				return k, v, i
			}
		}
	}
	return nil, nil, -1
}

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

type fieldProblem struct {
	path string
	line int
	msg  string
}

// unknownFields walks the YAML tree against the Go type that it will decode into and
// reports every key the type does not have, and every key given twice. encoding/json
// cannot do this with paths and lines, and matches names case-insensitively where the
// API server does not, so a manifest it accepts could be refused by Kubernetes.
func unknownFields(n *yamlv3.Node, t reflect.Type, path *field.Path, lineOffset int, out *[]fieldProblem) {
	n = deref(n)
	if n == nil || (n.Kind == yamlv3.ScalarNode && n.Tag == "!!null") {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Interface || t.Implements(jsonUnmarshalerType) || reflect.PointerTo(t).Implements(jsonUnmarshalerType) ||
		t.Implements(textUnmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return // decoded by its own rules: any value is the type's to judge
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yamlv3.MappingNode {
			return // a type error, reported by the decoder
		}
		fields := jsonFields(t)
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				unknownFields(v, t, path, lineOffset, out)
				continue
			}
			if first, dup := seen[k.Value]; dup {
				*out = append(*out, fieldProblem{path: path.Child(k.Value).String(), line: k.Line + lineOffset,
					msg: fmt.Sprintf("duplicate field (first given on line %d)", first+lineOffset)})
				continue
			}
			seen[k.Value] = k.Line
			ft, ok := fields[k.Value]
			if !ok {
				msg := "unknown field"
				for name := range fields {
					if strings.EqualFold(name, k.Value) {
						msg = fmt.Sprintf("unknown field (did you mean %q?)", name)
						break
					}
				}
				*out = append(*out, fieldProblem{path: path.Child(k.Value).String(), line: k.Line + lineOffset, msg: msg})
				continue
			}
			unknownFields(v, ft, path.Child(k.Value), lineOffset, out)
		}
	case reflect.Map:
		if n.Kind != yamlv3.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			unknownFields(n.Content[i+1], t.Elem(), path.Key(n.Content[i].Value), lineOffset, out)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yamlv3.SequenceNode || t.Elem().Kind() == reflect.Uint8 {
			return
		}
		for i, item := range n.Content {
			unknownFields(item, t.Elem(), path.Index(i), lineOffset, out)
		}
	}
}

// jsonFields maps the JSON names of a struct's fields to their types, with the fields
// of embedded structs (metav1.TypeMeta, common.Scoped) promoted as encoding/json does.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					if _, ok := out[k]; !ok {
						out[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// decode fills obj from the document. It reports unknown and duplicate fields, then
// decodes with sigs.k8s.io/yaml as Dapr's loader does, so that values keep Dapr's
// leniencies (a number where a string is expected becomes that string), and reports a
// wrong type at its field.
func (d *document) decode(obj any) []fieldProblem {
	var problems []fieldProblem
	unknownFields(d.root, reflect.TypeOf(obj), nil, d.origin.Line-1, &problems)
	if len(problems) > 0 {
		return problems
	}
	if err := sigsyaml.Unmarshal(d.data, obj); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			path, line, n := d.resolve(te.Field)
			msg := fmt.Sprintf("expected %s, got %s", describeType(te.Type), te.Value)
			if n != nil && n.Kind == yamlv3.ScalarNode {
				msg += fmt.Sprintf(" %q", n.Value)
			}
			return []fieldProblem{{path: path, line: line, msg: msg}}
		}
		line, msg := yamlErrorAt(err, d.origin.Line)
		if line == 0 {
			line = d.lineOf("")
		}
		msg = strings.TrimPrefix(msg, "error unmarshaling JSON: while decoding JSON: json: ")
		return []fieldProblem{{line: line, msg: msg}}
	}
	return nil
}

func describeType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean (true or false)"
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

// scalar returns the value of a top-level key of a mapping node when it is a scalar.
func scalar(n *yamlv3.Node, path ...string) string {
	for _, p := range path {
		_, n, _ = child(n, pathElem{name: p})
		if n == nil {
			return ""
		}
	}
	if n.Kind != yamlv3.ScalarNode {
		return ""
	}
	return n.Value
}
