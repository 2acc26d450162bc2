// Command shard-proxy is a sharding reverse proxy for Kubernetes
// StatefulSets: it routes each request to the shard that owns its key, and
// broadcasts admin requests to every shard. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"
)

func main() {
	// A handler that stays installed until the process exits: a second
	// SIGTERM during shutdown (which --shutdown-timeout bounds) is absorbed
	// instead of killing the process on its way out after cli has returned.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGTERM, os.Interrupt)
	if code, ok := asPlugin(os.Args[0], os.Args[1:], os.Stdout, os.Stderr); ok {
		os.Exit(code)
	}
	os.Exit(cli(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, routeLibraryLogs))
}

// routeLibraryLogs points the process-wide logger of client-go (klog) at
// ours. It sets global state, so only main passes it to cli.
func routeLibraryLogs(log *slog.Logger) {
	klog.SetSlogLogger(log.With("component", "client-go"))
}

// cli runs shard-proxy with args and returns the exit status. onLogger, if
// set, receives the proxy's logger before anything runs.
func cli(args []string, getenv func(string) string, stdout, stderr io.Writer, onLogger func(*slog.Logger)) int {
	if len(args) > 0 {
		if sub, ok := subcommands[args[0]]; ok {
			return sub(args[1:], getenv, stdout, stderr)
		}
	}
	var o options
	fs := newFlagSet(&o)
	from, err := parseFlags(fs, args, getenv)
	o.from = from
	o.record.getenv = getenv
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout, fs)
			return 0
		}
		fmt.Fprintf(stderr, "shard-proxy: %v\n", err)
		return 2
	}
	if err := o.validate(); err != nil {
		fmt.Fprintf(stderr, "shard-proxy: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, &o, stderr, onLogger); err != nil {
		fmt.Fprintf(stderr, "shard-proxy: %v\n", err)
		return 1
	}
	return 0
}
