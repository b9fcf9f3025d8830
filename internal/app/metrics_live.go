package app

import (
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/serve"
	"github.com/prometheus/client_golang/prometheus"
)

// liveCollector exports the live view: the engine's live tap per stream
// and the server's WebRTC (WHEP) sessions, read at scrape time.
type liveCollector struct {
	eng *engine.Engine
	srv func() *serve.Server // nil until the server exists
}

var (
	mLiveFrames   = prometheus.NewDesc("kvsedge_live_frames_total", "Frames published to live viewers as they arrived, by stream (streams with a frame in the last 10 minutes).", []string{"stream"}, nil)
	mLiveSkipped  = prometheus.NewDesc("kvsedge_live_skipped_frames_total", "Frames live viewers did not get for lack of media memory (they resumed at the next key frame), by stream.", []string{"stream"}, nil)
	mLiveViewers  = prometheus.NewDesc("kvsedge_live_subscribers", "Live viewers of the stream (WebRTC sessions) now.", []string{"stream"}, nil)
	mWebRTCOpen   = prometheus.NewDesc("kvsedge_webrtc_sessions", "WebRTC (WHEP) sessions open now, connecting or connected.", nil, nil)
	mWebRTCTotals = prometheus.NewDesc("kvsedge_webrtc_sessions_total", "WHEP offers since start, by outcome: answered, connected, refused (no live media, codec, limit, bad offer).", []string{"outcome"}, nil)
)

func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mLiveFrames, mLiveSkipped, mLiveViewers, mWebRTCOpen, mWebRTCTotals} {
		ch <- d
	}
}

func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.eng.LiveStreams(time.Now().Add(-10 * time.Minute)) {
		ch <- prometheus.MustNewConstMetric(mLiveFrames, prometheus.CounterValue, float64(st.Frames), st.Stream)
		ch <- prometheus.MustNewConstMetric(mLiveSkipped, prometheus.CounterValue, float64(st.Skipped), st.Stream)
		ch <- prometheus.MustNewConstMetric(mLiveViewers, prometheus.GaugeValue, float64(st.Subscribers), st.Stream)
	}
	if c.srv == nil {
		return
	}
	if srv := c.srv(); srv != nil {
		w := srv.WebRTCStats()
		ch <- prometheus.MustNewConstMetric(mWebRTCOpen, prometheus.GaugeValue, float64(w.Viewers))
		ch <- prometheus.MustNewConstMetric(mWebRTCTotals, prometheus.CounterValue, float64(w.Started), "answered")
		ch <- prometheus.MustNewConstMetric(mWebRTCTotals, prometheus.CounterValue, float64(w.Connected), "connected")
		ch <- prometheus.MustNewConstMetric(mWebRTCTotals, prometheus.CounterValue, float64(w.Refused), "refused")
	}
}
