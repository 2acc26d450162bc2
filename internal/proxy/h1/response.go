package h1

// Response is a parsed response head. Its zero value is ready for Parse; a
// Response is meant to be pooled and reused. Parse must not run
// concurrently with any other use of the same Response; the read-only
// methods (Framing, Informational, HopByHop, ConnectionTokens) may run
// concurrently with each other. Every slice aliases the buffer last given
// to Parse and is valid only while that buffer is unchanged.
type Response struct {
	Head

	// Status is the three-digit status code, 100 to 599.
	Status int
	// Reason is the reason phrase, possibly empty.
	Reason []byte
}

// Parse parses the response head at the start of buf and returns its
// length including the final empty line. Errors are as for Request.Parse;
// a proxy answers any of them with 502 and closes the backend connection.
//
// The status line must be HTTP-version SP 3DIGIT SP reason-phrase CRLF
// (RFC 9112 §4), with the SP before an empty reason phrase present: the
// grammar requires it, and Go's net/http, nginx and agnhost always write
// a reason, so a server that omits the SP is not one we front.
func (r *Response) Parse(buf []byte) (n int, err error) {
	r.Head.reset()
	r.Status, r.Reason = 0, nil
	i, err := r.parseStatusLine(buf)
	if err != nil {
		return 0, err
	}
	return r.parseFields(buf, i, nil)
}

func (r *Response) parseStatusLine(buf []byte) (int, error) {
	minor, i, err := parseVersion(buf, 0, " ")
	if err != nil {
		return 0, err
	}
	r.Minor = minor
	status := 0
	for k := 0; k < 3; k, i = k+1, i+1 {
		if i >= len(buf) {
			return 0, ErrIncomplete
		}
		c := buf[i]
		// RFC 9110 §15: valid codes are 100 to 599.
		if !isDigit(c) || (k == 0 && (c < '1' || c > '5')) {
			return 0, errStatus
		}
		status = status*10 + int(c-'0')
	}
	r.Status = status
	if i >= len(buf) {
		return 0, ErrIncomplete
	}
	if buf[i] != ' ' {
		return 0, errStatusLine
	}
	s := i + 1
	for i = s; i < len(buf) && chars[buf[i]]&cValue != 0; i++ {
	}
	r.Reason = buf[s:i]
	return lineEnd(buf, i, errReason)
}

// Informational reports whether the response is interim (1xx other than
// 101): the proxy relays it and then reads the final response.
func (r *Response) Informational() bool {
	return r.Status >= 100 && r.Status < 200 && r.Status != 101
}

// Framing returns how the response body is delimited (RFC 9112 §6.3),
// given the method of the request it answers:
//
//   - 101 Switching Protocols: tunnel (the upgraded protocol follows);
//   - to HEAD, or 1xx, 204 or 304: none, whatever the head declares;
//   - 2xx to CONNECT: tunnel;
//   - chunked as the final transfer coding: chunked;
//   - other transfer codings: until close;
//   - Content-Length: length;
//   - otherwise: until close.
func (r *Response) Framing(requestMethod []byte) Framing {
	switch {
	case r.Status == 101:
		return FramingTunnel
	case string(requestMethod) == "HEAD" || r.Status < 200 || r.Status == 204 || r.Status == 304:
		return FramingNone
	case string(requestMethod) == "CONNECT" && r.Status < 300:
		return FramingTunnel
	case r.Flags.Has(FlagChunked):
		return FramingChunked
	case r.Flags.Has(FlagTransferEncoding):
		return FramingClose
	case r.Flags.Has(FlagContentLength):
		return FramingLength
	}
	return FramingClose
}
