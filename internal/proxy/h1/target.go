package h1

// checkTarget classifies r.Target into one of the four forms of RFC 9112
// §3.2 and rejects everything else. Bytes were checked while scanning:
// VCHAR only, no '#' (a fragment is never part of a request-target, and
// some servers cut at it while others route on it).
func (r *Request) checkTarget() error {
	t := r.Target
	if string(r.Method) == "CONNECT" {
		// RFC 9112 §3.2.3: CONNECT takes uri-host ":" port and nothing
		// else, and there is no default port (RFC 9110 §9.3.6).
		if n, ok := hostPort(t, true); !ok || n == 0 {
			return errConnectTarget
		}
		r.Form, r.authority = FormAuthority, t
		return nil
	}
	switch t[0] {
	case '/':
		r.Form = FormOrigin
		return checkPath(t)
	case '*':
		if len(t) != 1 {
			return errTarget
		}
		if string(r.Method) != "OPTIONS" {
			return errAsterisk // RFC 9112 §3.2.4
		}
		r.Form = FormAsterisk
		return nil
	}
	r.Form = FormAbsolute
	return r.checkAbsolute(t)
}

// checkAbsolute accepts scheme "://" authority path-abempty [ "?" query ].
// RFC 9112 §3.2.2 allows any absolute-URI, but every origin a reverse
// proxy fronts is http or https, whose URIs always have an authority
// (RFC 9110 §4.2), so "urn:x" or "http:/x" can only confuse.
func (r *Request) checkAbsolute(t []byte) error {
	i := 0
	for i < len(t) && chars[t[i]]&cScheme != 0 {
		i++
	}
	if i == 0 || lower(t[0])-'a' >= 26 || len(t)-i < 3 || string(t[i:i+3]) != "://" {
		return errTarget
	}
	i += 3
	s := i
	for i < len(t) && t[i] != '/' && t[i] != '?' {
		if t[i] == '@' {
			// RFC 9110 §4.2.4: a recipient SHOULD treat userinfo in an
			// http(s) URI as an error; it hides the real host from a
			// reader that does not expect it.
			return errUserinfo
		}
		i++
	}
	r.authority = t[s:i]
	if n, ok := hostPort(r.authority, false); !ok || n == 0 {
		// RFC 9110 §4.2.1: an http URI with an empty host is invalid.
		return errTargetHost
	}
	return checkPath(t[i:])
}

// checkPath validates the percent-encoding of the path part (before '?'):
// "%" must start a pct-encoded triplet (RFC 3986 §2.1). The path is what
// routing decodes; an invalid escape has no single meaning. The query is
// left alone, as origins parse it their own way.
func checkPath(t []byte) error {
	for i := 0; i < len(t) && t[i] != '?'; i++ {
		if t[i] == '%' {
			if i+2 >= len(t) || chars[t[i+1]]&cHex == 0 || chars[t[i+2]]&cHex == 0 {
				return errPercent
			}
			i += 2
		}
	}
	return nil
}

// hostPort validates uri-host [ ":" port ] (RFC 3986 §3.2.2, §3.2.3) and
// returns the length of the host. It is stricter than RFC 3986 where a
// proxy routing on the host must be: no pct-encoding (DNS names are
// ASCII; an escaped name would be routed on one spelling and resolved on
// another), no IPvFuture and no IPv6 zone. needPort requires 1*DIGIT.
func hostPort(v []byte, needPort bool) (int, bool) {
	n := 0
	if len(v) > 0 && v[0] == '[' {
		for n < len(v) && v[n] != ']' {
			n++
		}
		if n == len(v) || !ipv6(v[1:n]) {
			return 0, false
		}
		n++
	} else {
		for n < len(v) && chars[v[n]]&cRegName != 0 {
			n++
		}
	}
	if n == len(v) {
		return n, !needPort
	}
	if v[n] != ':' {
		return 0, false
	}
	for i := n + 1; i < len(v); i++ {
		if !isDigit(v[i]) {
			return 0, false
		}
	}
	return n, !needPort || len(v) > n+1
}

// ipv6 validates an IPv6address (RFC 3986 §3.2.2): eight groups of one
// to four HEXDIG, at most one "::" standing for one or more zero groups,
// and optionally an IPv4address in place of the last two groups.
func ipv6(v []byte) bool {
	groups, elided := 0, false
	i := 0
	if len(v) >= 2 && v[0] == ':' && v[1] == ':' {
		elided, i = true, 2
	}
	for i < len(v) {
		s := i
		for i < len(v) && i-s < 5 && chars[v[i]]&cHex != 0 {
			i++
		}
		if i < len(v) && v[i] == '.' {
			if !ipv4(v[s:]) {
				return false
			}
			groups += 2
			break
		}
		if i == s || i-s > 4 {
			return false
		}
		groups++
		if i == len(v) {
			break
		}
		if v[i] != ':' || i+1 == len(v) {
			return false
		}
		i++
		if v[i] == ':' {
			if elided {
				return false
			}
			elided, i = true, i+1
		}
	}
	if elided {
		return groups <= 7
	}
	return groups == 8
}

// ipv4 validates dec-octet "." dec-octet "." dec-octet "." dec-octet,
// where a dec-octet is 0-255 without leading zeros (RFC 3986 §3.2.2).
func ipv4(v []byte) bool {
	for part := 0; part < 4; part++ {
		if part > 0 {
			if len(v) == 0 || v[0] != '.' {
				return false
			}
			v = v[1:]
		}
		n, d := 0, 0
		for d < len(v) && d < 4 && isDigit(v[d]) {
			n = n*10 + int(v[d]-'0')
			d++
		}
		if d == 0 || d > 3 || n > 255 || (d > 1 && v[0] == '0') {
			return false
		}
		v = v[d:]
	}
	return len(v) == 0
}
