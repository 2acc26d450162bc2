package http1

// Parked calls fn, when not nil, with what each parked (idle) connection
// still holds of the engine's buffers, and returns how many are parked. An
// idle connection should hold nothing: neither a pooled buffer nor a slice
// that aliases one it gave back (which would keep it from being
// collected). It holds the parker's lock meanwhile, so no parked
// connection resumes while it is looked at. Where connections are not
// parked (not Linux) it returns 0.
func (s *Server) Parked(fn func(held []string)) int {
	return s.parker.inspect(func(cc *clientConn) {
		if fn != nil {
			fn(cc.holdings())
		}
	})
}

// holdings lists what the connection holds of the engine's buffers.
func (cc *clientConn) holdings() []string {
	var held []string
	add := func(what string, has bool) {
		if has {
			held = append(held, what)
		}
	}
	add("read buffer", cc.rbuf != nil || cc.rb != nil)
	add("write buffer", cc.wbuf != nil || cc.wb != nil)
	add("request state", cc.active != nil)
	if cc.active == nil {
		return held
	}
	add("shard read buffer", cc.x.ubuf != nil || cc.x.ub != nil)
	add("head copy buffer", cc.in.headBuf != nil)
	add("decode buffer", cc.x.dbuf != nil)
	h := &cc.in.head
	add("request method, target or host", h.Method != nil || h.Target != nil || h.Host != nil)
	for _, f := range h.Fields[:cap(h.Fields)] {
		add("request field "+string(f.Name), f.Line != nil)
	}
	add("request body", cc.in.body != nil || cc.in.raw != nil)
	r := &cc.x.resp
	add("response reason", r.Reason != nil)
	for _, f := range r.Fields[:cap(r.Fields)] {
		add("response field "+string(f.Name), f.Line != nil)
	}
	return held
}
