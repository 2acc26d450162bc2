package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/shard-proxy/shard-proxy/internal/admin"
)

const explainUsage = "shard-proxy explain [-X METHOD] [-H 'Name: value']... [-d BODY|@FILE|-] PATH [--admin URL] [-o json]"

// explainFlags adds -X, -H and -d, spelled as curl spells them.
func explainFlags(fs *flag.FlagSet, o *clientOptions) {
	fs.StringVar(&o.method, "X", "GET", "request method")
	fs.Func("H", "a request header `Name: value` (repeat for more)", func(s string) error {
		name, value, ok := strings.Cut(s, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return errors.New("want 'Name: value'")
		}
		o.headers = append(o.headers, [2]string{strings.TrimSpace(name), strings.TrimSpace(value)})
		return nil
	})
	fs.StringVar(&o.data, "d", "", "request body: @FILE, - for standard input, or the text itself")
}

// cmdExplain asks the admin plane how the data port would route a request
// (POST /explain): the proxy's own key rules and routing step decide.
// Exit 0 when the request would go to a shard, 1 when the data port would
// refuse it (the refusal is printed), 2 for bad arguments.
func cmdExplain(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return clientMain("explain", explainUsage, 1, explainFlags, args, getenv, stdout, stderr,
		func(c *adminClient, o *clientOptions, pos []string) (int, error) {
			doc, err := explainDoc(o, pos[0])
			if err != nil {
				return 2, err
			}
			status, body, err := c.do("POST", "/explain", strings.NewReader(string(doc)))
			if err != nil {
				return 1, err
			}
			if o.output == "json" && (status == http.StatusOK || isDataPortAnswer(body)) {
				_, err = stdout.Write(body)
				return exitFor(errIfNot200(status)), err
			}
			if status != http.StatusOK {
				return 1, refusal(status, body)
			}
			var a admin.ExplainAnswer
			if err := json.Unmarshal(body, &a); err != nil {
				return 1, fmt.Errorf("reading answer: %w", err)
			}
			return 0, printExplain(stdout, a)
		})
}

// explainDoc builds the /explain document from the flags and PATH.
func explainDoc(o *clientOptions, path string) ([]byte, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("PATH %q must start with / (the request-target with its query)", path)
	}
	body, err := readData(o.data)
	if err != nil {
		return nil, err
	}
	in := admin.ExplainRequest{Method: strings.ToUpper(o.method), Path: path, Body: string(body)}
	if len(o.headers) > 0 {
		in.Headers = map[string][]string{}
		for _, h := range o.headers {
			in.Headers[h[0]] = append(in.Headers[h[0]], h[1])
		}
	}
	return json.Marshal(in)
}

// isDataPortAnswer tells the data port's own refusal (an error with a
// rule, tried, shard or limit, or a status the data port gives) from an
// admin error such as 401; only the former is printed as JSON.
func isDataPortAnswer(body []byte) bool {
	var e map[string]any
	if json.Unmarshal(body, &e) != nil {
		return false
	}
	msg, _ := e["error"].(string)
	return msg != "" && !strings.HasPrefix(msg, "explain: ") && !strings.Contains(msg, "token")
}

func errIfNot200(status int) error {
	if status != http.StatusOK {
		return fmt.Errorf("status %d", status)
	}
	return nil
}

// refusal is the line printed for a request the data port would refuse.
func refusal(status int, body []byte) error {
	var e struct {
		Error string   `json:"error"`
		Rule  string   `json:"rule"`
		Tried []string `json:"tried"`
		Shard string   `json:"shard"`
		Limit int      `json:"limit"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == "" || strings.HasPrefix(e.Error, "explain: ") {
		return apiError(status, body)
	}
	var more []string
	if e.Rule != "" {
		more = append(more, "rule "+e.Rule)
	}
	if len(e.Tried) > 0 {
		more = append(more, "tried "+strings.Join(e.Tried, ","))
	}
	if e.Shard != "" {
		more = append(more, "shard "+e.Shard)
	}
	if e.Limit > 0 {
		more = append(more, fmt.Sprintf("limit %d", e.Limit))
	}
	msg := fmt.Sprintf("the data port would answer %d: %s", status, e.Error)
	if len(more) > 0 {
		msg += " (" + strings.Join(more, ", ") + ")"
	}
	return errors.New(msg)
}

func printExplain(w io.Writer, a admin.ExplainAnswer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "rule\t%s\n", a.Rule)
	if len(a.Tried) > 0 {
		fmt.Fprintf(tw, "tried before\t%s\n", strings.Join(a.Tried, ", "))
	}
	fmt.Fprintf(tw, "key\t%q\n", a.Key)
	fmt.Fprintf(tw, "hash\t%s (xxhash64)\n", a.Hash)
	fmt.Fprintf(tw, "ring\t%s, %d replicas, fingerprint %s\n", a.Ring, a.Replicas, a.Fingerprint)
	fmt.Fprintf(tw, "owner\t%s (ordinal %d) at %s\n", a.Shard, a.Ordinal, orDash(a.Address))
	state := "ready"
	if !a.Ready {
		state = "not ready: held up to --owner-wait, then 503 shard not ready"
	}
	fmt.Fprintf(tw, "state\t%s\n", state)
	if a.Previous != "" {
		fmt.Fprintf(tw, "previous\t%s at %s (sent as X-Shard-Previous)\n", a.Previous, orDash(a.PreviousAddress))
	}
	return tw.Flush()
}
