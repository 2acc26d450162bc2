package h1

import "math"

// Head is what request and response heads share. Request and Response
// embed it; its slices alias the parsed buffer. Its methods only read it:
// once Parse has returned, any number of goroutines may call them.
type Head struct {
	// Minor is the HTTP minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
	Minor int
	// Fields are the field lines in order. Parse reuses the slice's
	// capacity, so a pooled Request or Response parses without allocating.
	Fields []Field
	// ContentLength is the declared Content-Length, or -1 when absent.
	ContentLength int64
	// Flags records framing and connection fields seen.
	Flags Flags

	clDigits []byte // first Content-Length value, to compare repeats with
}

func (h *Head) reset() {
	h.Minor = 0
	h.Fields = h.Fields[:0]
	h.ContentLength = -1
	h.Flags = 0
	h.clDigits = nil
}

// parseFields parses field lines from buf[i] up to and including the empty
// line, returning the index after it. host is nil for responses; for
// requests it receives the value of the single Host field.
func (h *Head) parseFields(buf []byte, i int, host *[]byte) (int, error) {
	for first := true; ; first = false {
		if i >= len(buf) {
			return 0, ErrIncomplete
		}
		switch buf[i] {
		case '\r', '\n':
			return lineEnd(buf, i, nil)
		case ' ', '\t':
			// RFC 9112 §2.2 and §5.2 let a recipient reject both; a
			// proxy that forwards raw lines must, since the next hop may
			// fold the line into the previous field or start a new one.
			if first {
				return 0, errLeadingWS
			}
			return 0, errObsFold
		}
		if len(h.Fields) == MaxFields {
			return 0, ErrTooManyFields
		}
		// Parsed in place, into the slot of an earlier parse when there
		// is one: a Field is ten words, not worth zeroing and copying.
		if n := len(h.Fields); n < cap(h.Fields) {
			h.Fields = h.Fields[:n+1]
		} else {
			h.Fields = append(h.Fields, Field{})
		}
		f := &h.Fields[len(h.Fields)-1]
		next, err := parseField(buf, i, f)
		if err != nil {
			return 0, err
		}
		if err := h.apply(f, host); err != nil {
			return 0, err
		}
		i = next
	}
}

// apply interprets the fields that decide framing or connection handling.
func (h *Head) apply(f *Field, host *[]byte) error {
	switch f.id {
	case idOther:
	case idContentLength:
		return h.contentLength(f.Value)
	case idTransferEncoding:
		return h.transferEncoding(f.Value, host != nil)
	case idHost:
		if host == nil {
			return nil
		}
		if *host != nil {
			// RFC 9112 §3.2: more than one Host line is a 400, even if
			// the values are identical.
			return errDuplicateHost
		}
		if _, ok := hostPort(f.Value, false); !ok {
			return errHost
		}
		*host = f.Value
	case idConnection:
		h.Flags |= FlagHopByHop | connectionFlags(f.Value)
	case idUpgrade:
		h.Flags |= FlagHopByHop | FlagUpgrade
	case idExpect:
		if equalFold(f.Value, "100-continue") {
			h.Flags |= FlagExpectContinue
		}
	case idTrailer:
		return checkTrailerField(f.Value)
	default:
		h.Flags |= FlagHopByHop
	}
	return nil
}

// contentLength applies one Content-Length field (RFC 9110 §8.6):
// 1*DIGIT, or a list of identical values, which count as one.
func (h *Head) contentLength(v []byte) error {
	if h.Flags.Has(FlagTransferEncoding) {
		return errCLWithTE
	}
	for i := 0; ; {
		s := i
		for i < len(v) && isDigit(v[i]) {
			i++
		}
		if i == s {
			return errCLInvalid
		}
		if err := h.contentLengthValue(v[s:i]); err != nil {
			return err
		}
		for i < len(v) && isWS(v[i]) {
			i++
		}
		if i == len(v) {
			return nil
		}
		if v[i] != ',' {
			return errCLInvalid
		}
		for i++; i < len(v) && isWS(v[i]); i++ {
		}
	}
}

// contentLengthValue records one Content-Length value. Repeats must be
// byte-identical: "5" and "05" are the same number, but a sender that
// writes both is not one to trust.
func (h *Head) contentLengthValue(d []byte) error {
	if h.Flags.Has(FlagContentLength) {
		if string(d) != string(h.clDigits) {
			return errCLConflict
		}
		h.Flags |= FlagContentLengthRepeated
		return nil
	}
	var n int64
	for _, c := range d {
		if n > (math.MaxInt64-int64(c-'0'))/10 {
			return errCLOverflow
		}
		n = n*10 + int64(c-'0')
	}
	h.ContentLength = n
	h.clDigits = d
	h.Flags |= FlagContentLength
	return nil
}

// transferEncoding applies one Transfer-Encoding field (RFC 9112 §6.1);
// several fields form one list. A request may carry only "chunked"; a
// response may stack other codings, but chunked must come last and once.
func (h *Head) transferEncoding(v []byte, request bool) error {
	switch {
	case h.Minor == 0:
		// RFC 9112 §6.1: an HTTP/1.0 recipient would ignore it, so the
		// framing is faulty whatever Content-Length says.
		return errTE10
	case h.Flags.Has(FlagContentLength):
		return errCLWithTE
	}
	h.Flags |= FlagTransferEncoding
	for i := 0; i < len(v) || i == 0; {
		name, params, next, ok := nextCoding(v, i)
		if !ok {
			return errTEInvalid
		}
		chunked := equalFold(name, "chunked")
		switch {
		case h.Flags.Has(FlagChunked) && chunked:
			return errChunkedTwice
		case h.Flags.Has(FlagChunked):
			return errChunkedNotFinal
		case chunked && params:
			return errTEInvalid
		case request && !chunked:
			// RFC 9112 §6.3: a request whose final coding is not
			// chunked has no determinable length; other codings
			// under chunked are not supported by any origin we front.
			return errTEUnsupported
		case chunked:
			h.Flags |= FlagChunked
		}
		i = next
	}
	return nil
}
