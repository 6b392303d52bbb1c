// Package cli holds flowlens' commands and output printers.
package cli

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// New returns the root command.
func New() *cobra.Command {
	var level, format string
	root := &cobra.Command{
		Use:           "flowlens",
		Short:         "eBPF network topology and flow observability",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return bindEnv(cmd.Flags())
		},
	}
	root.PersistentFlags().StringVar(&level, "log-level", "info", "debug, info, warn or error")
	root.PersistentFlags().StringVar(&format, "log-format", "text", "text or json")
	logger := func() *slog.Logger {
		var l slog.Level
		if err := l.UnmarshalText([]byte(level)); err != nil {
			l = slog.LevelInfo
		}
		opts := &slog.HandlerOptions{Level: l}
		if format == "json" {
			return slog.New(slog.NewJSONHandler(os.Stderr, opts))
		}
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	root.AddCommand(newUpCmd(logger), newAgentCmd(logger), newHubCmd(logger), newObserveCmd(), newTopologyCmd(), newCheckCmd())
	return root
}

// bindEnv lets FLOWLENS_<FLAG_NAME> set any flag not given on the command
// line, so flags and environment mirror each other.
func bindEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || err != nil {
			return
		}
		name := "FLOWLENS_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s=%q: %w", name, v, serr)
			}
		}
	})
	return err
}
