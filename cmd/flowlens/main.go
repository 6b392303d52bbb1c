// Command flowlens is eBPF-based network topology and flow observability.
package main

import (
	"fmt"
	"os"

	"github.com/flowlens/flowlens/internal/cli"
)

func main() {
	if err := cli.New().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "flowlens:", err)
		os.Exit(1)
	}
}
