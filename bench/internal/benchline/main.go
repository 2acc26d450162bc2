package benchline

import (
	"fmt"
	"os"
)

// Main runs the subcommand of a bench tool named in os.Args[1] with the
// rest of the arguments, and exits 2 without one (printing usage, the
// subcommands as "a|b|c") or 1 when it fails.
func Main(tool, usage string, cmds map[string]func([]string) error) {
	if len(os.Args) < 2 {
		fmt.Fprintf(os.Stderr, "usage: %s %s [flags]\n", tool, usage)
		os.Exit(2)
	}
	cmd, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "%s: unknown subcommand %q\n", tool, os.Args[1])
		os.Exit(2)
	}
	if err := cmd(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "%s %s: %v\n", tool, os.Args[1], err)
		os.Exit(1)
	}
}
