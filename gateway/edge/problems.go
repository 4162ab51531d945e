// Package edge holds the gateway's own HTTP handlers: RFC 9457 problem details for every
// refusal and failure at the edge, and bearer-token (JWT) verification.
package edge

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Problems{})
	httpcaddyfile.RegisterHandlerDirective("problems", parseProblems)
	// Right inside the tracing span: the span then ends with the problem's status code,
	// which a handle_errors route (run after the span has ended) could not give it.
	httpcaddyfile.RegisterDirectiveOrder("problems", httpcaddyfile.After, "tracing")
}

// Problems answers the errors of the handlers after it (the `error` directive, the rate
// limiter, bearer_jwt, reverse_proxy's 502 and 504) as application/problem+json, shaped like
// the services' own problems: type, title, status, detail, instance and trace_id. Headers the
// failing handler set (Retry-After, WWW-Authenticate) are kept. The cause goes to the access
// log line as `error`, never to the client.
type Problems struct{}

// CaddyModule returns the Caddy module information.
func (Problems) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.problems",
		New: func() caddy.Module { return new(Problems) },
	}
}

// What the client is told, per status; a 5xx says what failed, never why in detail.
var details = map[int]string{
	http.StatusUnauthorized:       "A valid bearer token is required for this route.",
	http.StatusNotFound:           "No API route matches this path.",
	http.StatusTooManyRequests:    "Too many requests from this client; retry after the number of seconds in Retry-After.",
	http.StatusBadGateway:         "The service behind this route did not answer.",
	http.StatusGatewayTimeout:     "The service behind this route did not answer in time.",
	http.StatusServiceUnavailable: "The service behind this route is unavailable.",
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (Problems) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	tracked := &writeTracker{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
	err := next.ServeHTTP(tracked, r)
	if err == nil || tracked.wrote {
		// Nothing to answer, or too late to answer: the status line has gone out.
		return err
	}
	status := http.StatusInternalServerError
	var handlerErr caddyhttp.HandlerError
	if errors.As(err, &handlerErr) && handlerErr.StatusCode != 0 {
		status = handlerErr.StatusCode
	}
	if status == 499 {
		return err // the client went away: nobody to answer
	}
	cause := err.Error()
	if handlerErr.StatusCode != 0 {
		cause = "" // the `error` directive's refusals have no cause worth logging
		if handlerErr.Err != nil {
			cause = handlerErr.Err.Error()
		}
	}
	if extra, ok := r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok && cause != "" {
		extra.Add(zap.String("error", cause))
	}
	detail, known := details[status]
	if !known {
		if status >= 500 {
			detail = "The gateway could not handle this request."
		} else {
			detail = http.StatusText(status) + "."
		}
	}
	// The path the client asked for, before a route stripped its prefix.
	instance := r.URL.Path
	if original, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok {
		instance = original.URL.Path
	}
	document := map[string]any{
		"type":     "about:blank",
		"title":    http.StatusText(status),
		"status":   status,
		"detail":   detail,
		"instance": instance,
		"trace_id": nil,
	}
	if traceID, ok := caddyhttp.GetVar(r.Context(), "trace_id").(string); ok && traceID != "" {
		document["trace_id"] = traceID
	}
	body, _ := json.Marshal(document)
	header := w.Header()
	header.Set("Content-Type", "application/problem+json")
	header.Set("Content-Length", strconv.Itoa(len(body)))
	header.Del("Content-Encoding")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return nil
}

// writeTracker notes whether the handlers after Problems started a response.
type writeTracker struct {
	*caddyhttp.ResponseWriterWrapper
	wrote bool
}

func (t *writeTracker) WriteHeader(status int) {
	if status >= 200 || status == http.StatusSwitchingProtocols {
		t.wrote = true
	}
	t.ResponseWriterWrapper.WriteHeader(status)
}

func (t *writeTracker) Write(b []byte) (int, error) {
	t.wrote = true
	return t.ResponseWriterWrapper.Write(b)
}

func parseProblems(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	p := new(Problems)
	err := p.UnmarshalCaddyfile(h.Dispenser)
	return p, err
}

// Interface guards.
var (
	_ caddyhttp.MiddlewareHandler = (*Problems)(nil)
	_ caddyfile.Unmarshaler       = (*Problems)(nil)
)

// UnmarshalCaddyfile implements caddyfile.Unmarshaler.
func (*Problems) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	if d.NextArg() || d.NextBlock(0) {
		return d.Err("problems takes no arguments")
	}
	return nil
}
