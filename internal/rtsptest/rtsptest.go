// Package rtsptest provides an RTSP server and a publisher for tests of
// camera ingest: the relay forwards what a publisher RECORDs on a path to
// the clients that PLAY it (gortsplib's server, as in its examples), and
// can vanish and come back on the same address.
package rtsptest

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
	"github.com/kvsedge/kvsedge/internal/tlsca"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Relay is an RTSP server that forwards what publishers RECORD on a path
// to the clients that PLAY it (gortsplib's server, as in its examples).
type Relay struct {
	srv     *gortsplib.Server
	Addr    string
	mu      sync.Mutex
	streams map[string]*gortsplib.ServerStream
	pubs    map[string]*gortsplib.ServerSession
	// recording holds, by path, the session whose RECORD was accepted.
	recording map[string]*gortsplib.ServerSession
	// user and pass, when set, are required of readers (basic or digest).
	user, pass string
	tls        bool
	// refuseTCP answers a reader's SETUP over TCP with 461 Unsupported
	// Transport, as cameras that serve UDP only do.
	refuseTCP bool
	// rrs holds, by path, the RTCP receiver reports readers sent.
	rrs map[string][]rtcp.ReceiverReport
}

// ReceiverReports returns the RTCP receiver reports that readers of path
// sent so far (of any media), in order.
func (r *Relay) ReceiverReports(path string) []rtcp.ReceiverReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.rrs["/"+path])
}

// SendRTCP sends pkt to the readers of path's first media, as a camera
// sends its sender reports.
func (r *Relay) SendRTCP(path string, pkt rtcp.Packet) error {
	r.mu.Lock()
	s := r.streams["/"+path]
	r.mu.Unlock()
	if s == nil {
		return errors.New("rtsptest: nothing published on " + path)
	}
	return s.WritePacketRTCP(s.Desc.Medias[0], pkt)
}

// RefuseTCP makes the relay refuse readers that ask for RTP over TCP.
func (r *Relay) RefuseTCP() {
	r.mu.Lock()
	r.refuseTCP = true
	r.mu.Unlock()
}

// RequireAuth makes the relay demand credentials from clients that PLAY.
func (r *Relay) RequireAuth(user, pass string) {
	r.mu.Lock()
	r.user, r.pass = user, pass
	r.mu.Unlock()
}

// authorized checks a reader's credentials.
func (r *Relay) authorized(conn *gortsplib.ServerConn, req *base.Request) bool {
	r.mu.Lock()
	user, pass := r.user, r.pass
	r.mu.Unlock()
	return user == "" || conn.VerifyCredentials(req, user, pass)
}

func StartRelay(t testing.TB, addr string) *Relay {
	t.Helper()
	return startRelay(t, addr, nil)
}

// StartRelayTLS starts a relay that speaks RTSPS with a certificate for
// 127.0.0.1 from a throwaway CA (not trusted by anyone: clients must skip
// verification or fail).
func StartRelayTLS(t testing.TB) *Relay {
	t.Helper()
	dir := t.TempDir()
	ca, _, err := tlsca.EnsureCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	chain, key, err := ca.IssueServer([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(chain, key)
	if err != nil {
		t.Fatal(err)
	}
	return startRelay(t, "", &tls.Config{Certificates: []tls.Certificate{cert}})
}

// StartRelayUDP starts a relay that also offers RTP and RTCP over UDP
// (two free ports of 127.0.0.1), for readers that ask for that transport.
func StartRelayUDP(t testing.TB) *Relay {
	t.Helper()
	rtpPort, err := freeUDPPair()
	if err != nil {
		t.Fatal(err)
	}
	return startRelayOn(t, "", nil, func(s *gortsplib.Server) {
		s.UDPRTPAddress = net.JoinHostPort("127.0.0.1", strconv.Itoa(rtpPort))
		s.UDPRTCPAddress = net.JoinHostPort("127.0.0.1", strconv.Itoa(rtpPort+1))
	})
}

// handedOut holds the ports this process's relays were given: a port is
// picked free, closed, then bound by the relay, so another test's pick
// in between could get it again from the kernel; none is handed out
// twice.
var handedOut sync.Map

// freeUDPPair finds an even UDP port whose successor is free too (RTP and
// RTCP).
func freeUDPPair() (int, error) {
	for i := 0; i < 100; i++ {
		a, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := a.LocalAddr().(*net.UDPAddr).Port
		if _, dup := handedOut.Load("udp:" + strconv.Itoa(p)); p%2 == 0 && !dup {
			if b, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1))); err == nil {
				b.Close()
				a.Close()
				if _, dup := handedOut.LoadOrStore("udp:"+strconv.Itoa(p+1), true); !dup {
					handedOut.Store("udp:"+strconv.Itoa(p), true)
					return p, nil
				}
				continue
			}
		}
		a.Close()
	}
	return 0, errors.New("rtsptest: no free UDP port pair")
}

func startRelay(t testing.TB, addr string, tc *tls.Config) *Relay {
	return startRelayOn(t, addr, tc, nil)
}

// startRelayOn starts a relay; with is applied to its server (nil: none).
func startRelayOn(t testing.TB, addr string, tc *tls.Config, with func(*gortsplib.Server)) *Relay {
	for addr == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = ln.Addr().String()
		ln.Close()
		if _, dup := handedOut.LoadOrStore("tcp:"+addr, true); dup {
			addr = ""
		}
	}
	r := &Relay{Addr: addr, streams: map[string]*gortsplib.ServerStream{}, pubs: map[string]*gortsplib.ServerSession{},
		recording: map[string]*gortsplib.ServerSession{}, tls: tc != nil}
	newServer := func() *gortsplib.Server {
		s := &gortsplib.Server{Handler: r, RTSPAddress: addr, TLSConfig: tc}
		if with != nil {
			with(s)
		}
		return s
	}
	r.srv = newServer()
	var err error
	for i := 0; i < 50; i++ { // the port may linger after a restart
		if err = r.srv.Start(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
		r.srv = newServer()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// Close stops the server (clients see it vanish).
func (r *Relay) Close() { r.srv.Close() }

// WaitPublished waits until a publisher records on path (its RECORD was
// accepted, so readers that connect from now on get its stream), failing
// the test if none does within the given time.
func (r *Relay) WaitPublished(t testing.TB, path string, within time.Duration) {
	t.Helper()
	p := "/" + path
	deadline := time.Now().Add(within)
	for {
		r.mu.Lock()
		ok := r.recording[p] != nil && r.recording[p] == r.pubs[p]
		r.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rtsptest: nothing published on %s within %v", path, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// URL is the rtsp:// URL of path.
func (r *Relay) URL(path string) string {
	if r.tls {
		return "rtsps://" + r.Addr + "/" + path
	}
	return "rtsp://" + r.Addr + "/" + path
}

func (r *Relay) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p, s := range r.pubs {
		if s == ctx.Session {
			r.streams[p].Close()
			delete(r.streams, p)
			delete(r.pubs, p)
		}
	}
	for p, s := range r.recording {
		if s == ctx.Session {
			delete(r.recording, p)
		}
	}
}

func (r *Relay) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if !r.authorized(ctx.Conn, ctx.Request) {
		return &base.Response{StatusCode: base.StatusUnauthorized}, nil, liberrors.ErrServerAuth{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.streams[ctx.Path]; s != nil {
		return &base.Response{StatusCode: base.StatusOK}, s, nil
	}
	return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
}

func (r *Relay) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.streams[ctx.Path]; s != nil {
		s.Close()
		r.pubs[ctx.Path].Close()
	}
	s := &gortsplib.ServerStream{Server: r.srv, Desc: ctx.Description}
	if err := s.Initialize(); err != nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, err
	}
	r.streams[ctx.Path], r.pubs[ctx.Path] = s, ctx.Session
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (r *Relay) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if ctx.Session.State() == gortsplib.ServerSessionStatePreRecord {
		return &base.Response{StatusCode: base.StatusOK}, nil, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refuseTCP && ctx.Transport == gortsplib.TransportTCP {
		return &base.Response{StatusCode: base.StatusUnsupportedTransport}, nil, nil
	}
	if s := r.streams[ctx.Path]; s != nil {
		return &base.Response{StatusCode: base.StatusOK}, s, nil
	}
	return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
}

func (r *Relay) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	path := ctx.Path
	ctx.Session.OnPacketRTCPAny(func(_ *description.Media, pkt rtcp.Packet) {
		if rr, ok := pkt.(*rtcp.ReceiverReport); ok {
			r.mu.Lock()
			if r.rrs == nil {
				r.rrs = map[string][]rtcp.ReceiverReport{}
			}
			if len(r.rrs[path]) < 1000 {
				r.rrs[path] = append(r.rrs[path], *rr)
			}
			r.mu.Unlock()
		}
	})
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (r *Relay) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	path := ctx.Path
	ctx.Session.OnPacketRTPAny(func(m *description.Media, _ format.Format, pkt *rtp.Packet) {
		r.mu.Lock()
		s := r.streams[path]
		r.mu.Unlock()
		if s != nil {
			_ = s.WritePacketRTP(m, pkt)
		}
	})
	r.mu.Lock()
	r.recording[path] = ctx.Session
	r.mu.Unlock()
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// Publish records a clip (access units of NAL units, with their key-frame
// flags and the SPS/PPS) to url at fps with gortsplib's client until ctx
// ends (or, with stallAfter > 0, stops sending after that many frames
// while keeping the session open). It returns the number of frames sent.
func Publish(ctx context.Context, t testing.TB, url string, aus [][][]byte, sps, pps []byte, fps int, stallAfter int) int {
	return PublishEvery(ctx, t, url, aus, sps, pps, time.Second/time.Duration(fps), stallAfter)
}

// PublishLive is Publish with each frame stamped when it is sent (its RTP
// time is the wall-clock time since the first frame), as a camera stamps
// capture times: a tick the ticker drops under load leaves a gap in the
// times instead of making them fall behind the clock, so a frame's
// producer time stays its send time (latency measurements).
func PublishLive(ctx context.Context, t testing.TB, url string, aus [][][]byte, sps, pps []byte, fps int) int {
	return publish(ctx, t, url, aus, sps, pps, time.Second/time.Duration(fps), 0, true)
}

// PublishEvery is Publish at one access unit per period (a timelapse or
// motion-only camera sends one frame every few seconds).
func PublishEvery(ctx context.Context, t testing.TB, url string, aus [][][]byte, sps, pps []byte, period time.Duration, stallAfter int) int {
	return publish(ctx, t, url, aus, sps, pps, period, stallAfter, false)
}

func publish(ctx context.Context, t testing.TB, url string, aus [][][]byte, sps, pps []byte, period time.Duration, stallAfter int, wallClock bool) int {
	forma := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: sps, PPS: pps}
	desc := &description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo, Formats: []format.Format{forma}}}}
	tcp := gortsplib.TransportTCP
	c := gortsplib.Client{Transport: &tcp, TLSConfig: &tls.Config{InsecureSkipVerify: true}}
	if err := c.StartRecording(url, desc); err != nil {
		t.Errorf("publisher: %v", err)
		return 0
	}
	defer c.Close()
	enc, err := forma.CreateEncoder()
	if err != nil {
		t.Error(err)
		return 0
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	sent := 0
	start := time.Now()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return sent
		case <-tick.C:
		}
		if stallAfter > 0 && i >= stallAfter {
			continue
		}
		pkts, err := enc.Encode(aus[i%len(aus)])
		if err != nil {
			t.Error(err)
			return sent
		}
		ts := uint32(int64(i) * 90000 * int64(period) / int64(time.Second))
		if wallClock {
			ts = uint32(time.Since(start) * 90000 / time.Second)
		}
		for _, p := range pkts {
			p.Timestamp = ts
			if err := c.WritePacketRTP(desc.Medias[0], p); err != nil {
				return sent
			}
		}
		sent++
	}
}

// PublishRaw records whatever packets next returns for frame i (nil: send
// nothing this tick) with the given H.264 format, at fps, until ctx ends:
// for feeding a recorder damaged or hostile streams.
func PublishRaw(ctx context.Context, t testing.TB, url string, forma *format.H264, fps int, next func(i int) []*rtp.Packet) {
	desc := &description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo, Formats: []format.Format{forma}}}}
	tcp := gortsplib.TransportTCP
	c := gortsplib.Client{Transport: &tcp, TLSConfig: &tls.Config{InsecureSkipVerify: true}}
	if err := c.StartRecording(url, desc); err != nil {
		t.Errorf("publisher: %v", err)
		return
	}
	defer c.Close()
	tick := time.NewTicker(time.Second / time.Duration(fps))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, p := range next(i) {
			if err := c.WritePacketRTP(desc.Medias[0], p); err != nil {
				return
			}
		}
	}
}

// OnPacketsLost and OnDecodeError keep gortsplib from logging what hostile
// test streams provoke.
func (r *Relay) OnPacketsLost(*gortsplib.ServerHandlerOnPacketsLostCtx) {}

// OnDecodeError: see OnPacketsLost.
func (r *Relay) OnDecodeError(*gortsplib.ServerHandlerOnDecodeErrorCtx) {}

// Clip2Mbit writes a 2 Mbit/s H.264 clip (ffmpeg's testsrc2 at 1280x720,
// 25 fps, a key frame per second, parameter sets in band) into a temporary
// directory and returns its path and frame rate — what the benchmarks'
// simulated cameras send. Without ffmpeg it returns fallback (a clip of
// fallbackFPS) and says so.
func Clip2Mbit(tb testing.TB, fallback string, fallbackFPS int) (string, int) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "2mbit.h264")
	ff, err := exec.LookPath("ffmpeg")
	if err == nil {
		err = exec.Command(ff, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-t", "10",
			"-c:v", "libx264", "-preset", "veryfast", "-bf", "0", "-g", "25", "-sc_threshold", "0",
			"-b:v", "2M", "-maxrate", "2M", "-bufsize", "1M", "-x264-params", "repeat-headers=1", "-f", "h264", path).Run()
	}
	if err != nil {
		tb.Logf("no ffmpeg (%v): using %s", err, fallback)
		return fallback, fallbackFPS
	}
	return path, 25
}
