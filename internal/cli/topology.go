package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
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
  flowlens topology --since 10m -o json
  flowlens topology -o dot | dot -Tsvg > topology.svg
  flowlens topology -o mermaid`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := topologyQuery(level, window, since, ns, time.Now())
			if err != nil {
				return err
			}
			if _, ok := graphPrinters[output]; !ok && output != "table" && output != "json" {
				return fmt.Errorf("unknown output %q: want table, json, dot or mermaid", output)
			}
			if _, ok := graphPrinters[output]; ok && since != "" {
				return fmt.Errorf("-o %s draws a window's graph, not a diff: with --since use table or json", output)
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
			if draw, ok := graphPrinters[output]; ok {
				var g topology.Graph
				if err := json.Unmarshal(body, &g); err != nil {
					return fmt.Errorf("decode topology: %w", err)
				}
				return draw(cmd.OutOrStdout(), &g)
			}
			return printTopology(cmd.OutOrStdout(), body, q.Has("since"))
		},
	}
	client.Flags(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, json, dot (Graphviz) or mermaid")
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

// graphPrinters draw a window's graph in a language that renders it.
var graphPrinters = map[string]func(io.Writer, *topology.Graph) error{
	"dot":     printDot,
	"mermaid": printMermaid,
}

// edgeSummary is an edge's label in a drawing.
func edgeSummary(e *topology.Edge) string {
	return fmt.Sprintf("%d opened, %d failed", e.ConnectionsOpened, failures(&e.Failures))
}

// byNamespace groups a graph's nodes (sorted by id) by their Kubernetes
// namespace, namespaces sorted; nodes without one come under "".
func byNamespace(nodes []topology.Node) (namespaces []string, members map[string][]topology.Node) {
	members = map[string][]topology.Node{}
	for _, n := range nodes {
		if _, ok := members[n.Namespace]; !ok {
			namespaces = append(namespaces, n.Namespace)
		}
		members[n.Namespace] = append(members[n.Namespace], n)
	}
	slices.Sort(namespaces)
	return namespaces, members
}

// dotQuote makes s one quoted DOT id: control characters are written out
// (clean), then backslashes and quotes escaped, so no name ends the
// string or becomes a Graphviz escape such as \N.
func dotQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(clean(s)) + `"`
}

// printDot draws g for Graphviz: one cluster per namespace, nodes by id
// labelled with their names, edges labelled with connections and failures.
func printDot(w io.Writer, g *topology.Graph) error {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph flowlens {\n\tlabel=%s;\n\trankdir=LR;\n\tnode [shape=box];\n",
		dotQuote(fmt.Sprintf("%s level, %s to %s", g.Level, g.WindowStart.Format(time.RFC3339), g.WindowEnd.Format(time.RFC3339))))
	namespaces, members := byNamespace(g.Nodes)
	for _, ns := range namespaces {
		indent := "\t"
		if ns != "" {
			fmt.Fprintf(&b, "\tsubgraph %s {\n\t\tlabel=%s;\n", dotQuote("cluster_"+ns), dotQuote(ns))
			indent = "\t\t"
		}
		for _, n := range members[ns] {
			fmt.Fprintf(&b, "%s%s [label=%s];\n", indent, dotQuote(n.ID), dotQuote(n.Name))
		}
		if ns != "" {
			b.WriteString("\t}\n")
		}
	}
	for i := range g.Edges {
		e := &g.Edges[i]
		fmt.Fprintf(&b, "\t%s -> %s [label=%s];\n", dotQuote(e.Source), dotQuote(e.Destination), dotQuote(edgeSummary(e)))
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// mermaidText makes s safe inside a quoted Mermaid label: control
// characters written out, and the characters Mermaid reads as syntax or
// HTML as its entity codes.
func mermaidText(s string) string {
	return strings.NewReplacer("#", "#35;", `"`, "#quot;", "<", "#lt;", ">", "#gt;").Replace(clean(s))
}

// printMermaid draws g as a Mermaid flowchart. Mermaid ids cannot hold a
// node id's / and :, so nodes are n0, n1, ... in id order, labelled with
// their names, and namespaces are subgraphs s0, s1, ...
func printMermaid(w io.Writer, g *topology.Graph) error {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	ids := make(map[string]string, len(g.Nodes))
	for i, n := range g.Nodes {
		ids[n.ID] = fmt.Sprintf("n%d", i)
	}
	namespaces, members := byNamespace(g.Nodes)
	for i, ns := range namespaces {
		indent := "  "
		if ns != "" {
			fmt.Fprintf(&b, "  subgraph s%d[\"%s\"]\n", i, mermaidText(ns))
			indent = "    "
		}
		for _, n := range members[ns] {
			fmt.Fprintf(&b, "%s%s[\"%s\"]\n", indent, ids[n.ID], mermaidText(n.Name))
		}
		if ns != "" {
			b.WriteString("  end\n")
		}
	}
	for i := range g.Edges {
		e := &g.Edges[i]
		src, okS := ids[e.Source]
		dst, okD := ids[e.Destination]
		if !okS || !okD {
			return fmt.Errorf("topology: edge %s names a node the graph does not list", e.ID)
		}
		fmt.Fprintf(&b, "  %s -->|\"%s\"| %s\n", src, mermaidText(edgeSummary(e)), dst)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
