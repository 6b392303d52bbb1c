package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/flowlens/flowlens/internal/filter"
	"github.com/flowlens/flowlens/internal/flow"
)

func newObserveCmd() *cobra.Command {
	var (
		serverAddr string
		follow     bool
		last       int
		output     string
	)
	filters := map[string]*[]string{}
	cmd := &cobra.Command{
		Use:   "observe",
		Short: "Print flows from a running flowlens, like hubble observe",
		Example: `  flowlens observe --last 20
  flowlens observe --follow --protocol tcp --verdict refused,timeout
  flowlens observe -o json --to-port 53`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := newPrinter(output, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			q := url.Values{}
			for name, vals := range filters {
				if len(*vals) > 0 {
					q[name] = *vals
				}
			}
			// Validate here for a clear error before any request.
			if _, err := filter.Parse(q); err != nil {
				return err
			}
			if follow {
				q.Set("follow", "1")
			}
			if last >= 0 && (!follow || cmd.Flags().Changed("last")) {
				q.Set("last", strconv.Itoa(last))
			}
			return observe(cmd, "http://"+serverAddr+"/api/v1/flows?"+q.Encode(), p)
		},
	}
	cmd.Flags().StringVar(&serverAddr, "server", DefaultListen, "address of flowlens' API")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new flows")
	cmd.Flags().IntVar(&last, "last", 20, "print the last N matching flows (-1: all held)")
	cmd.Flags().StringVarP(&output, "output", "o", "compact", "compact, json or table")
	for _, p := range filter.Params {
		filters[p.Name] = cmd.Flags().StringSlice(p.Name, nil, p.Usage)
	}
	return cmd
}

func observe(cmd *cobra.Command, u string, p printer) error {
	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("ask flowlens: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("flowlens answered %s: %s", resp.Status, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r flow.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("decode flow: %w", err)
		}
		if err := p.print(&r, sc.Bytes()); err != nil {
			return err
		}
	}
	if err := p.flush(); err != nil {
		return err
	}
	if err := sc.Err(); err != nil && cmd.Context().Err() == nil {
		return fmt.Errorf("read flows: %w", err)
	}
	return nil
}
