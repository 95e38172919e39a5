package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newPublishCommand() *cobra.Command {
	var (
		appID, pubsub, topic, data, dataFile, metadata string
		timeout                                        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "publish --publish-app-id ID --pubsub NAME --topic TOPIC [--data DATA | --data-file FILE]",
		Short: "Publish an event through a running app's sidecar",
		Long: `publish finds the app in the self-hosted registry and publishes the event through
its sidecar, as the app itself would:

  POST http://127.0.0.1:<its HTTP port>/v1.0/publish/<pubsub>/<topic>

A body that is a CloudEvent (JSON with "specversion") is sent as
application/cloudevents+json, other JSON as application/json, anything else as
text/plain. --metadata is a JSON object whose entries become metadata.<key> query
parameters (ttlInSeconds, rawPayload, ...).

The sidecar needs a pub/sub component of that name. The shared local pub/sub that
outrigger init will write as "pubsub" comes with the pub/sub work.`,
		Example: `  outrigger publish --publish-app-id orders --pubsub pubsub --topic neworder --data '{"orderId":42}'
  outrigger publish -i orders -p pubsub -t neworder -f event.json --metadata '{"ttlInSeconds":"60"}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if appID == "" || pubsub == "" || topic == "" {
				return errors.New("--publish-app-id, --pubsub and --topic are required")
			}
			body, err := requestBody(data, dataFile)
			if err != nil {
				return err
			}
			query, err := metadataQuery(metadata)
			if err != nil {
				return err
			}
			e, err := findApp(appID)
			if err != nil {
				return err
			}
			u := fmt.Sprintf("http://127.0.0.1:%d/v1.0/publish/%s/%s%s", e.HTTPPort, url.PathEscape(pubsub), url.PathEscape(topic), query)
			status, respBody, err := callSidecar(cmd.Context(), timeout, http.MethodPost, u, body, publishContentType(body))
			if err != nil {
				return fmt.Errorf("publish to %s/%s: %w", pubsub, topic, err)
			}
			if status < 200 || status > 299 {
				return fmt.Errorf("publish to %s/%s: HTTP %d %s: %s", pubsub, topic, status, http.StatusText(status), strings.TrimSpace(string(respBody)))
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Event published successfully")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&appID, "publish-app-id", "i", "", "the id of the app whose sidecar publishes (required)")
	f.StringVarP(&pubsub, "pubsub", "p", "", "the name of the pub/sub component (required)")
	f.StringVarP(&topic, "topic", "t", "", "the topic (required)")
	f.StringVarP(&data, "data", "d", "", "the event")
	f.StringVarP(&dataFile, "data-file", "f", "", "a file whose content is the event")
	f.StringVarP(&metadata, "metadata", "m", "", `metadata of the request, as a JSON object of strings ({"ttlInSeconds":"60"})`)
	f.DurationVar(&timeout, "timeout", time.Minute, "how long the call may take")
	cmd.MarkFlagsMutuallyExclusive("data", "data-file")
	return cmd
}

func publishContentType(body []byte) string {
	var v map[string]json.RawMessage
	if err := json.Unmarshal(body, &v); err == nil {
		if _, ok := v["specversion"]; ok {
			return "application/cloudevents+json"
		}
		return "application/json"
	}
	if json.Valid(body) {
		return "application/json"
	}
	return "text/plain"
}

// metadataQuery turns {"k":"v"} into ?metadata.k=v.
func metadataQuery(metadata string) (string, error) {
	if metadata == "" {
		return "", nil
	}
	var md map[string]string
	if err := json.Unmarshal([]byte(metadata), &md); err != nil {
		return "", fmt.Errorf(`--metadata: want a JSON object of strings such as {"ttlInSeconds":"60"}: %w`, err)
	}
	q := url.Values{}
	for k, v := range md {
		q.Set("metadata."+k, v)
	}
	return "?" + q.Encode(), nil
}
