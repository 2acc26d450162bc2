// Package keys holds the key rules (--key): parsing them, and finding a
// request's shard key by trying them in order, whatever protocol the request
// came in on. It refuses what could be read two ways rather than guess.
package keys

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultRules is the rule list used when none is configured.
const DefaultRules = "header:X-Shard-Key"

// ruleKind says where a rule takes its key from.
type ruleKind uint8

const (
	ruleHeader ruleKind = iota
	ruleQuery
	ruleCookie
	rulePath
	ruleBody
)

var ruleKinds = map[string]ruleKind{
	"header": ruleHeader,
	"query":  ruleQuery,
	"cookie": ruleCookie,
	"path":   rulePath,
	"body":   ruleBody,
}

// Rule is one parsed --key rule. Rules are immutable once parsed and safe for
// concurrent use.
type Rule struct {
	kind ruleKind
	text string // the rule as written, e.g. "header:X-Shard-Key"
	name string // header, query parameter or cookie name; body field as written
	// path rules: the template split into segments; keyAt is the index of {key}.
	segments []string
	keyAt    int
	// body rules: the field's segments (member names or array indexes).
	fieldPath []string
}

// String returns the rule as written on the command line.
func (r Rule) String() string { return r.text }

// ParseRules parses a comma-separated --key value such as
// "path:/accounts/{key},header:X-Shard-Key". An empty value means
// DefaultRules.
func ParseRules(spec string) ([]Rule, error) {
	if strings.TrimSpace(spec) == "" {
		spec = DefaultRules
	}
	var rules []Rule
	for _, part := range strings.Split(spec, ",") {
		r, err := parseRule(strings.TrimSpace(part))
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func parseRule(text string) (Rule, error) {
	kindName, arg, ok := strings.Cut(text, ":")
	kind, known := ruleKinds[kindName]
	if !ok || !known {
		return Rule{}, fmt.Errorf("key rule %q: want header:NAME, query:NAME, cookie:NAME, path:TEMPLATE or body:FIELD", text)
	}
	if arg == "" {
		return Rule{}, fmt.Errorf("key rule %q: %s needs a name after the colon", text, kindName)
	}
	r := Rule{kind: kind, text: text, name: arg}
	switch kind {
	case ruleQuery:
		if strings.ContainsAny(arg, " \t\r\n") {
			return Rule{}, fmt.Errorf("key rule %q: name must not contain white space", text)
		}
	case ruleHeader, ruleCookie:
		if !isToken(arg) {
			return Rule{}, fmt.Errorf("key rule %q: %s name must be a token (letters, digits and !#$%%&'*+-.^_`|~)", text, kindName)
		}
	case rulePath:
		segs, at, err := parseTemplate(arg)
		if err != nil {
			return Rule{}, fmt.Errorf("key rule %q: %w", text, err)
		}
		r.segments, r.keyAt = segs, at
	case ruleBody:
		p, err := fieldPathOf(arg)
		if err != nil {
			return Rule{}, fmt.Errorf("key rule %q: %w", text, err)
		}
		r.fieldPath = p
	}
	return r, nil
}

// parseTemplate splits "/accounts/{key}/orders" into segments. Exactly one
// segment is {key}; any other {name} segment matches any one segment.
func parseTemplate(tmpl string) ([]string, int, error) {
	if !strings.HasPrefix(tmpl, "/") {
		return nil, 0, errors.New("path template must start with /")
	}
	segs := strings.Split(tmpl[1:], "/")
	keyAt := -1
	for i, s := range segs {
		switch {
		case s == "{key}":
			if keyAt >= 0 {
				return nil, 0, errors.New("path template has {key} twice")
			}
			keyAt = i
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") && len(s) > 2:
			segs[i] = "{}" // wildcard
		case strings.ContainsAny(s, "{}"):
			return nil, 0, fmt.Errorf("path template segment %q: braces must enclose a whole segment", s)
		case s == "" && i < len(segs)-1:
			return nil, 0, errors.New("path template has an empty segment")
		}
	}
	if keyAt < 0 {
		return nil, 0, errors.New("path template has no {key} segment")
	}
	if segs[len(segs)-1] == "" { // trailing slash adds nothing: prefixes match anyway
		segs = segs[:len(segs)-1]
	}
	return segs, keyAt, nil
}

// fieldPathOf splits a dotted field ("account.id", "items.0.sku") into its
// segments: member names, or array indexes where the value is an array.
func fieldPathOf(field string) ([]string, error) {
	segs := strings.Split(field, ".")
	for _, seg := range segs {
		if seg == "" {
			return nil, fmt.Errorf("body field %q has an empty segment", field)
		}
	}
	return segs, nil
}

// isToken tells an RFC 9110 token: what header field and cookie names are.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
