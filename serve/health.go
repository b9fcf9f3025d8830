package serve

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// Operations routes, unauthenticated (as a Prometheus scraper and a
// service manager's probes expect): GET /metrics, /healthz, /readyz.
//
// /healthz answers 200 while the process serves requests (liveness).
// /readyz answers 200 when the box can take media: the store is open, the
// capacity controller accepts new media, the media memory budget has not
// refused any lately, and (in a cluster) the node has reached it; else
// 503. Both bodies are JSON with each check; /readyz adds "alarms"
// (Options.Alarms: a damaged store, …) when any is raised, which do not
// make the box unready.

// ReadinessCheck is one named readiness condition: "" when fine, else why
// not.
type ReadinessCheck func() string

func (s *Server) opsRoute(ctx *fasthttp.RequestCtx, path string) bool {
	if !ctx.IsGet() && !ctx.IsHead() {
		return false
	}
	switch path {
	case "/metrics":
		if s.metrics == nil {
			return false
		}
		s.metrics(ctx)
	case "/healthz":
		writeJSON(ctx, http.StatusOK, map[string]any{"status": "ok"})
	case "/readyz":
		checks := map[string]string{}
		ready := true
		if s.eng.Capacity().Refusing {
			checks["storage"] = s.eng.Capacity().Alarm
			ready = false
		} else {
			checks["storage"] = "ok"
		}
		if why := s.eng.Media().Alarm(); why != "" {
			checks["memory"], ready = why, false
		} else {
			checks["memory"] = "ok"
		}
		for name, c := range s.opts.Readiness {
			if why := c(); why != "" {
				checks[name], ready = why, false
			} else {
				checks[name] = "ok"
			}
		}
		status := http.StatusOK
		if !ready {
			status = http.StatusServiceUnavailable
		}
		body := map[string]any{"ready": ready, "checks": checks}
		alarms := map[string]string{}
		for name, c := range s.opts.Alarms {
			if why := c(); why != "" {
				alarms[name] = why
			}
		}
		if len(alarms) > 0 {
			body["alarms"] = alarms
		}
		writeJSON(ctx, status, body)
	default:
		return false
	}
	return true
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, _ := json.Marshal(v)
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetBody(b)
}

// metricsHandler serves g in Prometheus's text format.
func metricsHandler(g prometheus.Gatherer) fasthttp.RequestHandler {
	return fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
}
