package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/flowlens/flowlens/internal/server"
	"github.com/flowlens/flowlens/internal/topology"
)

// maxTopology bounds the API's answer to one topology query.
const maxTopology = 64 << 20

func newTopologyCmd() *cobra.Command {
	var (
		client                           clientConfig
		output, level, window, since, ns string
	)
	client.Server = server.DefaultListen
	cmd := &cobra.Command{
		Use:   "topology",
		Short: "Print who talks to whom, how much and how well, over a window",
		Long: `topology prints the graph of a window of a running flowlens: one row per edge,
with connections opened and closed, failures, retransmits, bytes and RTT.
With --since it prints what changed between the window ending then and now:
edges and nodes that appeared or vanished, and edges whose rate of opened
connections or of failures moved by a factor of 2 or more.
Levels: pod, workload, service, namespace, node, external; on a plain host
without Kubernetes process, container, node and external say the most.`,
		Example: `  flowlens topology --level process
  flowlens topology --level workload --namespace shop --window 5m
  flowlens topology --since 10m -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := topologyQuery(level, window, since, ns, time.Now())
			if err != nil {
				return err
			}
			if output != "table" && output != "json" {
				return fmt.Errorf("unknown output %q: want table or json", output)
			}
			c, err := client.open()
			if err != nil {
				return err
			}
			body, err := c.topology(cmd.Context(), q)
			if err != nil {
				return err
			}
			if output == "json" {
				_, err = cmd.OutOrStdout().Write(body)
				return err
			}
			return printTopology(cmd.OutOrStdout(), body, q.Has("since"))
		},
	}
	client.Flags(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	cmd.Flags().StringVar(&level, "level", string(server.DefaultTopologyLevel), "pod, workload, service, namespace, node, external, process or container")
	cmd.Flags().StringVar(&window, "window", server.DefaultTopologyWindow.String(), "the window's length, from 10s to 24h, a multiple of 10s")
	cmd.Flags().StringVar(&since, "since", "", "show what changed since then: a time (RFC 3339) or how long ago (10m)")
	cmd.Flags().StringVar(&ns, "namespace", "", "only edges with an end in this Kubernetes namespace")
	return cmd
}

// topologyQuery checks the flags, for a clear error before any request,
// and makes the API's query of them. since is a time or how long before
// now.
func topologyQuery(level, window, since, ns string, now time.Time) (url.Values, error) {
	q := url.Values{}
	if _, err := topology.ParseLevel(level); err != nil {
		return nil, fmt.Errorf("--level: %w", err)
	}
	q.Set("level", level)
	if _, err := topology.ParseWindow(window); err != nil {
		return nil, fmt.Errorf("--window: %w", err)
	}
	q.Set("window", window)
	if since != "" {
		t, err := time.Parse(time.RFC3339Nano, since)
		if err != nil {
			ago, derr := time.ParseDuration(since)
			if derr != nil || ago <= 0 {
				return nil, fmt.Errorf("--since %q: want an RFC 3339 time or a positive duration such as 10m", since)
			}
			t = now.Add(-ago)
		}
		q.Set("since", t.UTC().Format(time.RFC3339Nano))
	}
	if ns != "" {
		q.Set("namespace", ns)
	}
	return q, nil
}

// topology returns the API's answer to q, checked to be a success.
func (c *apiClient) topology(ctx context.Context, q url.Values) ([]byte, error) {
	resp, err := c.get(ctx, "/api/v1/topology?"+q.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxTopology+1))
	if err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("flowlens answered %s: %s", resp.Status, clean(strings.TrimSpace(string(b[:min(len(b), 4096)]))))
	}
	if len(b) > maxTopology {
		return nil, fmt.Errorf("read topology: an answer longer than %d bytes", maxTopology)
	}
	return b, nil
}

var topologyHeader = []string{"SOURCE", "DESTINATION", "OPENED", "CLOSED", "FAILED", "RETRANS→/←", "BYTES→", "BYTES←", "RTT p50/p95/max"}

// printTopology prints a graph (or with diff, a Diff) as aligned columns,
// every name cleaned: process names are anyone's to choose.
func printTopology(w io.Writer, body []byte, diff bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(cells ...string) {
		for i := range cells {
			cells[i] = clean(cells[i])
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	edge := func(change string, e *topology.Edge) {
		cells := []string{e.Source, e.Destination, fmt.Sprint(e.ConnectionsOpened), fmt.Sprint(e.ConnectionsClosed),
			fmt.Sprint(failures(&e.Failures)), fmt.Sprintf("%d/%d", e.RetransmitsToDestination, e.RetransmitsToSource),
			fmt.Sprint(e.BytesToDestination), fmt.Sprint(e.BytesToSource), "-"}
		if e.RTTSamples > 0 {
			cells[8] = fmt.Sprintf("%d/%d/%dµs", e.RTTP50, e.RTTP95, e.RTTMax)
		}
		if diff {
			cells = append([]string{change}, cells...)
		}
		row(cells...)
	}
	if !diff {
		var g topology.Graph
		if err := json.Unmarshal(body, &g); err != nil {
			return fmt.Errorf("decode topology: %w", err)
		}
		fmt.Fprintf(w, "%s level, %s to %s: %d nodes, %d edges\n", clean(string(g.Level)),
			g.WindowStart.Local().Format(time.DateTime), g.WindowEnd.Local().Format(time.TimeOnly), len(g.Nodes), len(g.Edges))
		row(topologyHeader...)
		for i := range g.Edges {
			edge("", &g.Edges[i])
		}
		return tw.Flush()
	}
	var d topology.Diff
	if err := json.Unmarshal(body, &d); err != nil {
		return fmt.Errorf("decode topology diff: %w", err)
	}
	fmt.Fprintf(w, "%s level, %gs windows ending %s and %s: nodes +%d -%d, edges +%d -%d ~%d (by a factor of %g)\n",
		clean(string(d.Level)), d.WindowSeconds, d.Since.Local().Format(time.DateTime), d.At.Local().Format(time.DateTime),
		len(d.Nodes.Appeared), len(d.Nodes.Vanished), len(d.Edges.Appeared), len(d.Edges.Vanished), len(d.Edges.Changed), d.Factor)
	row(append([]string{"CHANGE"}, topologyHeader...)...)
	for i := range d.Edges.Appeared {
		edge("appeared", &d.Edges.Appeared[i])
	}
	for i := range d.Edges.Vanished {
		edge("vanished", &d.Edges.Vanished[i])
	}
	for i := range d.Edges.Changed {
		c := &d.Edges.Changed[i]
		edge("was", &c.Before)
		edge("now ("+strings.Join(c.Changed, ", ")+")", &c.After)
	}
	for _, n := range d.Nodes.Appeared {
		row("node appeared", n.ID)
	}
	for _, n := range d.Nodes.Vanished {
		row("node vanished", n.ID)
	}
	return tw.Flush()
}

func failures(f *topology.Failures) uint64 {
	return f.Refused + f.Timeout + f.Reset + f.Unanswered + f.Unreachable + f.Failed
}
