// Package benchline is the result line the bench load tools print and their
// report subcommands read back,
//
//	BENCH system=haproxy test=download bytes=67108864 note="did not start"
//
// ordered key=value pairs, values that may hold spaces quoted in Go syntax,
// and the /proc readers the tools measure a proxy with.
package benchline

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Line is one output line: key=value pairs in the order first set.
type Line struct {
	keys []string
	vals map[string]string
}

// Set puts v on the line under k, in place of an earlier value; a key keeps
// the place it was first set at. Floats have three decimals; nil is an
// empty value, which is left off the line; anything else is as fmt.Sprint
// writes it.
func (l *Line) Set(k string, v any) {
	var s string
	switch v := v.(type) {
	case nil:
	case float64:
		s = strconv.FormatFloat(v, 'f', 3, 64)
	default:
		s = fmt.Sprint(v)
	}
	if l.vals == nil {
		l.vals = map[string]string{}
	}
	if _, ok := l.vals[k]; !ok {
		l.keys = append(l.keys, k)
	}
	l.vals[k] = s
}

// String is the line, "BENCH k=v k=\"quoted v\" ...", without a newline.
func (l *Line) String() string {
	var b strings.Builder
	b.WriteString("BENCH")
	for _, k := range l.keys {
		v := l.vals[k]
		if v == "" {
			continue
		}
		if strings.ContainsAny(v, " \t\"=\\") || !strconv.IsPrint(rune(v[0])) {
			v = strconv.Quote(v)
		}
		fmt.Fprintf(&b, " %s=%s", k, v)
	}
	return b.String()
}

// Rec is one parsed line.
type Rec map[string]string

// Num is the value of k as a number; false if it is none.
func (r Rec) Num(k string) (float64, bool) {
	v, err := strconv.ParseFloat(r[k], 64)
	return v, err == nil
}

// F is the value of k as a number, 0 if it is none.
func (r Rec) F(k string) float64 {
	v, _ := r.Num(k)
	return v
}

// Int is the value of k as a whole number, 0 if it is none.
func (r Rec) Int(k string) int {
	n, _ := strconv.Atoi(r[k])
	return n
}

// Failed: the line has a note, saying why there is no result (the system
// did not start, failed its sanity check, the load tool gave up).
func (r Rec) Failed() bool { return r["note"] != "" }

// Parse reads the BENCH lines of rd; other lines are ignored. Every line
// must have a value for each of the required keys.
func Parse(rd io.Reader, required ...string) ([]Rec, error) {
	var out []Rec
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "BENCH ")
		if !ok {
			continue
		}
		r, err := parseFields(rest)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		if slices.ContainsFunc(required, func(k string) bool { return r[k] == "" }) {
			return nil, fmt.Errorf("line %d: no %s=", line, strings.Join(required, "= or "))
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

// parseFields reads `k=v k="quoted v" ...`.
func parseFields(rest string) (Rec, error) {
	r := Rec{}
	for rest = strings.TrimSpace(rest); rest != ""; rest = strings.TrimSpace(rest) {
		k, v, ok := strings.Cut(rest, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("want key=value at %q", rest)
		}
		rest = v
		if strings.HasPrefix(v, `"`) {
			q, err := strconv.QuotedPrefix(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", k, err)
			}
			rest = v[len(q):]
			v, _ = strconv.Unquote(q)
		} else if i := strings.IndexAny(v, " \t"); i >= 0 {
			v, rest = v[:i], v[i:]
		} else {
			rest = ""
		}
		r[k] = v
	}
	return r, nil
}

// Median of v, 0 of none; v is left as it is.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Report is a load tool's "report -in FILE" subcommand: it reads the BENCH
// lines of FILE, each with the required keys, and writes what markdown makes
// of them to stdout.
func Report(args []string, required []string, markdown func([]Rec) string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	in := fs.String("in", "", "BENCH lines, as run.sh collects them")
	fs.Parse(args)
	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer f.Close()
	recs, err := Parse(f, required...)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return fmt.Errorf("%s has no BENCH lines", *in)
	}
	_, err = io.WriteString(os.Stdout, markdown(recs))
	return err
}
