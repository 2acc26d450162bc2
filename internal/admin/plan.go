package admin

import (
	"context"
	"math"
	"net/http"
	"strconv"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/table"
	"github.com/shard-proxy/shard-proxy/ring"
)

// MaxPlanReplicas bounds the M of /plan and /locate?replicas=M. A consistent
// ring of 4096 shards takes seconds to build; far beyond that an admin
// request could tie up the admin plane for minutes.
const MaxPlanReplicas = 4096

// errBadReplicas is the one answer to a replicas parameter that is not a
// whole number in [1, MaxPlanReplicas].
var errBadReplicas = errorBody{Error: "replicas: want a whole number from 1 to " + strconv.Itoa(MaxPlanReplicas)}

// PlanMove is one line of /plan: the share of the key space that shard From
// hands to shard To.
type PlanMove struct {
	From     string  `json:"from"`
	To       string  `json:"to"`
	Fraction float64 `json:"fraction"`
}

// PlanAnswer is the body of /plan: what moving today's ring from N (From) to
// M (To) shards does. Fractions are shares of the key space rounded to 4
// decimals; Moves lists, by from then to ordinal, every move that rounds to
// a non-zero fraction, and Unlisted sums up the ones that do not (a modulus
// ring of hundreds of shards moves small slices between almost every pair).
// MovedFraction is the unrounded total of all of them, rounded.
type PlanAnswer struct {
	Ring       string `json:"ring"`
	Partitions int    `json:"partitions,omitempty"`
	From       int    `json:"from"`
	To         int    `json:"to"`
	// Method is "exact" (consistent: the partition tables compared) or
	// "sample" (SampleKeys keys, the same ones on every call and replica).
	Method        string        `json:"method"`
	SampleKeys    int           `json:"sample_keys,omitempty"`
	MovedFraction float64       `json:"moved_fraction"`
	Moves         []PlanMove    `json:"moves"`
	Unlisted      *PlanUnlisted `json:"unlisted,omitempty"`
}

// PlanUnlisted counts the moves of /plan too small to show at 4 decimals.
type PlanUnlisted struct {
	Moves    int     `json:"moves"`
	Fraction float64 `json:"fraction"`
}

// PlannedOwner is the owner of a key under the planned ring, in /locate.
type PlannedOwner struct {
	Ordinal int    `json:"ordinal"`
	Shard   string `json:"shard"`
}

// planner builds planned rings one at a time and keeps the last one, so a
// script that locates many keys under the same M pays for one build, and
// concurrent requests for big consistent rings cannot pile up. It is held
// only by admin requests, never by the data plane.
type planner struct {
	turn chan struct{} // a token: whoever holds it builds or reads last
	last *table.Planned
}

func newPlanner() *planner { return &planner{turn: make(chan struct{}, 1)} }

// plan returns t's ring resized to m shards, built or kept.
func (p *planner) plan(ctx context.Context, t *table.Table, m int) (*table.Planned, error) {
	select {
	case p.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-p.turn }()
	if p.last.For(t, m) {
		return p.last, nil
	}
	pl, err := t.Plan(m)
	if err != nil {
		return nil, err
	}
	p.last = pl
	return pl, nil
}

// parseReplicas reads a whole number in [1, MaxPlanReplicas]; only ASCII
// digits, so "+4", "-1", "4.0" and "" are refused rather than guessed at.
func parseReplicas(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	m := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		m = m*10 + int(c-'0')
	}
	return m, m >= 1 && m <= MaxPlanReplicas
}

func (s *Server) plan(w http.ResponseWriter, r *http.Request) {
	m, ok := parseReplicas(r.URL.Query().Get("replicas"))
	if !ok {
		writeJSON(w, http.StatusBadRequest, errBadReplicas)
		return
	}
	t := s.cfg.Tables.Table()
	if t == nil || t.Ring.Len() == 0 {
		answer.For(answer.ErrNoShards, "").Write(w)
		return
	}
	pl, err := s.planner.plan(r.Context(), t, m)
	if err != nil {
		writeJSON(w, planErrorStatus(r), errorBody{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, planAnswer(t, pl, pl.Diff()))
}

// planErrorStatus is 503 when the caller left while waiting its turn, and
// 500 when a ring that the table's own configuration built for N cannot be
// built for M, which the consistent ring's load bound should rule out.
func planErrorStatus(r *http.Request) int {
	if r.Context().Err() != nil {
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func planAnswer(t *table.Table, pl *table.Planned, d ring.Diff) PlanAnswer {
	a := PlanAnswer{
		Ring:          string(t.Config.Algorithm),
		Partitions:    t.Config.Partitions,
		From:          t.Ring.Len(),
		To:            pl.Ring.Len(),
		Method:        "exact",
		SampleKeys:    d.Sampled,
		MovedFraction: round4(d.Moved),
		Moves:         []PlanMove{},
	}
	if !d.Exact {
		a.Method = "sample"
	}
	var unlisted PlanUnlisted
	for _, mv := range d.Moves {
		f := round4(mv.Fraction)
		if f == 0 {
			unlisted.Moves++
			unlisted.Fraction += mv.Fraction
			continue
		}
		a.Moves = append(a.Moves, PlanMove{From: t.Shards[mv.From].Name, To: pl.Names[mv.To], Fraction: f})
	}
	if unlisted.Moves > 0 {
		unlisted.Fraction = round4(unlisted.Fraction)
		a.Unlisted = &unlisted
	}
	return a
}

func round4(f float64) float64 { return math.Round(f*1e4) / 1e4 }

// planned answers the planned part of /locate?key=K&replicas=M; on
// failure it has written the error.
func (s *Server) planned(w http.ResponseWriter, r *http.Request, t *table.Table, m int, key []byte) (*PlannedOwner, bool) {
	pl, err := s.planner.plan(r.Context(), t, m)
	if err != nil {
		writeJSON(w, planErrorStatus(r), errorBody{Error: err.Error()})
		return nil, false
	}
	ordinal, name := pl.Owner(key)
	return &PlannedOwner{Ordinal: ordinal, Shard: name}, true
}
