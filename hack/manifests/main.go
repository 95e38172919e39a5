// Command manifests renders the kustomize trees under config/ and generates the OLM
// bundle, with the kustomize Go API, so that neither needs kubectl:
//
//	go run ./hack/manifests render [--image IMG] config/default > dist/install.yaml
//	go run ./hack/manifests bundle [--version X.Y.Z] [--image IMG] [--channels alpha] [--check|--print-version]
//
// The Makefile's build-installer, deploy and bundle targets call it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/outrigger-dev/outrigger/internal/bundle"
	"github.com/outrigger-dev/outrigger/internal/manifests"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "manifests:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: manifests render|bundle [flags]")
	}
	switch args[0] {
	case "render":
		return render(args[1:])
	case "bundle":
		return generateBundle(args[1:])
	default:
		return fmt.Errorf("unknown command %q: use render or bundle", args[0])
	}
}

func render(args []string) error {
	fs := flag.NewFlagSet("render", flag.ContinueOnError)
	image := fs.String("image", "", "image that replaces "+manifests.ImagePlaceholder+" (the operator's and the sidecar's)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: manifests render [--image IMG] DIR")
	}
	out, err := manifests.Render(fs.Arg(0))
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(manifests.SetImage(out, *image))
	return err
}

func generateBundle(args []string) error {
	fs := flag.NewFlagSet("bundle", flag.ContinueOnError)
	version := fs.String("version", "", "the operator's semantic version (default: the committed CSV's, else "+bundle.DefaultVersion+")")
	image := fs.String("image", "", "the operator's image (default: "+bundle.ImageRepository+":v<version>)")
	channels := fs.String("channels", bundle.DefaultChannel, "comma-separated channels")
	defaultChannel := fs.String("default-channel", "", "default channel (default: the first channel)")
	printVersion := fs.Bool("print-version", false, "print the committed bundle's version and exit")
	check := fs.Bool("check", false, "write nothing; fail if the committed bundle differs from the generated one")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := manifests.RepoRoot()
	if err != nil {
		return err
	}
	if *version == "" || *printVersion {
		if *version, err = bundle.CommittedVersion(root); err != nil {
			return err
		}
	}
	if *printVersion {
		fmt.Println(*version)
		return nil
	}
	files, err := bundle.Generate(bundle.Options{
		Root: root, Version: *version, Image: *image,
		Channels: strings.Split(*channels, ","), DefaultChannel: *defaultChannel,
	})
	if err != nil {
		return err
	}
	if *check {
		if diff := bundle.Diff(root, files); len(diff) > 0 {
			return fmt.Errorf("bundle/ is stale; run make bundle and commit:\n  %s", strings.Join(diff, "\n  "))
		}
		return nil
	}
	if err := bundle.Write(root, files); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "Wrote the bundle of %s %s (%d files)\n", bundle.DefaultPackage, strings.TrimPrefix(*version, "v"), len(files))
	return nil
}
