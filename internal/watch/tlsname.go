package watch

import (
	"strconv"
	"strings"
)

// DefaultServerName is the name a TLS shard's certificate is verified
// for: the pod's stable DNS name under its headless Service, which no
// other pod of the StatefulSet can hold.
const DefaultServerName = "{pod}.{service}.{namespace}.svc.{domain}"

// NameParts are the values a server-name template may use.
type NameParts struct {
	Pod, StatefulSet, Service, Namespace, Domain string
	Ordinal                                      int
}

// serverNamePlaceholders are the placeholders of a server-name template.
var serverNamePlaceholders = []string{"{pod}", "{ordinal}", "{statefulset}", "{service}", "{namespace}", "{domain}"}

// ServerName fills template (DefaultServerName when "") with p.
func ServerName(template string, p NameParts) string {
	if template == "" {
		template = DefaultServerName
	}
	return strings.NewReplacer("{pod}", p.Pod, "{ordinal}", strconv.Itoa(p.Ordinal), "{statefulset}", p.StatefulSet,
		"{service}", p.Service, "{namespace}", p.Namespace, "{domain}", p.Domain).Replace(template)
}

// CheckServerName tells what is wrong with a server-name template: an
// unknown placeholder, or braces left over.
func CheckServerName(template string) error {
	rest := template
	for _, ph := range serverNamePlaceholders {
		rest = strings.ReplaceAll(rest, ph, "x")
	}
	if strings.ContainsAny(rest, "{}") || strings.TrimSpace(template) == "" {
		return &templateError{template}
	}
	return nil
}

type templateError struct{ template string }

func (e *templateError) Error() string {
	return "server name template " + strconv.Quote(e.template) + ": want a DNS name with the placeholders " + strings.Join(serverNamePlaceholders, ", ")
}
