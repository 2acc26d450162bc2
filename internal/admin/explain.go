package admin

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/net/http/httpguts"

	"github.com/shard-proxy/shard-proxy/internal/proxy"
	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
)

// Explainer routes a request as the data port would, without sending it:
// the *proxy.Proxy. A Config.Tables that is one too answers POST /explain
// with the proxy's own key extraction and routing step, never a copy.
type Explainer interface {
	Explain(d *route.Decision, req keys.Request, s *keys.Scratch, loadBody func() error) error
	MaxBodyBytes() int
	TriedBefore(rule string) []string
}

var _ Explainer = (*proxy.Proxy)(nil)

// ExplainRequest is the body of POST /explain: a request as a client
// would send it to the data port.
type ExplainRequest struct {
	// Method defaults to GET.
	Method string `json:"method"`
	// Path is the request-target with its query, as sent (percent-encoded).
	Path string `json:"path"`
	// Headers are the request's header fields, each value one field line.
	Headers map[string][]string `json:"headers"`
	// Body is the request body.
	Body string `json:"body"`
}

// ExplainAnswer is the body of a 200 from POST /explain: how the data port
// routes the request.
type ExplainAnswer struct {
	// Rule is the key rule that yielded the key, as written.
	Rule string `json:"rule"`
	// Key is the shard key; KeyHex holds its bytes when they are not UTF-8.
	Key    string `json:"key"`
	KeyHex string `json:"key_hex,omitempty"`
	// Tried are the rules tried before Rule, which yielded nothing.
	Tried []string `json:"tried"`
	// Hash is the key's xxhash64, 16 hex digits.
	Hash string `json:"hash"`
	// Ring, Replicas and Fingerprint describe the ring in force.
	Ring        string `json:"ring"`
	Replicas    int    `json:"replicas"`
	Fingerprint string `json:"fingerprint"`
	// Ordinal, Shard and Address name the owner.
	Ordinal int    `json:"ordinal"`
	Shard   string `json:"shard"`
	Address string `json:"address"`
	// Ready is false when the data port would hold the request for its
	// owner (up to --owner-wait), then answer 503 shard not ready.
	Ready bool `json:"ready"`
	// Previous names the owner before a reshard when the key moved
	// (handoff): the shard receives it as X-Shard-Previous.
	Previous        string `json:"previous"`
	PreviousAddress string `json:"previous_address,omitempty"`
}

// explainDocLimit bounds an /explain document: room for a body of
// max-body-bytes in JSON's longest escapes (\u00XX), and the rest.
func explainDocLimit(maxBody int) int64 { return 6*int64(maxBody) + 1<<20 }

// explain serves POST /explain: the request in the body routed by the
// proxy's own routing step on the table in force. A request the data port
// would refuse is answered with the status and the JSON error the data
// port would give (X-Shard and Retry-After too); an /explain document that
// is not one is a 400 naming what is wrong.
func (s *Server) explain(w http.ResponseWriter, r *http.Request) {
	ex, _ := s.cfg.Tables.(Explainer)
	if ex == nil {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "this admin plane has no data port to explain"})
		return
	}
	in, err := readExplain(w, r, explainDocLimit(ex.MaxBodyBytes()))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "explain: " + err.Error()})
		return
	}
	req := newExplainRequest(in)
	sc := keys.AcquireScratch()
	defer keys.ReleaseScratch(sc)
	var d route.Decision
	d.Begin(route.HTTP1, time.Now())
	err = ex.Explain(&d, req, sc, func() error {
		if limit := ex.MaxBodyBytes(); len(in.Body) > limit {
			return answer.BodyTooLarge(limit)
		}
		req.buffered = true
		return nil
	})
	if err != nil {
		answer.For(err, shardOf(&d)).Write(w)
		return
	}
	writeJSON(w, http.StatusOK, explained(&d, ex.TriedBefore(d.Rule)))
}

func shardOf(d *route.Decision) string {
	if d.Shard == nil {
		return ""
	}
	return d.Shard.Name
}

// explained is the answer for a routed decision.
func explained(d *route.Decision, tried []string) ExplainAnswer {
	t := d.Snapshot.Table
	a := ExplainAnswer{Rule: d.Rule, Key: string(d.Key), Tried: tried,
		Hash: fmt.Sprintf("%016x", xxhash.Sum64(d.Key)), Ring: string(t.Config.Algorithm),
		Replicas: t.Replicas(), Fingerprint: t.Fingerprint, Ordinal: d.Shard.Ordinal, Shard: d.Shard.Name,
		Address: d.Shard.Addr, Ready: d.Shard.Ready, Previous: d.Previous, PreviousAddress: d.PreviousAddr}
	if !utf8.Valid(d.Key) {
		a.KeyHex = fmt.Sprintf("%x", d.Key)
	}
	if a.Tried == nil {
		a.Tried = []string{}
	}
	return a
}

// readExplain decodes and checks an /explain document.
func readExplain(w http.ResponseWriter, r *http.Request, limit int64) (*ExplainRequest, error) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	var in ExplainRequest
	if err := dec.Decode(&in); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, fmt.Errorf("document over %d bytes", limit)
		}
		return nil, fmt.Errorf("want {\"method\",\"path\",\"headers\":{name:[values]},\"body\"}: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON document")
	}
	in.Method = strings.ToUpper(cmp.Or(in.Method, http.MethodGet))
	if !httpguts.ValidHeaderFieldName(in.Method) { // a method is a token too
		return nil, fmt.Errorf("method %q is not a token", in.Method)
	}
	if !strings.HasPrefix(in.Path, "/") || strings.ContainsFunc(in.Path, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
		return nil, fmt.Errorf("path %q: want a request-target such as /accounts/42?x=1 (no spaces or controls)", in.Path)
	}
	for name, values := range in.Headers {
		if !httpguts.ValidHeaderFieldName(name) {
			return nil, fmt.Errorf("header name %q is not a token", name)
		}
		for _, v := range values {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, fmt.Errorf("header %s: value %q holds a control character", name, v)
			}
		}
	}
	return &in, nil
}

// explainRequest is an /explain document as the key rules read a request.
type explainRequest struct {
	names       []string // of the header map, sorted, so repeats under case folding keep one order
	headers     map[string][]string
	path, query []byte
	body        []byte
	buffered    bool // the body was "read" (loadBody)
}

var _ keys.Request = (*explainRequest)(nil)

func newExplainRequest(in *ExplainRequest) *explainRequest {
	p, q, _ := strings.Cut(in.Path, "?")
	req := &explainRequest{headers: in.Headers, path: []byte(p), query: []byte(q), body: []byte(in.Body)}
	for name := range in.Headers {
		req.names = append(req.names, name)
	}
	slices.Sort(req.names)
	return req
}

// HeaderValues implements keys.Request.
func (e *explainRequest) HeaderValues(dst [][]byte, name string) [][]byte {
	for _, n := range e.names {
		if strings.EqualFold(n, name) {
			for _, v := range e.headers[n] {
				dst = append(dst, []byte(v))
			}
		}
	}
	return dst
}

// PathQuery implements keys.Request.
func (e *explainRequest) PathQuery() (path, query []byte) { return e.path, e.query }

// Body implements keys.Request: nil until a body rule asked for it.
func (e *explainRequest) Body() []byte {
	if !e.buffered {
		return nil
	}
	if e.body == nil {
		return []byte{}
	}
	return e.body
}
