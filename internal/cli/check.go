package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/flowlens/flowlens/internal/cgroup"
	"github.com/flowlens/flowlens/internal/datapath"
)

func newCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Print which kernel features this host offers and which flowlens uses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "FEATURE\tAVAILABLE\tFLOWLENS USES IT FOR\tDETAIL")
			mount, _ := cgroup.ReadMount()
			for _, f := range datapath.Probe(mount.Dir) {
				avail := "no"
				if f.Available {
					avail = "yes"
				}
				used := f.UsedFor
				if used == "" {
					used = "(not used)"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", f.Name, avail, used, f.Detail)
			}
			return w.Flush()
		},
	}
}
