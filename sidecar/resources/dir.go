package resources

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	yamlv3 "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/util/validation/field"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	daprv2alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v2alpha1"
	"github.com/outrigger-dev/outrigger/webhooks/validation/checks"
)

// Dir is the self-hosted source: the YAML files of one or more directories
// (--resources-path). As in Dapr, only the files directly in each directory are read,
// subdirectories are ignored, and a file may hold several documents separated by ---.
// Unlike Dapr, which logs a malformed manifest and carries on without it, a manifest
// that cannot be read fails the load with its file, line and field: a component that
// silently goes missing is harder to diagnose than a sidecar that refuses to start.
type Dir struct {
	Paths []string
	// AppID drops the resources whose scopes do not list it.
	AppID string
	// Namespace, when set, drops Components and HTTPEndpoints of another namespace, as
	// Dapr does when NAMESPACE is set. Leave it empty in self-hosted mode unless the
	// NAMESPACE environment variable is set.
	Namespace string
	// Log receives a line for each document or file left out, and Watch's reloads. The
	// zero value discards.
	Log logr.Logger
	// Debounce is the quiet period Watch waits for after a change before it reloads, so
	// that the several events of one save (or of copying several files) make one
	// reload; zero is DefaultDebounce.
	Debounce time.Duration

	// mu guards last, the set of the last successful Load or reload: Watch diffs each
	// reload against it.
	mu   sync.Mutex
	last *Set
	// reloaded, when set, is called after each reload of Watch (the first one once the
	// directories are watched) with the events it sent or the error that kept the last
	// good set; tests synchronise on it.
	reloaded func([]Event, error)
}

var _ Source = (*Dir)(nil)

// LoadDir reads the manifests of paths for the app appID; see Dir.
func LoadDir(paths []string, appID string) (*Set, error) {
	return (&Dir{Paths: paths, AppID: appID}).Load(context.Background())
}

// Load reads every manifest. The error joins one *ManifestError per problem found, so a
// user sees them all at once. The set loaded is the one Watch reports changes against.
func (d *Dir) Load(ctx context.Context) (*Set, error) {
	set, err := d.load(ctx, d.Log)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.last = set
	d.mu.Unlock()
	return set, nil
}

// load reads every manifest, logging what it leaves out to log.
func (d *Dir) load(ctx context.Context, log logr.Logger) (*Set, error) {
	l := &dirLoader{Dir: d, log: log, set: &Set{}}
	if l.log.GetSink() == nil {
		l.log = logr.Discard()
	}
	for _, p := range d.Paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l.loadPath(p)
	}
	l.finish()
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	return l.set, nil
}

type dirLoader struct {
	*Dir
	log        logr.Logger
	set        *Set
	errs       []error
	candidates []candidate
}

// candidate is a decoded, valid resource before the scope, namespace and duplicate
// checks, which need every document read first.
type candidate struct {
	kind        Kind
	obj         Object
	origin      Origin
	scopes      []string
	byNamespace bool
	nameLine    int
}

func isYAML(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".yaml" || ext == ".yml"
}

func (l *dirLoader) loadPath(p string) {
	info, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			l.errs = append(l.errs, fmt.Errorf("resources path %s: no such directory", p))
		} else {
			l.errs = append(l.errs, fmt.Errorf("resources path %s: %w", p, err))
		}
		return
	}
	if !info.IsDir() {
		// Dapr reads directories only; a single file is accepted as a convenience.
		l.loadFile(p)
		return
	}
	entries, err := os.ReadDir(p) // sorted by name, which gives the load order
	if err != nil {
		l.errs = append(l.errs, fmt.Errorf("resources path %s: %w", p, err))
		return
	}
	for _, e := range entries {
		file := filepath.Join(p, e.Name())
		switch {
		case e.IsDir():
			l.log.V(1).Info("Ignoring a subdirectory of a resources path", "path", file)
		case !isYAML(e.Name()):
			l.set.Skipped = append(l.set.Skipped, Skipped{Origin: Origin{File: file}, Reason: "not a .yaml or .yml file"})
			l.log.Info("Ignoring a file that is not YAML in a resources path", "file", file)
		default:
			l.loadFile(file)
		}
	}
}

func (l *dirLoader) loadFile(file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		l.errs = append(l.errs, fmt.Errorf("read %s: %w", file, err))
		return
	}
	for i, c := range splitDocuments(data) {
		l.loadDocument(Origin{File: file, Document: i + 1, Line: c.line}, c.data)
	}
}

func (l *dirLoader) fail(origin Origin, line int, kind, name, path, msg string) {
	l.errs = append(l.errs, &ManifestError{Origin: origin, Line: line, Kind: kind, Name: name, Field: path, Msg: msg})
}

func (l *dirLoader) loadDocument(origin Origin, data []byte) {
	var root yamlv3.Node
	if err := yamlv3.Unmarshal(data, &root); err != nil {
		line, msg := syntaxErrorAt(data, err, origin.Line)
		l.fail(origin, line, "", "", "", "malformed YAML: "+msg)
		return
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return // only comments or an empty document, as a trailing --- leaves
	}
	top := deref(root.Content[0])
	if top.Kind == yamlv3.ScalarNode && top.Tag == "!!null" {
		return
	}
	d := &document{origin: origin, data: data, root: top}
	if top.Kind != yamlv3.MappingNode {
		// Well-formed YAML that cannot be a resource (a list, such as a JSON patch kept
		// next to the manifests) is left out like a document of another kind.
		l.set.Skipped = append(l.set.Skipped, Skipped{Origin: origin, Reason: "not a mapping, so not a resource"})
		l.log.Info("Skipping a YAML document that is not a mapping", "file", origin.File, "document", origin.Document)
		return
	}
	apiVersion, kind, name := scalar(top, "apiVersion"), scalar(top, "kind"), scalar(top, "metadata", "name")

	var obj Object
	var problems []fieldProblem
	var errs field.ErrorList
	switch {
	case apiVersion == daprv1alpha1.GroupVersion.String() && kind == string(KindComponent):
		c := &daprv1alpha1.Component{}
		problems, obj = d.decode(c), c
		if len(problems) == 0 {
			errs = componentErrors(c)
		}
	case apiVersion == daprv2alpha1.GroupVersion.String() && kind == string(KindSubscription):
		s := &daprv2alpha1.Subscription{}
		problems, obj = d.decode(s), s
		if len(problems) == 0 {
			errs = checks.SubscriptionErrors(s)
		}
	case apiVersion == daprv1alpha1.GroupVersion.String() && kind == string(KindSubscription):
		// Stored and used as v2alpha1, as Dapr's loader and the conversion webhook do:
		// spec.route becomes spec.routes.default.
		v1 := &daprv1alpha1.Subscription{}
		if problems = d.decode(v1); len(problems) == 0 {
			s := &daprv2alpha1.Subscription{}
			if err := v1.ConvertTo(s); err != nil {
				l.fail(origin, d.lineOf(""), kind, name, "", err.Error())
				return
			}
			s.APIVersion, s.Kind = daprv2alpha1.GroupVersion.String(), string(KindSubscription)
			obj, errs = s, checks.SubscriptionErrors(s)
		}
	case apiVersion == daprv1alpha1.GroupVersion.String() && kind == string(KindConfiguration):
		c := &daprv1alpha1.Configuration{}
		problems, obj = d.decode(c), c
		if len(problems) == 0 {
			errs = checks.ConfigurationErrors(c)
		}
	case apiVersion == daprv1alpha1.GroupVersion.String() && kind == string(KindResiliency):
		r := &daprv1alpha1.Resiliency{}
		problems, obj = d.decode(r), r
		if len(problems) == 0 {
			errs = checks.ResiliencyErrors(r)
		}
	case apiVersion == daprv1alpha1.GroupVersion.String() && kind == string(KindHTTPEndpoint):
		e := &daprv1alpha1.HTTPEndpoint{}
		problems, obj = d.decode(e), e
		if len(problems) == 0 {
			errs = checks.HTTPEndpointErrors(e)
		}
	default:
		// Dapr's loader skips documents of other kinds without a word; a warning helps
		// with a typo in kind or apiVersion.
		what := apiVersion + "/" + kind
		if apiVersion == "" && kind == "" {
			what = ""
		}
		l.set.Skipped = append(l.set.Skipped, Skipped{Origin: origin, Kind: what, Name: name, Reason: "not a dapr.io resource Outrigger reads"})
		l.log.Info("Skipping a document that is not a dapr.io resource", "file", origin.File, "document", origin.Document,
			"apiVersion", apiVersion, "kind", kind, "name", name)
		return
	}
	for _, p := range problems {
		l.fail(origin, p.line, kind, name, p.path, p.msg)
	}
	if len(problems) > 0 {
		return
	}
	errs = append(nameErrors(obj.GetName()), errs...)
	for _, e := range errs {
		l.fail(origin, d.lineOf(e.Field), kind, name, e.Field, e.ErrorBody())
	}
	if len(errs) > 0 {
		return
	}
	c := candidate{kind: Kind(kind), obj: obj, origin: origin, nameLine: d.lineOf("metadata.name")}
	switch o := obj.(type) {
	case *daprv1alpha1.Component:
		c.scopes, c.byNamespace = o.Scopes, true
	case *daprv2alpha1.Subscription:
		c.scopes = o.Scopes
	case *daprv1alpha1.Resiliency:
		c.scopes = o.Scopes
	case *daprv1alpha1.HTTPEndpoint:
		c.scopes, c.byNamespace = o.Scopes, true
	}
	l.candidates = append(l.candidates, c)
}

// nameErrors checks metadata.name as Dapr's loader does: present, and usable as a URL
// path segment (/v1.0/state/<name>). Dapr accepts names Kubernetes would not, such as
// upper case, so self-hosted manifests are not held to DNS rules.
func nameErrors(name string) field.ErrorList {
	p := field.NewPath("metadata", "name")
	if name == "" {
		return field.ErrorList{field.Required(p, "every resource needs a name")}
	}
	if msgs := content.IsPathSegmentName(name); len(msgs) > 0 {
		return field.ErrorList{field.Invalid(p, name, strings.Join(msgs, "; "))}
	}
	return nil
}

// componentErrors adds to the webhook's checks the one a missing field would otherwise
// report obscurely. spec.version is not required: Dapr's registries read an empty
// version as v1, and self-hosted manifests rely on it.
func componentErrors(c *daprv1alpha1.Component) field.ErrorList {
	var errs field.ErrorList
	if c.Spec.Type == "" {
		errs = append(errs, field.Required(field.NewPath("spec", "type"), "the component type, such as state.redis"))
	}
	for _, e := range checks.ComponentErrors(c) {
		if c.Spec.Type == "" && e.Field == "spec.type" {
			continue
		}
		errs = append(errs, e)
	}
	return errs
}

// finish applies the namespace and scope filters, then refuses two resources of one
// kind with one name: which of them Dapr would use depends on load order.
func (l *dirLoader) finish() {
	seen := map[string]Origin{}
	for _, c := range l.candidates {
		name := c.obj.GetName()
		if c.byNamespace && !InNamespace(c.obj.GetNamespace(), l.Namespace) {
			l.skip(c, fmt.Sprintf("in namespace %q, not the sidecar's %q", c.obj.GetNamespace(), l.Namespace))
			continue
		}
		if !InScope(c.scopes, l.AppID) {
			l.skip(c, fmt.Sprintf("scoped to %s, not to app %q", strings.Join(c.scopes, ", "), l.AppID))
			continue
		}
		key := string(c.kind) + "/" + name
		if first, dup := seen[key]; dup {
			l.fail(c.origin, c.nameLine, string(c.kind), name, "metadata.name",
				fmt.Sprintf("duplicate name: %s %q is also defined in %s", c.kind, name, first))
			continue
		}
		seen[key] = c.origin
		switch o := c.obj.(type) {
		case *daprv1alpha1.Component:
			l.set.Components = append(l.set.Components, Resource[*daprv1alpha1.Component]{Object: o, Origin: c.origin})
		case *daprv2alpha1.Subscription:
			l.set.Subscriptions = append(l.set.Subscriptions, Resource[*daprv2alpha1.Subscription]{Object: o, Origin: c.origin})
		case *daprv1alpha1.Configuration:
			l.set.Configurations = append(l.set.Configurations, Resource[*daprv1alpha1.Configuration]{Object: o, Origin: c.origin})
		case *daprv1alpha1.Resiliency:
			l.set.Resiliencies = append(l.set.Resiliencies, Resource[*daprv1alpha1.Resiliency]{Object: o, Origin: c.origin})
		case *daprv1alpha1.HTTPEndpoint:
			l.set.HTTPEndpoints = append(l.set.HTTPEndpoints, Resource[*daprv1alpha1.HTTPEndpoint]{Object: o, Origin: c.origin})
		}
	}
}

func (l *dirLoader) skip(c candidate, reason string) {
	l.set.Skipped = append(l.set.Skipped, Skipped{Origin: c.origin, Kind: string(c.kind), Name: c.obj.GetName(), Reason: reason})
	l.log.V(1).Info("Skipping a resource that is not for this sidecar", "kind", c.kind, "name", c.obj.GetName(),
		"file", c.origin.File, "reason", reason)
}

// Component returns the loaded Component of that name.
func (s *Set) Component(name string) (Resource[*daprv1alpha1.Component], bool) {
	i := slices.IndexFunc(s.Components, func(r Resource[*daprv1alpha1.Component]) bool { return r.Object.Name == name })
	if i < 0 {
		return Resource[*daprv1alpha1.Component]{}, false
	}
	return s.Components[i], true
}
