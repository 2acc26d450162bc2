package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/admin"
)

// subcommands are the admin client commands, keyed by name.
var subcommands = map[string]func(args []string, getenv func(string) string, stdout, stderr io.Writer) int{
	"locate":     cmdLocate,
	"shards":     cmdShards,
	"broadcast":  cmdBroadcast,
	"broadcasts": cmdBroadcasts,
	"plan":       cmdPlan,
	"top":        cmdTop,
	"explain":    cmdExplain,
	"load":       cmdLoad,
}

// clientOptions are the flags every client subcommand takes.
type clientOptions struct {
	admin      string
	kubeconfig string // for kube:// admin URLs
	tokenFile  string
	// an https admin endpoint: the CA its certificate is verified against
	// (else the system's), and a client certificate for mTLS
	caFile, certFile, keyFile string
	output                    string
	timeout                   time.Duration
	// broadcast only
	data    string
	policy  string
	bcastTO string
	retry   string
	// locate and plan: the planned N; 0 when not given
	replicas int
	// explain only
	method  string
	headers [][2]string
}

func clientFlags(name string, o *clientOptions, extra func(*flag.FlagSet, *clientOptions)) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.admin, "admin", "http://127.0.0.1"+defaultAdminListen,
		"admin endpoint of a shard-proxy, or kube://NAMESPACE/SERVICE[:PORT] through the Kubernetes API server (env SHARD_PROXY_ADMIN)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig for kube:// admin URLs (default $KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&o.tokenFile, "admin-token-file", "", "file holding the admin token (else env SHARD_PROXY_ADMIN_TOKEN)")
	fs.StringVar(&o.caFile, "admin-ca-file", "", "with an https --admin: PEM CA bundle its certificate is verified against (env SHARD_PROXY_ADMIN_CA_FILE; default: the system's)")
	fs.StringVar(&o.certFile, "admin-cert-file", "", "with an https --admin: PEM client certificate (env SHARD_PROXY_ADMIN_CERT_FILE)")
	fs.StringVar(&o.keyFile, "admin-key-file", "", "with an https --admin: PEM key of --admin-cert-file (env SHARD_PROXY_ADMIN_KEY_FILE)")
	fs.StringVar(&o.output, "o", "table", "output: table or json")
	fs.DurationVar(&o.timeout, "request-timeout", 60*time.Second, "bound on the whole admin request")
	if extra != nil {
		extra(fs, o)
	}
	return fs
}

func broadcastFlags(fs *flag.FlagSet, o *clientOptions) {
	fs.StringVar(&o.data, "data", "", "request body: @FILE, - for standard input, or the text itself")
	fs.StringVar(&o.policy, "policy", "", "all (default), quorum or any")
	fs.StringVar(&o.bcastTO, "timeout", "", "bound per shard, e.g. 2s (default: the proxy's --broadcast-timeout; for --retry, the original's)")
	fs.StringVar(&o.retry, "retry", "", "send broadcast `ID` again to the shards that failed in it (IDs: shard-proxy broadcasts)")
}

func replicasFlag(fs *flag.FlagSet, o *clientOptions) {
	fs.Func("replicas", fmt.Sprintf("the number of shards to plan for, 1 to %d", admin.MaxPlanReplicas), func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > admin.MaxPlanReplicas {
			return fmt.Errorf("want a whole number from 1 to %d", admin.MaxPlanReplicas)
		}
		o.replicas = n
		return nil
	})
}

// parseClient parses flags that may stand before, between or after the
// positional arguments, and returns the positionals. Everything after "--"
// is positional, so a key such as -1 can be given as "locate -- -1".
func parseClient(fs *flag.FlagSet, args []string, getenv func(string) string) ([]string, error) {
	var pos, rest []string
	for i, a := range args {
		if a == "--" {
			args, rest = args[:i], args[i+1:]
			break
		}
	}
	for {
		if err := fs.Parse(args); err != nil {
			if strings.HasPrefix(err.Error(), "flag provided but not defined") {
				return nil, fmt.Errorf("%v (an argument that starts with - goes after --, e.g. locate -- -1)", err)
			}
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	pos = append(pos, rest...)
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if v := getenv("SHARD_PROXY_ADMIN"); v != "" && !set["admin"] {
		_ = fs.Set("admin", v)
	}
	for _, name := range []string{"admin-token-file", "admin-ca-file", "admin-cert-file", "admin-key-file"} {
		if v := getenv(envName(name)); v != "" && !set[name] {
			_ = fs.Set(name, v)
		}
	}
	return pos, nil
}

// adminClient talks to one admin endpoint.
type adminClient struct {
	base  string
	token string
	// tokenHeader carries the token: Authorization (as a bearer token), or
	// admin.TokenHeader through the API server's service proxy (kube://).
	tokenHeader string
	http        *http.Client
}

func newAdminClient(o *clientOptions, getenv func(string) string) (*adminClient, error) {
	if o.output != "table" && o.output != "json" {
		return nil, fmt.Errorf("-o %q: want table or json", o.output)
	}
	c := &adminClient{base: strings.TrimSuffix(o.admin, "/"), tokenHeader: "Authorization", http: &http.Client{Timeout: o.timeout}}
	if strings.HasPrefix(o.admin, kubeScheme) {
		base, hc, err := kubeAdmin(o.admin, o.kubeconfig, o.timeout, getenv)
		if err != nil {
			return nil, err
		}
		c.base, c.http, c.tokenHeader = base, hc, admin.TokenHeader
	} else if u, err := url.Parse(o.admin); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--admin %q: want a URL such as http://shard-proxy:9090, or kube://NAMESPACE/SERVICE[:PORT]", o.admin)
	} else if c.http.Transport, err = adminTransport(o, u.Scheme == "https"); err != nil {
		return nil, err
	}
	switch {
	case o.tokenFile != "":
		raw, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--admin-token-file: %w", err)
		}
		c.token = strings.TrimSpace(string(raw))
	default:
		c.token = strings.TrimSpace(getenv("SHARD_PROXY_ADMIN_TOKEN"))
	}
	return c, nil
}

// do sends a request and returns the status and body.
func (c *adminClient) do(method, path string, body io.Reader) (int, []byte, error) {
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return 0, nil, err
	}
	if c.token != "" {
		if c.tokenHeader == "Authorization" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		} else {
			req.Header.Set(c.tokenHeader, c.token)
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// apiError turns an admin error answer into a message.
func apiError(status int, body []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return fmt.Errorf("%d %s: %s", status, http.StatusText(status), e.Error)
	}
	return fmt.Errorf("%d %s: %s", status, http.StatusText(status), bytes.TrimSpace(body))
}

// clientMain runs one subcommand body with shared flag handling; fn returns
// the exit status. nargs is the number of positional arguments, or -1 when
// fn checks them itself.
func clientMain(name, usageLine string, nargs int, extra func(*flag.FlagSet, *clientOptions), args []string, getenv func(string) string, stdout, stderr io.Writer,
	fn func(c *adminClient, o *clientOptions, pos []string) (int, error)) int {
	var o clientOptions
	fs := clientFlags(name, &o, extra)
	pos, err := parseClient(fs, args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stdout, "Usage: %s\n\nFlags:\n", usageLine)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0
	}
	if err == nil && nargs >= 0 && len(pos) != nargs {
		err = fmt.Errorf("want %d argument(s): %s", nargs, usageLine)
	}
	var c *adminClient
	if err == nil {
		c, err = newAdminClient(&o, getenv)
	}
	if err != nil {
		fmt.Fprintf(stderr, "shard-proxy %s: %v\n", name, err)
		return 2
	}
	code, err := fn(c, &o, pos)
	c.http.CloseIdleConnections()
	if err != nil {
		fmt.Fprintf(stderr, "shard-proxy %s: %v\n", name, err)
	}
	return code
}

// getJSON fetches path and either copies the raw JSON to stdout (-o json)
// or decodes it into v for a table; printed reports whether it was copied.
func getJSON(c *adminClient, o *clientOptions, path string, stdout io.Writer, v any) (printed bool, err error) {
	status, body, err := c.do("GET", path, nil)
	if err != nil {
		return false, err
	}
	if status != http.StatusOK {
		return false, apiError(status, body)
	}
	if o.output == "json" {
		_, err = stdout.Write(body)
		return true, err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return false, fmt.Errorf("reading answer: %w", err)
	}
	return false, nil
}

func cmdLocate(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return clientMain("locate", "shard-proxy locate KEY [--replicas M] [--admin URL] [-o json]", 1, replicasFlag, args, getenv, stdout, stderr,
		func(c *adminClient, o *clientOptions, pos []string) (int, error) {
			path := "/locate?key=" + url.QueryEscape(pos[0])
			if o.replicas > 0 {
				path += "&replicas=" + strconv.Itoa(o.replicas)
			}
			var a admin.LocateAnswer
			if printed, err := getJSON(c, o, path, stdout, &a); printed || err != nil {
				return exitFor(err), err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			if a.Planned == nil {
				fmt.Fprintln(tw, "KEY\tORDINAL\tSHARD\tADDRESS\tREADY")
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%t\n", a.Key, a.Ordinal, a.Shard, a.Address, a.Ready)
				return 0, tw.Flush()
			}
			fmt.Fprintln(tw, "KEY\tORDINAL\tSHARD\tADDRESS\tREADY\tPLANNED")
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%t\t%s\n", a.Key, a.Ordinal, a.Shard, a.Address, a.Ready, a.Planned.Shard)
			return 0, tw.Flush()
		})
}

func cmdShards(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return clientMain("shards", "shard-proxy shards [--admin URL] [-o json]", 0, nil, args, getenv, stdout, stderr,
		func(c *adminClient, o *clientOptions, _ []string) (int, error) {
			var a admin.ShardsAnswer
			if printed, err := getJSON(c, o, "/shards", stdout, &a); printed || err != nil {
				return exitFor(err), err
			}
			fmt.Fprintf(stdout, "ring %s, %d replicas, %d ready, fingerprint %s\n\n", a.Ring, a.Replicas, a.Ready, a.Fingerprint)
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ORDINAL\tSHARD\tADDRESS\tREADY")
			for _, s := range a.Shards {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%t\n", s.Ordinal, s.Name, orDash(s.Address), s.Ready)
			}
			return 0, tw.Flush()
		})
}

func cmdPlan(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return clientMain("plan", "shard-proxy plan --replicas M [--admin URL] [-o json]", 0, replicasFlag, args, getenv, stdout, stderr,
		func(c *adminClient, o *clientOptions, _ []string) (int, error) {
			if o.replicas == 0 {
				return 2, fmt.Errorf("--replicas M is required: the number of shards to plan for, 1 to %d", admin.MaxPlanReplicas)
			}
			var a admin.PlanAnswer
			if printed, err := getJSON(c, o, "/plan?replicas="+strconv.Itoa(o.replicas), stdout, &a); printed || err != nil {
				return exitFor(err), err
			}
			return 0, printPlan(stdout, a)
		})
}

// printPlan writes a plan as a headline and a table of moves with their total.
func printPlan(w io.Writer, a admin.PlanAnswer) error {
	how := fmt.Sprintf("estimated from %d sample keys", a.SampleKeys)
	if a.Method == "exact" {
		how = fmt.Sprintf("exact, %d partitions compared", a.Partitions)
	}
	fmt.Fprintf(w, "ring %s, %d → %d shards: %.2f%% of the key space moves (%s)\n",
		a.Ring, a.From, a.To, 100*a.MovedFraction, how)
	if a.MovedFraction == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM\tTO\tFRACTION")
	for _, mv := range a.Moves {
		fmt.Fprintf(tw, "%s\t%s\t%.4f\n", mv.From, mv.To, mv.Fraction)
	}
	if u := a.Unlisted; u != nil {
		fmt.Fprintf(tw, "(%d smaller moves)\t\t%.4f\n", u.Moves, u.Fraction)
	}
	fmt.Fprintf(tw, "total\t\t%.4f\n", a.MovedFraction)
	return tw.Flush()
}

func exitFor(err error) int {
	if err != nil {
		return 1
	}
	return 0
}

func cmdBroadcast(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	const send = "shard-proxy broadcast METHOD PATH [--data @FILE|-|TEXT] [--policy all|quorum|any] [--timeout 2s] [--admin URL] [-o json]"
	const retry = "shard-proxy broadcast --retry ID [--timeout 2s] [--admin URL] [-o json]"
	return clientMain("broadcast", send+"\n       "+retry, -1, broadcastFlags, args, getenv, stdout, stderr,
		func(c *adminClient, o *clientOptions, pos []string) (int, error) {
			if o.retry != "" {
				if len(pos) != 0 || o.data != "" || o.policy != "" {
					return 2, errors.New("--retry takes no METHOD, PATH, --data or --policy: it sends the original request with its policy: " + retry)
				}
				return broadcast(c, o, "POST", retryURI(o), nil, stdout)
			}
			if len(pos) != 2 {
				return 2, fmt.Errorf("want 2 argument(s): %s", send)
			}
			method, path := strings.ToUpper(pos[0]), pos[1]
			if !strings.HasPrefix(path, "/") {
				return 2, fmt.Errorf("PATH %q must start with /", path)
			}
			body, err := readData(o.data)
			if err != nil {
				return 2, err
			}
			return broadcast(c, o, method, broadcastURI(path, o), body, stdout)
		})
}

// broadcastURI is the admin plane's target for a broadcast of path, with
// --policy and --timeout added to path's own query.
func broadcastURI(path string, o *clientOptions) string {
	uri := "/broadcast" + path
	extra := url.Values{}
	if o.policy != "" {
		extra.Set("policy", o.policy)
	}
	if o.bcastTO != "" {
		extra.Set("timeout", o.bcastTO)
	}
	if len(extra) == 0 {
		return uri
	}
	sep := "?"
	if strings.Contains(uri, "?") {
		sep = "&"
	}
	return uri + sep + extra.Encode()
}

// retryURI is the admin plane's target for a retry of broadcast --retry,
// with --timeout.
func retryURI(o *clientOptions) string {
	uri := "/broadcasts/" + url.PathEscape(o.retry) + "/retry"
	if o.bcastTO != "" {
		uri += "?timeout=" + url.QueryEscape(o.bcastTO)
	}
	return uri
}

// broadcast sends the broadcast and prints its report. The exit status is 1
// when the policy was not met (502) or the answer is no report.
func broadcast(c *adminClient, o *clientOptions, method, uri string, body []byte, stdout io.Writer) (int, error) {
	status, raw, err := c.do(method, uri, bytes.NewReader(body))
	if err != nil {
		return 1, err
	}
	var rep admin.BroadcastReport
	if (status != http.StatusOK && status != http.StatusBadGateway) || json.Unmarshal(raw, &rep) != nil || rep.Policy == "" {
		return 1, apiError(status, raw)
	}
	code := 0
	if status != http.StatusOK {
		code = 1
	}
	if o.output == "json" {
		_, err = stdout.Write(raw)
		return code, err
	}
	return code, printReport(stdout, rep, status == http.StatusOK)
}

func printReport(w io.Writer, rep admin.BroadcastReport, met bool) error {
	verdict := "policy met"
	if !met {
		verdict = "POLICY NOT MET"
	}
	fmt.Fprintf(w, "%s %s: %d succeeded, %d failed, policy %s: %s (%.1f ms)\n",
		rep.Method, rep.Path, rep.Succeeded, rep.Failed, rep.Policy, verdict, rep.DurationMS)
	fmt.Fprintf(w, "broadcast %s", rep.ID)
	if rep.RetryOf != "" {
		fmt.Fprintf(w, ", a retry of %s", rep.RetryOf)
	}
	switch {
	case rep.Failed > 0 && rep.Retryable:
		fmt.Fprintf(w, "; send it again to the failed shards with: shard-proxy broadcast --retry %s", rep.ID)
	case rep.Failed > 0:
		fmt.Fprintf(w, "; its request is too large for the history to keep, so it cannot be retried")
	}
	fmt.Fprint(w, "\n\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ORDINAL\tSHARD\tSTATUS\tDURATION\tRESULT")
	for _, s := range rep.Shards {
		status, result := "-", s.Error
		if s.Error == "" {
			status, result = fmt.Sprint(s.Status), oneLine(s.Body, 60)
			if s.Truncated {
				result += " (truncated)"
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%.1fms\t%s\n", s.Ordinal, s.Shard, status, s.DurationMS, result)
	}
	return tw.Flush()
}

func cmdBroadcasts(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return clientMain("broadcasts", "shard-proxy broadcasts [--admin URL] [-o json]", 0, nil, args, getenv, stdout, stderr,
		func(c *adminClient, o *clientOptions, _ []string) (int, error) {
			var a admin.BroadcastsAnswer
			if printed, err := getJSON(c, o, "/broadcasts", stdout, &a); printed || err != nil {
				return exitFor(err), err
			}
			return 0, printBroadcasts(stdout, a.Broadcasts)
		})
}

// printBroadcasts writes the recent broadcasts as a table, newest first as
// the admin plane lists them. An ID starts with the broadcast's start time
// in UTC, so the table needs no time column.
func printBroadcasts(w io.Writer, list []admin.BroadcastSummary) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no broadcasts yet")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tMETHOD\tPATH\tPOLICY\tSUCCEEDED\tFAILED\tDURATION\tRETRY OF")
	for _, b := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%.1fms\t%s\n",
			b.ID, b.Method, oneLine(b.Path, 50), b.Policy, b.Succeeded, b.Failed, b.DurationMS, orDash(b.RetryOf))
	}
	return tw.Flush()
}

// readData returns the body named by --data: @FILE, - (stdin) or the text.
func readData(data string) ([]byte, error) {
	switch {
	case data == "":
		return nil, nil
	case data == "-":
		return io.ReadAll(os.Stdin)
	case strings.HasPrefix(data, "@"):
		b, err := os.ReadFile(data[1:])
		if err != nil {
			return nil, fmt.Errorf("--data: %w", err)
		}
		return b, nil
	default:
		return []byte(data), nil
	}
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
