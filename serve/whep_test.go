package serve

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fixture"
	"github.com/kvsedge/kvsedge/internal/status"
	"github.com/pion/interceptor"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
	"github.com/valyala/fasthttp"
)

// whepClient is a pion receive-only WHEP player.
type whepClient struct {
	pc *webrtc.PeerConnection
	mu sync.Mutex
	// nals are the NAL unit types received in order (after depacketizing),
	// sps the first SPS, firstAt when the first video RTP packet came.
	nals    []byte
	sps     []byte
	tsMs    []int64 // RTP timestamps / 90 of each access unit
	packets int
	audio   int
	got     chan struct{} // closed at the 60th NAL unit
	once    sync.Once
	// onAudio, when set before the offer, sees each audio packet.
	onAudio func(tr *webrtc.TrackRemote, rtpTime uint32)
}

func newWHEPClient(t *testing.T) *whepClient {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil { // NACKs, as browsers send
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(ir)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	c := &whepClient{pc: pc, got: make(chan struct{})}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Kind() != webrtc.RTPCodecTypeVideo {
			for {
				p, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				c.mu.Lock()
				c.audio++
				c.mu.Unlock()
				if c.onAudio != nil {
					c.onAudio(tr, p.Timestamp)
				}
			}
		}
		// Access units rebuilt in sequence order (NACKed packets come
		// back late).
		sb := samplebuilder.New(512, &codecs.H264Packet{}, 90000)
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			sb.Push(p)
			c.mu.Lock()
			c.packets++
			for smp := sb.Pop(); smp != nil; smp = sb.Pop() {
				c.tsMs = append(c.tsMs, int64(smp.PacketTimestamp/90))
				for _, nal := range bytes.Split(smp.Data, []byte{0, 0, 0, 1}) {
					if len(nal) == 0 {
						continue
					}
					c.nals = append(c.nals, nal[0]&0x1f)
					if nal[0]&0x1f == 7 && c.sps == nil {
						c.sps = bytes.Clone(nal)
					}
				}
			}
			if len(c.nals) >= 60 {
				c.once.Do(func() { close(c.got) })
			}
			c.mu.Unlock()
		}
	})
	return c
}

// offer makes the client's offer, every candidate gathered.
func (c *whepClient) offer(t *testing.T) string {
	t.Helper()
	o, err := c.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	g := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(o); err != nil {
		t.Fatal(err)
	}
	<-g
	return c.pc.LocalDescription().SDP
}

// postOffer POSTs sdp to url, SigV4-signed when sign is set.
func postOffer(t *testing.T, url, sdp string, sign bool) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(sdp))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	if sign {
		sum := sha256.Sum256([]byte(sdp))
		if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testAKID, SecretAccessKey: testSecret},
			req, hex.EncodeToString(sum[:]), "kinesisvideo", testRegion, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	st, h, b := do(t, req)
	return st, h, string(b)
}

// TestWHEPLiveView plays a PutMedia producer's stream (H.264 + AAC) over
// WebRTC with a pion client: offer → 201 with the answer and the session
// URL; the camera's own SPS and PPS arrive with every key frame, then
// the frames, with RTP timestamps that are the producer's times; audio
// (AAC) is not carried. DELETE ends the session. Unsigned offers are
// refused, for streams that exist and that do not alike; a SessionToken
// from getWHEPSessionURL authorises one stream.
func TestWHEPLiveView(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media): make test runs it")
	}
	ts := startServer(t, "")
	createMediaStream(t, ts, "cam", 24)
	createMediaStream(t, ts, "other", 24)
	c := loadCapture(t, fixture.RelativeH264AAC)
	wantSPS := captureSPS(t, c.data)
	start := time.Now()
	uploaded := make(chan struct{})
	go func() {
		defer close(uploaded)
		putUpload(t, ts, "cam", "RELATIVE", strconv.FormatFloat(float64(start.UnixMilli())/1000, 'f', 3, 64), c, 1)
	}()
	defer func() { <-uploaded }()
	time.Sleep(1500 * time.Millisecond) // the producer is live

	url := ts.URL + whepStreamsPrefix + "cam"
	client := newWHEPClient(t)
	offer := client.offer(t)
	if st, _, body := postOffer(t, url, offer, false); st != http.StatusForbidden {
		t.Fatalf("unsigned offer: %d %s", st, body)
	}
	// Without a key, a stream that does not exist answers as one that
	// does: nothing tells which names exist.
	if st, _, body := postOffer(t, ts.URL+whepStreamsPrefix+"nosuchstream", offer, false); st != http.StatusForbidden {
		t.Fatalf("unsigned offer for a stream that does not exist: %d %s", st, body)
	}
	st, h, answer := postOffer(t, url, offer, true)
	if st != http.StatusCreated || !strings.HasPrefix(h.Get("Content-Type"), "application/sdp") {
		t.Fatalf("offer: %d %s %s", st, h.Get("Content-Type"), answer)
	}
	loc := h.Get("Location")
	if !regexp.MustCompile(`^/whep/v1/sessions/[0-9a-f]{32}$`).MatchString(loc) {
		t.Fatalf("Location %q", loc)
	}
	if !strings.Contains(answer, "H264/90000") || !strings.Contains(answer, "a=ice-lite") {
		t.Fatalf("answer without H.264 or ICE-lite:\n%s", answer)
	}
	if err := client.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-client.got:
	case <-time.After(10 * time.Second):
		client.mu.Lock()
		t.Fatalf("60 NAL units not received in 10 s: %d packets, NAL types %v", client.packets, client.nals)
	}
	client.mu.Lock()
	nals, sps, tsMs, audio := append([]byte(nil), client.nals...), client.sps, append([]int64(nil), client.tsMs...), client.audio
	client.mu.Unlock()
	// The viewer starts at a key frame: SPS, PPS, then (after SEI) an
	// IDR slice first.
	firstSlice := bytes.IndexFunc(nals, func(r rune) bool { return r == 1 || r == 5 })
	if len(nals) < 3 || nals[0] != 7 || nals[1] != 8 || firstSlice < 0 || nals[firstSlice] != 5 {
		t.Fatalf("first NAL units %v, want SPS (7), PPS (8), then an IDR slice (5) first", nals[:min(len(nals), 10)])
	}
	if !bytes.Equal(sps, wantSPS) {
		t.Fatalf("SPS % x, the stream's CodecPrivate has % x", sps, wantSPS)
	}
	slices := 0
	for _, n := range nals {
		if n == 1 || n == 5 {
			slices++
		}
	}
	if slices < 30 {
		t.Fatalf("%d slices among %v", slices, nals)
	}
	// RTP timestamps are producer times (ms × 90, modulo 2³²; the
	// catch-up at the start compressed towards the newest): within the
	// upload's span.
	rtpMs := func(t time.Time) int64 { return int64(uint32(t.UnixMilli()*90) / 90) }
	lo, hi := rtpMs(start.Add(-time.Second)), rtpMs(time.Now().Add(time.Second))
	for i, ms := range tsMs {
		if lo < hi && (ms < lo || ms > hi) {
			t.Fatalf("RTP timestamp %d ms (access unit %d of %v) is outside the upload's producer times %d…%d", ms, i, tsMs[:min(len(tsMs), 5)], lo, hi)
		}
	}
	if audio != 0 {
		t.Fatalf("%d audio packets: AAC cannot travel over WebRTC", audio)
	}
	if ts.srv.WebRTCSessions() != 1 {
		t.Fatalf("%d sessions", ts.srv.WebRTCSessions())
	}

	// DELETE ends it; a second DELETE finds nothing.
	del := func() int {
		req, _ := http.NewRequest(http.MethodDelete, ts.URL+loc, nil)
		st, _, _ := do(t, req)
		return st
	}
	if st := del(); st != http.StatusOK {
		t.Fatalf("DELETE: %d", st)
	}
	for deadline := time.Now().Add(5 * time.Second); ts.srv.WebRTCSessions() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions 5 s after DELETE", ts.srv.WebRTCSessions())
		}
	}
	if st := del(); st != http.StatusNotFound {
		t.Fatalf("second DELETE: %d", st)
	}

	// A token from getWHEPSessionURL authorises its stream only.
	tokenURL := func(stream string) string {
		st, _, b := ts.raw(t, "/getWHEPSessionURL", []byte(`{"StreamName":"`+stream+`"}`), time.Now(), testSecret)
		var out struct{ WHEPSessionURL string }
		if st != http.StatusOK || json.Unmarshal(b, &out) != nil || !strings.HasPrefix(out.WHEPSessionURL, ts.URL+whepStreamsPrefix+stream+"?SessionToken=") {
			t.Fatalf("getWHEPSessionURL: %d %s", st, b)
		}
		return out.WHEPSessionURL
	}
	other := tokenURL("other")
	forCam := strings.Replace(other, "/streams/other?", "/streams/cam?", 1)
	c2 := newWHEPClient(t)
	offer2 := c2.offer(t)
	if st, _, body := postOffer(t, forCam, offer2, false); st != http.StatusForbidden {
		t.Fatalf("another stream's token: %d %s", st, body)
	}
	if st, _, body := postOffer(t, strings.Replace(other, "/streams/other?", "/streams/nosuchstream?", 1), offer2, false); st != http.StatusForbidden {
		t.Fatalf("another stream's token, for a stream that does not exist: %d %s", st, body)
	}
	st, _, answer2 := postOffer(t, tokenURL("cam"), offer2, false)
	if st != http.StatusCreated {
		t.Fatalf("offer with a token: %d %s", st, answer2)
	}
	if err := c2.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer2}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c2.got:
	case <-time.After(10 * time.Second):
		t.Fatal("the token's session received no video")
	}
}

// captureSPS is the SPS in a capture's H.264 CodecPrivate.
func captureSPS(t *testing.T, body []byte) []byte {
	t.Helper()
	rd := mkv.NewReader(bytes.NewReader(body), mkv.Options{})
	defer rd.Close()
	for {
		ev, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev != mkv.EventFragmentStart {
			continue
		}
		for _, tr := range rd.Fragment().Header.Tracks {
			if tr.CodecID == mkv.CodecH264 {
				cfg, err := parseAVCC(tr.CodecPrivate)
				if err != nil {
					t.Fatal(err)
				}
				return cfg.sps[0]
			}
		}
		t.Fatal("no H.264 track")
	}
}

// TestWHEPOneUDPPort: with WebRTCOptions.UDPPort every session's media
// goes through that one port (pion's UDP mux): the answer's candidates
// all name it, and two viewers at once receive video through it.
func TestWHEPOneUDPPort(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media): make test runs it")
	}
	probe, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := probe.LocalAddr().(*net.UDPAddr).Port
	probe.Close()
	ts := startServerWith(t, "", func(o *Options) { o.WebRTC.UDPPort = port })
	createMediaStream(t, ts, "cam", 24)
	c := loadCapture(t, fixture.RelativeH264AAC)
	uploaded := make(chan struct{})
	go func() {
		defer close(uploaded)
		putUpload(t, ts, "cam", "RELATIVE", strconv.FormatFloat(float64(time.Now().UnixMilli())/1000, 'f', 3, 64), c, 1)
	}()
	defer func() { <-uploaded }()
	time.Sleep(1500 * time.Millisecond)
	cand := regexp.MustCompile(`a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ host`)
	var clients []*whepClient
	for range 2 {
		cl := newWHEPClient(t)
		st, _, answer := postOffer(t, ts.URL+whepStreamsPrefix+"cam", cl.offer(t), true)
		if st != http.StatusCreated {
			t.Fatalf("offer: %d %s", st, answer)
		}
		ms := cand.FindAllStringSubmatch(answer, -1)
		if len(ms) == 0 {
			t.Fatalf("no host candidate in the answer:\n%s", answer)
		}
		loopback := false
		for _, m := range ms {
			if m[2] != strconv.Itoa(port) {
				t.Fatalf("candidate %s:%s is not on the configured port %d", m[1], m[2], port)
			}
			loopback = loopback || m[1] == "127.0.0.1"
		}
		if !loopback {
			t.Fatalf("no loopback candidate:\n%s", answer)
		}
		if err := cl.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, cl)
	}
	for i, cl := range clients {
		select {
		case <-cl.got:
		case <-time.After(10 * time.Second):
			t.Fatalf("viewer %d received no video through port %d", i, port)
		}
	}
	if st := ts.srv.WebRTCStats(); st.Viewers != 2 || st.Connected != 2 || st.Started != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// peerView is a ClusterView of two test servers: streams live on home
// (set once both servers run); Forward posts to the other server's
// forward route (no peer signature: VerifyPeer accepts every request).
type peerView struct{ home atomic.Pointer[string] }

func (v *peerView) node() string {
	if p := v.home.Load(); p != nil {
		return *p
	}
	return ""
}
func (v *peerView) Home(string) string                      { return v.node() }
func (v *peerView) Members() []status.Member                { return nil }
func (v *peerView) Replication() []status.StreamReplication { return nil }
func (v *peerView) Locate(string) string                    { return v.node() }
func (v *peerView) VerifyPeer(string, string, string, []byte) error {
	return nil
}
func (v *peerView) ServePeer(ctx *fasthttp.RequestCtx, _ context.Context) {
	ctx.SetStatusCode(http.StatusNotFound)
}
func (v *peerView) Forward(ctx context.Context, base, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+forwardPrefix+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return http.DefaultClient.Do(req)
}

// TestWHEPForwardedToTheStreamsNode: an offer to a box the stream's
// frames do not reach is forwarded to the stream's node (the cluster's
// home), whose answer comes back with an absolute session URL on that
// node; the viewer receives the video from there, and DELETE there ends
// the session.
func TestWHEPForwardedToTheStreamsNode(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media): make test runs it")
	}
	view := &peerView{}
	home := startServerWith(t, "", func(o *Options) { o.Cluster = view }) // its own node: serves the offer
	other := startServerWith(t, "", func(o *Options) { o.Cluster = view })
	view.home.Store(&home.URL)
	createMediaStream(t, home, "cam", 24)
	createMediaStream(t, other, "cam", 24) // the stream record, as replicas have it
	c := loadCapture(t, fixture.RelativeH264AAC)
	uploaded := make(chan struct{})
	go func() {
		defer close(uploaded)
		putUpload(t, home, "cam", "RELATIVE", strconv.FormatFloat(float64(time.Now().UnixMilli())/1000, 'f', 3, 64), c, 1)
	}()
	defer func() { <-uploaded }()
	time.Sleep(1500 * time.Millisecond)

	cl := newWHEPClient(t)
	st, h, answer := postOffer(t, other.URL+whepStreamsPrefix+"cam", cl.offer(t), true)
	if st != http.StatusCreated || !strings.HasPrefix(h.Get("Location"), home.URL+whepSessionPrefix) {
		t.Fatalf("offer to the other box: %d, Location %q: %s", st, h.Get("Location"), answer)
	}
	if err := cl.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cl.got:
	case <-time.After(10 * time.Second):
		t.Fatal("no video through the forwarded session")
	}
	if home.srv.WebRTCSessions() != 1 || other.srv.WebRTCSessions() != 0 {
		t.Fatalf("sessions: home %d, other %d", home.srv.WebRTCSessions(), other.srv.WebRTCSessions())
	}
	req, _ := http.NewRequest(http.MethodDelete, h.Get("Location"), nil)
	if st, _, _ := do(t, req); st != http.StatusOK {
		t.Fatalf("DELETE on the stream's node: %d", st)
	}
}

// TestWHEPCarriesG711Audio: a stream of H.264 and G.711 µ-law (as an RTSP
// camera's A_MS/ACM track) is sent with its audio, as PCMU, its RTP times
// the frames' producer times at 8 kHz. Frames go straight into the live
// tap (a FragmentBuilder's blocks, the camera path), no fragment completes.
func TestWHEPCarriesG711Audio(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media): make test runs it")
	}
	ts := startServer(t, "")
	createMediaStream(t, ts, "cam", 24)
	clip, err := os.ReadFile(fixture.DemoClipPath())
	if err != nil {
		t.Fatal(err)
	}
	var nalus h264.AnnexB
	if err := nalus.Unmarshal(clip); err != nil {
		t.Fatal(err)
	}
	var sps, pps []byte
	var aus [][]byte // AVCC access units: one picture's NAL units each
	var keys []bool
	for _, n := range nalus {
		switch typ := h264.NALUType(n[0] & 0x1f); typ {
		case h264.NALUTypeSPS:
			sps = n
		case h264.NALUTypePPS:
			pps = n
		case h264.NALUTypeIDR, h264.NALUTypeNonIDR:
			aus = append(aus, append([]byte{byte(len(n) >> 24), byte(len(n) >> 16), byte(len(n) >> 8), byte(len(n))}, n...))
			keys = append(keys, typ == h264.NALUTypeIDR)
		}
	}
	avcc := append([]byte{1, sps[1], sps[2], sps[3], 0xff, 0xe1, 0, byte(len(sps))}, sps...)
	avcc = append(append(avcc, 1, 0, byte(len(pps))), pps...)
	// WAVEFORMATEX: µ-law (7), mono, 8 kHz, 8 kB/s, align 1, 8 bits, no extra.
	wave := []byte{7, 0, 1, 0, 0x40, 0x1f, 0, 0, 0x40, 0x1f, 0, 0, 1, 0, 8, 0, 0, 0}
	h, err := mkv.BuildHeader([]mkv.TrackSpec{
		{Number: 1, Type: mkv.TrackVideo, CodecID: mkv.CodecH264, CodecPrivate: avcc},
		{Number: 2, Type: mkv.TrackAudio, CodecID: mkv.CodecPCMA, CodecPrivate: wave, SampleRate: 8000, Channels: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := ts.eng.BeginIngest(engine.StreamRef{Name: "cam"})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	ctx, cancel := context.WithCancel(context.Background())
	fed := make(chan struct{})
	go func() { // 25 fps video, 40 ms audio frames, a fragment per key frame
		defer close(fed)
		var fb mkv.FragmentBuilder
		fb.OnBlock = sess.LiveFrame
		audio := bytes.Repeat([]byte{0xff}, 320)
		for i := 0; ctx.Err() == nil; i++ {
			ms := time.Now().UnixMilli()
			if keys[i%len(aus)] {
				fb.Discard()
				if err := fb.Start(h, ms, 1<<20); err != nil {
					return
				}
			}
			if fb.Started() {
				_ = fb.AddBlock(0, ms, keys[i%len(aus)], aus[i%len(aus)])
				_ = fb.AddBlock(1, ms, true, audio)
			}
			time.Sleep(40 * time.Millisecond)
		}
		fb.Discard()
	}()
	defer func() { cancel(); <-fed }()
	time.Sleep(500 * time.Millisecond)

	cl := newWHEPClient(t)
	var mime string
	var audioTS []uint32
	var mu sync.Mutex
	cl.onAudio = func(tr *webrtc.TrackRemote, ts uint32) {
		mu.Lock()
		mime = tr.Codec().MimeType
		audioTS = append(audioTS, ts)
		mu.Unlock()
	}
	st, _, answer := postOffer(t, ts.URL+whepStreamsPrefix+"cam", cl.offer(t), true)
	if st != http.StatusCreated || !strings.Contains(answer, "PCMU/8000") {
		t.Fatalf("offer: %d (PCMU in the answer: %v)\n%s", st, strings.Contains(answer, "PCMU/8000"), answer)
	}
	if err := cl.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cl.got:
	case <-time.After(10 * time.Second):
		t.Fatal("no video")
	}
	mu.Lock()
	defer mu.Unlock()
	if mime != webrtc.MimeTypePCMU || len(audioTS) < 10 {
		t.Fatalf("audio: %q, %d packets", mime, len(audioTS))
	}
	now := uint32(time.Now().UnixMilli() * 8)
	for _, a := range audioTS[len(audioTS)-5:] {
		if d := int32(now - a); d < 0 || d > 8*3000 {
			t.Fatalf("audio RTP time %d is %d samples from now's producer time %d (want within 3 s before)", a, d, now)
		}
	}
}
