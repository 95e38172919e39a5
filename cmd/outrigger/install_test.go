package main

import (
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/outrigger-dev/outrigger/internal/manifests"
)

// The install paths (config/default and its overlays, which dist/install.yaml and the
// OLM bundle are built from) run `outrigger operator` with the args of the manager
// container. Those args must be flags this binary's operator takes, and they must agree
// with the names and ports the same tree gives the Service, the webhook configurations
// and the volumes. The injector settings among them must be ones `outrigger dev` (the
// demo's operator, which wires the same controllers and webhooks against the local
// control plane) takes too, with the same meaning.
func TestInstallArgsAreOperatorFlags(t *testing.T) {
	for _, dir := range []string{"default", "certmanager", "overlays/ha", "manifests"} {
		t.Run(dir, func(t *testing.T) {
			objs, err := manifests.RenderObjects(filepath.Join("..", "..", "config", dir))
			if err != nil {
				t.Fatal(err)
			}
			dep := &appsv1.Deployment{}
			decodeObj(t, findKind(t, objs, "Deployment"), dep)
			c := dep.Spec.Template.Spec.Containers[0]
			if c.Name != "manager" || !slices.Equal(c.Command, []string{"/outrigger"}) {
				t.Fatalf("container %s runs %v, want manager running /outrigger", c.Name, c.Command)
			}

			root := newRootCommand()
			cmd, rest, err := root.Find(c.Args)
			if err != nil || cmd.Name() != "operator" {
				t.Fatalf("args %v run %q (%v), want the operator", c.Args, cmd.Name(), err)
			}
			if err := cmd.ParseFlags(rest); err != nil {
				t.Fatalf("the operator does not take args %v: %v", rest, err)
			}
			if cmd.Flags().NArg() > 0 {
				t.Errorf("stray arguments %v", cmd.Flags().Args())
			}
			flag := func(name string) string { return cmd.Flags().Lookup(name).Value.String() }

			if got := flag("sidecar-image"); got != c.Image {
				t.Errorf("--sidecar-image = %s, want the operator's image %s", got, c.Image)
			}
			if flag("leader-elect") != "true" {
				t.Error("--leader-elect is off: a second replica would run the controllers too")
			}
			probe := c.ReadinessProbe.HTTPGet.Port.IntValue()
			if port(t, flag("health-probe-bind-address")) != probe || c.LivenessProbe.HTTPGet.Port.IntValue() != probe {
				t.Errorf("--health-probe-bind-address = %s, the probes call %d", flag("health-probe-bind-address"), probe)
			}
			checkContainerPort(t, c, port(t, flag("metrics-bind-address")))
			checkContainerPort(t, c, port(t, ":"+flag("webhook-port")))

			// The Services of the tree reach those ports.
			var webhookSvc *corev1.Service
			for _, o := range objs {
				if o.GetKind() != "Service" {
					continue
				}
				s := &corev1.Service{}
				decodeObj(t, o, s)
				if strings.Contains(s.Name, "metrics") {
					if s.Spec.Ports[0].TargetPort.IntValue() != port(t, flag("metrics-bind-address")) {
						t.Errorf("Service %s targets %s, metrics are on %s", s.Name, s.Spec.Ports[0].TargetPort.String(), flag("metrics-bind-address"))
					}
				} else {
					webhookSvc = s
				}
			}
			if webhookSvc == nil || strconv.Itoa(webhookSvc.Spec.Ports[0].TargetPort.IntValue()) != flag("webhook-port") {
				t.Errorf("the webhook Service %v does not target --webhook-port %s", webhookSvc, flag("webhook-port"))
			}

			switch flag("cert-provider") {
			case certProviderSelf:
				// The self-managed CA finds its objects by the names the tree gives them.
				if webhookSvc != nil && flag("webhook-service-name") != webhookSvc.Name {
					t.Errorf("--webhook-service-name = %s, the Service is %s", flag("webhook-service-name"), webhookSvc.Name)
				}
				if got := findKind(t, objs, "MutatingWebhookConfiguration").GetName(); flag("mutating-webhook-configuration") != got {
					t.Errorf("--mutating-webhook-configuration = %s, the tree names it %s", flag("mutating-webhook-configuration"), got)
				}
				if got := findKind(t, objs, "ValidatingWebhookConfiguration").GetName(); flag("validating-webhook-configuration") != got {
					t.Errorf("--validating-webhook-configuration = %s, the tree names it %s", flag("validating-webhook-configuration"), got)
				}
				if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "POD_NAMESPACE" && e.ValueFrom != nil }) {
					t.Error("--cert-provider=self needs $POD_NAMESPACE")
				}
				fallthrough
			case certProviderCertManager:
				// cert-manager's Secret (or the self-managed CA's emptyDir) is mounted where
				// the webhook server reads; under OLM (config/manifests) OLM mounts it.
				if dir == "manifests" {
					break
				}
				if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == flag("webhook-cert-dir") }) {
					t.Errorf("nothing is mounted at --webhook-cert-dir %s", flag("webhook-cert-dir"))
				}
			default:
				t.Errorf("--cert-provider = %q", flag("cert-provider"))
			}

			dev, _, err := root.Find([]string{"dev"})
			if err != nil {
				t.Fatal(err)
			}
			cmd.Flags().Visit(func(f *pflag.Flag) {
				if d := dev.Flags().Lookup(f.Name); d != nil && isInjectorFlag(f.Name) {
					devCopy := freshDev(t)
					if err := devCopy.ParseFlags([]string{"--" + f.Name + "=" + f.Value.String()}); err != nil {
						t.Errorf("outrigger dev does not take --%s=%s: %v", f.Name, f.Value.String(), err)
					}
					if got := devCopy.Flags().Lookup(f.Name).Value.String(); got != f.Value.String() {
						t.Errorf("outrigger dev reads --%s as %s, the operator as %s", f.Name, got, f.Value.String())
					}
				}
			})
		})
	}
}

// isInjectorFlag tells the flags of injectorOptions, which `operator` and `dev` share.
func isInjectorFlag(name string) bool {
	fs := pflag.NewFlagSet("injector", pflag.ContinueOnError)
	(&injectorOptions{}).bindFlags(fs)
	return fs.Lookup(name) != nil
}

func freshDev(t *testing.T) *cobra.Command {
	t.Helper()
	dev, _, err := newRootCommand().Find([]string{"dev"})
	if err != nil {
		t.Fatal(err)
	}
	return dev
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

func checkContainerPort(t *testing.T, c corev1.Container, p int) {
	t.Helper()
	if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return int(cp.ContainerPort) == p }) {
		t.Errorf("the operator listens on %d, which the container does not declare", p)
	}
}

func findKind(t *testing.T, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind {
			return o
		}
	}
	t.Fatalf("no %s rendered", kind)
	return nil
}

func decodeObj(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	data, err := u.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
}
