package main

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
)

// pluginName is the binary's name as a kubectl plugin: installed as
// kubectl-shard on PATH, "kubectl shard locate 42" runs it with the
// arguments "locate 42".
const pluginName = "kubectl-shard"

// asPlugin handles a run as kubectl-shard: the subcommands only (a plugin
// never starts a proxy). handled is false when the arguments name a
// subcommand, which cli then runs as usual.
func asPlugin(argv0 string, args []string, stdout, stderr io.Writer) (code int, handled bool) {
	if strings.TrimSuffix(filepath.Base(argv0), ".exe") != pluginName {
		return 0, false
	}
	if len(args) > 0 {
		if _, ok := subcommands[args[0]]; ok {
			return 0, false
		}
	}
	var names []string
	for name := range subcommands {
		names = append(names, name)
	}
	slices.Sort(names)
	usage := fmt.Sprintf("Usage: kubectl shard COMMAND [flags] [--admin kube://NAMESPACE/SERVICE[:PORT]]\n\nCommands: %s\n"+
		"Example: kubectl shard locate 42 --admin kube://shard-demo/shard-proxy\n"+
		"Flags of a command: kubectl shard COMMAND --help\n", strings.Join(names, ", "))
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprint(stdout, usage)
		return 0, true
	}
	if len(args) > 0 {
		fmt.Fprintf(stderr, "kubectl shard: unknown command %q\n", args[0])
	}
	fmt.Fprint(stderr, usage)
	return 2, true
}
