package main

import "io"

// subcommands are the admin client commands, keyed by name.
var subcommands = map[string]func(args []string, getenv func(string) string, stdout, stderr io.Writer) int{}
