package keys

// Before returns the rules, as written, tried before rule: all of them
// when rule is not one of them (no rule yielded a key).
func (e *Extractor) Before(rule string) []string {
	for i, t := range e.tried {
		if t == rule {
			return e.tried[:i:i]
		}
	}
	return e.tried[:len(e.tried):len(e.tried)]
}
