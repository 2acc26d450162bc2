package admin

import (
	"fmt"
	"net/http"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/table"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// errShardLeft is the result of a retried shard that is no longer in the
// table.
const errShardLeft = "shard left the ring"

// broadcasts serves GET /broadcasts: the kept reports, newest first.
func (s *Server) broadcasts(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, BroadcastsAnswer{Broadcasts: s.bcast.history.list()})
}

// broadcastByID serves GET /broadcasts/<id>: one kept report.
func (s *Server) broadcastByID(w http.ResponseWriter, r *http.Request) {
	e, ok := s.bcast.history.get(r.PathValue("id"))
	if !ok {
		s.unknownBroadcast(w, r.PathValue("id"))
		return
	}
	writeJSON(w, http.StatusOK, e.report)
}

func (s *Server) unknownBroadcast(w http.ResponseWriter, id string) {
	writeJSON(w, http.StatusNotFound, errorBody{
		Error: fmt.Sprintf("no broadcast %q: the admin plane keeps the last %d (see /broadcasts)", id, s.bcast.cfg.History)})
}

// retryBroadcast serves POST /broadcasts/<id>/retry: report id's request
// sent again to the shards that failed in it, at their addresses in the
// table now, judged by the same policy over those shards. ?timeout=
// bounds each shard as for /broadcast/; absent, the original's bound
// holds.
func (s *Server) retryBroadcast(w http.ResponseWriter, r *http.Request) {
	b, id := s.bcast, r.PathValue("id")
	e, ok := b.history.get(id)
	if !ok {
		s.unknownBroadcast(w, id)
		return
	}
	timeout, err := retryTimeout(r, e.timeout)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: err.Error()})
		return
	}
	failed := failedShards(e.report)
	switch {
	case len(failed) == 0:
		writeJSON(w, http.StatusConflict, errorBody{Error: "nothing to retry"})
		return
	case e.req == nil:
		writeJSON(w, http.StatusConflict, map[string]any{
			"error": fmt.Sprintf("broadcast %s cannot be retried: its request (%d bytes of body and header) was over the %d bytes the history keeps", id, e.reqSize, HistoryRequestLimit),
			"limit": HistoryRequestLimit})
		return
	}
	t := s.cfg.Tables.Table()
	if t == nil || len(t.Shards) == 0 {
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "no shards"})
		return
	}
	j := job{retryOf: id, policy: e.report.Policy, timeout: timeout, req: e.req}
	j.targets, j.settled = retryTargets(t, failed)
	j.id, j.start = b.ids.next()
	b.run(w, r, j)
}

// retryTimeout reads ?timeout= of a retry; a retry takes no ?policy=, it
// keeps the original's.
func retryTimeout(r *http.Request, original time.Duration) (time.Duration, error) {
	q := r.URL.Query()
	if q.Has("policy") {
		return 0, fmt.Errorf("policy: a retry keeps the policy of the broadcast it repeats")
	}
	if !q.Has("timeout") {
		return original, nil
	}
	d, err := time.ParseDuration(q.Get("timeout"))
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("timeout %q: want a positive duration such as 2s or 500ms", q.Get("timeout"))
	}
	return d, nil
}

// failedShards are the shards of rep that did not answer 2xx.
func failedShards(rep BroadcastReport) []ShardResult {
	var failed []ShardResult
	for _, res := range rep.Shards {
		if res.failed() {
			failed = append(failed, res)
		}
	}
	return failed
}

// retryTargets finds the failed shards in t by name: a StatefulSet pod
// keeps its name when it moves, so a retry reaches its new address. Those
// no longer in t are settled as failed.
func retryTargets(t *table.Table, failed []ShardResult) (targets []watch.Shard, settled []ShardResult) {
	byName := make(map[string]watch.Shard, len(t.Shards))
	for _, sh := range t.Shards {
		byName[sh.Name] = sh
	}
	for _, res := range failed {
		if sh, ok := byName[res.Shard]; ok {
			targets = append(targets, sh)
			continue
		}
		settled = append(settled, ShardResult{Ordinal: res.Ordinal, Shard: res.Shard, Error: errShardLeft, outcome: "left"})
	}
	return targets, settled
}
