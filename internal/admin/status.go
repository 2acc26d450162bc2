package admin

import (
	"embed"
	"net/http"
)

// statusAssets are the status page's HTML, CSS and JavaScript: plain files,
// embedded so that the page works without a CDN or a build step.
//
//go:embed status/index.html status/status.css status/status.js
var statusAssets embed.FS

// statusCSP lets the page load only its own files and talk only to this
// admin plane: keys shown on it come from requests, so nothing on it may
// run or load what they say.
const statusCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// statusPage serves GET /: the status page. It carries no data, so it
// needs no token; its script asks for one when an endpoint answers 401.
func statusPage(w http.ResponseWriter, r *http.Request) {
	serveStatusFile(w, r, "index.html")
}

// statusFile serves GET /status/{file}: the page's CSS and JavaScript.
func statusFile(w http.ResponseWriter, r *http.Request) {
	serveStatusFile(w, r, r.PathValue("file"))
}

func serveStatusFile(w http.ResponseWriter, r *http.Request, name string) {
	h := w.Header()
	h.Set("Content-Security-Policy", statusCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	// The files change only with the binary; revalidating keeps an
	// upgraded proxy from serving an old script from the browser's cache.
	h.Set("Cache-Control", "no-cache")
	http.ServeFileFS(w, r, statusAssets, "status/"+name)
}
