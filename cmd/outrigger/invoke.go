package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outrigger-dev/outrigger/sidecar/nameresolution/selfhosted"
)

func newInvokeCommand() *cobra.Command {
	var (
		appID, method, verb, data, dataFile string
		timeout                             time.Duration
	)
	cmd := &cobra.Command{
		Use:   "invoke --app-id ID --method METHOD [--verb POST] [--data DATA | --data-file FILE]",
		Short: "Call a method of a running app through its sidecar",
		Long: `invoke finds the app in the self-hosted registry and calls the method through the
app's own sidecar, as another app would:

  <verb> http://127.0.0.1:<its HTTP port>/v1.0/invoke/<app id>/method/<method>

The method may carry a path and a query string ("orders/7?verbose=1"). A body, from
--data or --data-file, is sent as application/json. The response body is printed on
standard output. A status other than 2xx is an error: invoke prints the status and the
body and exits with code 1.`,
		Example: `  outrigger invoke --app-id nodeapp --method neworder --data '{"data":{"orderId":42}}'
  outrigger invoke --app-id nodeapp --method neworder --data-file sample.json
  outrigger invoke --app-id nodeapp --method order --verb GET`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if appID == "" || method == "" {
				return errors.New("--app-id and --method are required")
			}
			body, err := requestBody(data, dataFile)
			if err != nil {
				return err
			}
			e, err := findApp(appID)
			if err != nil {
				return err
			}
			url := fmt.Sprintf("http://127.0.0.1:%d/v1.0/invoke/%s/method/%s", e.HTTPPort, neturl.PathEscape(appID), strings.TrimPrefix(method, "/"))
			status, respBody, err := callSidecar(cmd.Context(), timeout, strings.ToUpper(verb), url, body, "application/json")
			if err != nil {
				return fmt.Errorf("invoke %s on %s: %w", method, appID, err)
			}
			if status < 200 || status > 299 {
				return fmt.Errorf("invoke %s on %s: HTTP %d %s: %s", method, appID, status, http.StatusText(status), strings.TrimSpace(string(respBody)))
			}
			if err := printBody(cmd.OutOrStdout(), respBody); err != nil {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "App invoked successfully")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&appID, "app-id", "a", "", "the id of the app to call (required)")
	f.StringVarP(&method, "method", "m", "", "the method to call, with an optional path and query string (required)")
	f.StringVarP(&verb, "verb", "v", http.MethodPost, "the HTTP method")
	f.StringVarP(&data, "data", "d", "", "the request body")
	f.StringVarP(&dataFile, "data-file", "f", "", "a file whose content is the request body")
	f.DurationVar(&timeout, "timeout", time.Minute, "how long the call may take")
	cmd.MarkFlagsMutuallyExclusive("data", "data-file")
	return cmd
}

// findApp is the registry entry of a running app.
func findApp(appID string) (selfhosted.Entry, error) {
	dir, err := selfhosted.Dir()
	if err != nil {
		return selfhosted.Entry{}, err
	}
	e, err := selfhosted.Lookup(dir, appID)
	if errors.Is(err, os.ErrNotExist) {
		return e, fmt.Errorf("no app with id %q is running: start it with `outrigger run --app-id %s`", appID, appID)
	}
	return e, err
}

// requestBody is --data, or the content of --data-file.
func requestBody(data, dataFile string) ([]byte, error) {
	if dataFile == "" {
		return []byte(data), nil
	}
	b, err := os.ReadFile(dataFile)
	if err != nil {
		return nil, fmt.Errorf("--data-file: %w", err)
	}
	return b, nil
}

// callSidecar makes one call to a sidecar's HTTP API and returns its status and body.
func callSidecar(ctx context.Context, timeout time.Duration, method, url string, body []byte, contentType string) (int, []byte, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader = http.NoBody
	if len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if len(body) > 0 && contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("read the response: %w", err)
	}
	return resp.StatusCode, respBody, nil
}

// printBody writes a response body, ending it with a newline.
func printBody(w io.Writer, body []byte) error {
	if len(body) == 0 {
		return nil
	}
	if _, err := w.Write(body); err != nil {
		return err
	}
	if body[len(body)-1] != '\n' {
		_, err := io.WriteString(w, "\n")
		return err
	}
	return nil
}
