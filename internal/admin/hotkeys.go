package admin

import (
	"net/http"
	"strconv"

	"github.com/shard-proxy/shard-proxy/internal/proxy"
	"github.com/shard-proxy/shard-proxy/internal/proxy/hotkeys"
	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
)

// HotKeySource gives the most frequent keys per shard over the last
// minute; *proxy.Proxy is one.
type HotKeySource interface {
	HotKeys(n int, shard string) hotkeys.Answer
}

var _ HotKeySource = (*proxy.Proxy)(nil)

// maxHotKeys bounds ?n=.
const maxHotKeys = 1000

// hotKeys serves GET /hotkeys?n=20[&shard=web-1]. Keys appear only here,
// behind the admin token: never in metrics or logs.
func (s *Server) hotKeys(w http.ResponseWriter, r *http.Request) {
	n := 20
	if v := r.URL.Query().Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > maxHotKeys {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "n: want a whole number from 1 to " + strconv.Itoa(maxHotKeys)})
			return
		}
	}
	if s.cfg.HotKeys == nil {
		writeJSON(w, http.StatusOK, hotkeys.Answer{Shards: []hotkeys.ShardKeys{}})
		return
	}
	writeJSON(w, http.StatusOK, s.cfg.HotKeys.HotKeys(n, r.URL.Query().Get("shard")))
}

// ChangeSource gives the last applied topologies, newest first;
// *proxy.Proxy is one.
type ChangeSource interface {
	TopologyChanges() []route.TopologyChange
}

var _ ChangeSource = (*proxy.Proxy)(nil)

// TopologyAnswer is the body of /topology.
type TopologyAnswer struct {
	Changes []route.TopologyChange `json:"changes"`
}

// topology serves GET /topology: the last applied topologies (up to 50),
// newest first, each with what changed shard by shard.
func (s *Server) topology(w http.ResponseWriter, _ *http.Request) {
	a := TopologyAnswer{Changes: []route.TopologyChange{}}
	if s.cfg.Changes != nil {
		a.Changes = s.cfg.Changes.TopologyChanges()
	}
	writeJSON(w, http.StatusOK, a)
}
