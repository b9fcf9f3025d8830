package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/fixture"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/internal/rtsptest"
	"github.com/kvsedge/kvsedge/internal/status"
)

// publishDemo publishes the demo clip with rtsptest.Publish.
func publishDemo(ctx context.Context, t *testing.T, url string, stallAfter int) int {
	d := loadDemo(t)
	return rtsptest.Publish(ctx, t, url, d.aus, d.sps, d.pps, 15, stallAfter)
}

// recorder is an engine over a real store with a camera manager.
type recorder struct {
	eng  *engine.Engine
	cams *Manager
}

func newRecorder(t *testing.T) *recorder { return newRecorderTB(t) }

func newRecorderTB(t testing.TB) *recorder {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	eng, err := engine.Open(engine.Options{Store: engine.StoreOptions{Dir: t.TempDir(), CacheBytes: 1 << 20, MemTableBytes: 1 << 20}, Logger: log,
		Media: engine.MediaOptions{Debug: true}})
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{eng: eng, cams: NewManager(eng, log)}
	t.Cleanup(func() { r.cams.Close(); eng.Close() })
	return r
}

func (r *recorder) record(t *testing.T, stream, url string, mod func(*CameraConfig)) {
	t.Helper()
	src, err := NewRTSPSource(url, "tcp")
	if err != nil {
		t.Fatal(err)
	}
	src.ReadTimeout = 3 * time.Second
	c := CameraConfig{Stream: stream, Source: src, Key: url, RetentionHours: 1, StallTimeout: 3 * time.Second, MaxBackoff: 2 * time.Second}
	if mod != nil {
		mod(&c)
	}
	if err := r.cams.Apply(stream, []CameraConfig{c}); err != nil {
		t.Fatal(err)
	}
}

func (r *recorder) state(stream string) status.Camera {
	for _, s := range r.cams.States() {
		if s.Stream == stream {
			return s
		}
	}
	return status.Camera{}
}

func (r *recorder) fragments(t *testing.T, stream string) []fragment.Meta {
	return r.fragmentsTB(t, stream)
}

func (r *recorder) fragmentsTB(t testing.TB, stream string) []fragment.Meta {
	t.Helper()
	l, _, err := r.eng.ListFragments(engine.StreamRef{Name: stream}, fragment.ByServerTime, 0, 1<<50, nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// dump writes the stream as GetMedia would (header + fragment media per
// chunk, tags left out) for ffprobe.
func (r *recorder) dump(t *testing.T, stream string) string {
	t.Helper()
	return r.dumpHeaders(t, stream, true)
}

// dumpHeaders is dump, with a header before every fragment (as GetMedia)
// or only where it changes (one Matroska segment per header, as mkvinfo
// wants a file).
func (r *recorder) dumpHeaders(t *testing.T, stream string, every bool) string {
	t.Helper()
	cur, err := r.eng.OpenCursor(engine.StreamRef{Name: stream}, engine.Start{Kind: engine.StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), stream+".mkv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var last *engine.Header
	for {
		fr, err := cur.Next(context.Background(), 200*time.Millisecond)
		if errors.Is(err, engine.ErrIdle) {
			return path
		}
		if err != nil {
			t.Fatal(err)
		}
		if every || last == nil || fr.Header.ID != last.ID {
			f.Write(fr.Header.Raw)
		}
		last = fr.Header
		f.Write(fr.Media)
		fr.Release()
	}
}

type probeStream struct {
	CodecName    string `json:"codec_name"`
	CodecType    string `json:"codec_type"`
	Width        int    `json:"width"`
	NbReadFrames string `json:"nb_read_frames"`
}

func ffprobe(t *testing.T, path string) ([]probeStream, []float64) {
	t.Helper()
	bin, err := exec.LookPath("ffprobe")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ffprobe is not installed: .ci/run must install it")
		}
		t.Skip("ffprobe is not installed")
	}
	out, err := exec.Command(bin, "-v", "error", "-count_frames", "-show_streams", "-show_entries", "packet=pts_time,stream_index", "-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	var p struct {
		Streams []probeStream
		Packets []struct {
			PTS   string `json:"pts_time"`
			Index int    `json:"stream_index"`
		}
	}
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	var pts []float64
	for _, pk := range p.Packets {
		if pk.Index == 0 {
			v, _ := strconv.ParseFloat(pk.PTS, 64)
			pts = append(pts, v)
		}
	}
	return p.Streams, pts
}

func TestRecordFromGortsplibServer(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	t.Parallel()
	rl := rtsptest.StartRelay(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	sentc := make(chan int, 1)
	go func() { sentc <- publishDemo(ctx, t, rl.URL("cam"), 0) }()
	rl.WaitPublished(t, "cam", 20*time.Second)
	rec := newRecorder(t)
	var src *RTSPSource
	rec.record(t, "cam", rl.URL("cam"), func(c *CameraConfig) { src = c.Source.(*RTSPSource) })
	deadline := time.Now().Add(20 * time.Second)
	for len(rec.fragments(t, "cam")) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s: %+v", rec.state("cam"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	st := rec.state("cam")
	if st.State != StateRecording || st.FPS < 10 {
		t.Fatalf("camera state %+v", st)
	}
	// Over TCP the tap took the video's packets (rtptap.go), not
	// gortsplib's reader.
	if n := src.tapped.Load(); n < 30 {
		t.Fatalf("the RTP tap took %d packets", n)
	}
	rec.cams.Close()
	cancel()
	<-sentc
	frags := rec.fragments(t, "cam")
	frames := 0
	for _, f := range frags {
		frames += int(f.Frames)
	}
	streams, pts := ffprobe(t, rec.dump(t, "cam"))
	if len(streams) != 1 || streams[0].CodecName != "h264" || streams[0].Width != 640 {
		t.Fatalf("ffprobe: %+v", streams)
	}
	if n, _ := strconv.Atoi(streams[0].NbReadFrames); n != frames || n < 30 {
		t.Fatalf("ffprobe read %s frames, %d recorded", streams[0].NbReadFrames, frames)
	}
	for i := 1; i < len(pts); i++ {
		if pts[i] <= pts[i-1] {
			t.Fatalf("timestamps not monotonic at frame %d: %v after %v", i, pts[i], pts[i-1])
		}
	}
	// mkvinfo, another Matroska reader, finds every block too.
	out, err := exec.Command(fixture.Tool(t, "mkvinfo"), "-s", rec.dumpHeaders(t, "cam", false)).CombinedOutput()
	if err != nil {
		t.Fatalf("mkvinfo: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), " frame, track 1, "); n != frames {
		t.Fatalf("mkvinfo lists %d blocks, %d recorded", n, frames)
	}
}

// TestRecordFromFFmpegWithAudio: a third-party RTSP publisher (ffmpeg)
// sends H.264 and AAC; both tracks are recorded and read back.
func TestRecordFromFFmpegWithAudio(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	t.Parallel()
	bin, err := exec.LookPath("ffmpeg")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ffmpeg is not installed: .ci/run must install it")
		}
		t.Skip("ffmpeg is not installed")
	}
	rl := rtsptest.StartRelay(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ff := exec.CommandContext(ctx, bin, "-v", "error", "-re", "-stream_loop", "-1", "-i", "democlip.h264",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-b:a", "64k",
		"-f", "rtsp", "-rtsp_transport", "tcp", rl.URL("ff"))
	if err := ff.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = ff.Wait() }()
	rec := newRecorder(t)
	deadline := time.Now().Add(30 * time.Second)
	rec.record(t, "ff", rl.URL("ff"), nil)
	for len(rec.fragments(t, "ff")) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: %+v", rec.state("ff"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	rec.cams.Close()
	streams, pts := ffprobe(t, rec.dump(t, "ff"))
	if len(streams) != 2 || streams[0].CodecName != "h264" || streams[1].CodecName != "aac" {
		t.Fatalf("ffprobe: %+v", streams)
	}
	frames := 0
	for _, f := range rec.fragments(t, "ff") {
		frames += int(f.Frames)
	}
	v, _ := strconv.Atoi(streams[0].NbReadFrames)
	a, _ := strconv.Atoi(streams[1].NbReadFrames)
	if v+a != frames || v < 30 || a < 50 {
		t.Fatalf("ffprobe read %d video + %d audio frames, %d recorded", v, a, frames)
	}
	for i := 1; i < len(pts); i++ {
		if pts[i] <= pts[i-1] {
			t.Fatalf("video timestamps not monotonic at %d", i)
		}
	}
}

// TestRecordCodecsFromFFmpeg: H.265 with Opus, and H.264 with G.711,
// published by ffmpeg; each recorded stream reads back with its codecs.
func TestRecordCodecsFromFFmpeg(t *testing.T) {
	bin, err := exec.LookPath("ffmpeg")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ffmpeg is not installed: .ci/run must install it")
		}
		t.Skip("ffmpeg is not installed")
	}
	cases := []struct {
		name, video, audio, wantV, wantA string
		extra                            []string
	}{
		{"h265-opus", "libx265", "libopus", "hevc", "opus", []string{"-x265-params", "log-level=error:keyint=25:repeat-headers=1", "-ar", "48000"}},
		{"h264-g711", "libx264", "pcm_alaw", "h264", "pcm_alaw", []string{"-g", "25", "-ar", "8000", "-ac", "1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rl := rtsptest.StartRelay(t, "")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			args := []string{"-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
				"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
				"-c:v", tc.video, "-preset", "ultrafast", "-bf", "0", "-c:a", tc.audio}
			args = append(args, tc.extra...)
			args = append(args, "-f", "rtsp", "-rtsp_transport", "tcp", rl.URL("cam"))
			ff := exec.CommandContext(ctx, bin, args...)
			var stderr strings.Builder
			ff.Stderr = &stderr
			if err := ff.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cancel(); _ = ff.Wait() }()
			rl.WaitPublished(t, "cam", 30*time.Second)
			rec := newRecorder(t)
			rec.record(t, "cam", rl.URL("cam"), nil)
			deadline := time.Now().Add(30 * time.Second)
			for len(rec.fragments(t, "cam")) < 3 {
				if time.Now().After(deadline) {
					t.Fatalf("after 30 s: %+v; ffmpeg: %s", rec.state("cam"), stderr.String())
				}
				time.Sleep(200 * time.Millisecond)
			}
			rec.cams.Close()
			streams, pts := ffprobe(t, rec.dump(t, "cam"))
			if len(streams) != 2 || streams[0].CodecName != tc.wantV || streams[1].CodecName != tc.wantA || streams[0].Width != 320 {
				t.Fatalf("ffprobe: %+v", streams)
			}
			for i := 1; i < len(pts); i++ {
				if pts[i] <= pts[i-1] {
					t.Fatalf("video timestamps not monotonic at %d", i)
				}
			}
		})
	}
}

// TestRTSPAuthentication: a camera that requires credentials is recorded
// with those in its URL (gortsplib answers basic and digest challenges);
// a wrong password is reported and retried.
func TestRTSPAuthentication(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	t.Parallel()
	rl := rtsptest.StartRelay(t, "")
	rl.RequireAuth("viewer", "right-pw")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go publishDemo(ctx, t, rl.URL("cam"), 0)
	rl.WaitPublished(t, "cam", 20*time.Second)
	rec := newRecorder(t)
	good := strings.Replace(rl.URL("cam"), "rtsp://", "rtsp://viewer:right-pw@", 1)
	bad := strings.Replace(rl.URL("cam"), "rtsp://", "rtsp://viewer:wrong-pw@", 1)
	rec.record(t, "good", good, nil)
	rec.record(t, "bad", bad, nil)
	waitFragments(t, rec, "good", 2, 20*time.Second)
	st := rec.state("bad")
	if len(rec.fragments(t, "bad")) != 0 || st.LastError == "" || strings.Contains(st.LastError, "wrong-pw") || strings.Contains(st.Source, "wrong-pw") {
		t.Fatalf("camera with a wrong password: %+v", st)
	}
	t.Logf("wrong password reported as: %s", st.LastError)
}

// TestRTSPS: a camera speaking RTSP over TLS with a self-signed
// certificate is recorded when the camera is configured to accept it, and
// refused (certificate not trusted) otherwise.
func TestRTSPS(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	t.Parallel()
	rl := rtsptest.StartRelayTLS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go publishDemo(ctx, t, rl.URL("cam"), 0)
	rl.WaitPublished(t, "cam", 20*time.Second)
	rec := newRecorder(t)
	rec.record(t, "insecure", rl.URL("cam"), func(c *CameraConfig) { c.Source.(*RTSPSource).InsecureTLS = true })
	rec.record(t, "strict", rl.URL("cam"), nil)
	waitFragments(t, rec, "insecure", 2, 20*time.Second)
	st := rec.state("strict")
	if len(rec.fragments(t, "strict")) != 0 || !strings.Contains(st.LastError, "certificate") {
		t.Fatalf("RTSPS camera with an untrusted certificate: %+v", st)
	}
}

// TestServerVanishesAndReturns: the RTSP server goes away for 30 s; the
// camera retries by itself, recording resumes, and ListFragments shows the
// gap.
func TestServerVanishesAndReturns(t *testing.T) {
	if testing.Short() {
		t.Skip("30 s outage")
	}
	t.Parallel()
	// The relay comes back on the same port after 30 s: pick one below
	// the kernel's ephemeral range, where no outgoing connection of a
	// concurrent test can take it meanwhile.
	rl := rtsptest.StartRelay(t, portBelowEphemeral(t))
	ctx1, cancel1 := context.WithCancel(context.Background())
	done1 := make(chan int, 1)
	go func() { done1 <- publishDemo(ctx1, t, rl.URL("cam"), 0) }()
	rl.WaitPublished(t, "cam", 20*time.Second)
	rec := newRecorder(t)
	rec.record(t, "cam", rl.URL("cam"), nil)
	waitFragments(t, rec, "cam", 2, 20*time.Second)
	cancel1()
	<-done1
	rl.Close()
	outageStart := time.Now()
	time.Sleep(30 * time.Second)
	if st := rec.state("cam"); st.State == StateRecording || st.LastError == "" || st.Reconnects == 0 {
		t.Fatalf("camera during the outage: %+v", st)
	}
	before := len(rec.fragments(t, "cam"))
	rl2 := rtsptest.StartRelay(t, rl.Addr)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go publishDemo(ctx2, t, rl2.URL("cam"), 0)
	waitFragments(t, rec, "cam", before+2, 30*time.Second)
	frags := rec.fragments(t, "cam")
	gap := false
	for i := 1; i < len(frags); i++ {
		end := frags[i-1].ServerMs + int64(frags[i-1].DurationMs)
		if frags[i].ServerMs-end > 25_000 {
			gap = true
			if frags[i-1].ServerMs > outageStart.UnixMilli() || frags[i].ServerMs < outageStart.Add(30*time.Second).UnixMilli() {
				t.Fatalf("gap from %d to %d does not span the outage", end, frags[i].ServerMs)
			}
		}
	}
	if !gap {
		t.Fatal("ListFragments shows no gap over a 30 s outage")
	}
	if st := rec.state("cam"); st.State != StateRecording {
		t.Fatalf("camera after the outage: %+v", st)
	}
}

func waitFragments(t *testing.T, rec *recorder, stream string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for len(rec.fragments(t, stream)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d fragments after %v, want %d: %+v", len(rec.fragments(t, stream)), within, n, rec.state(stream))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestStalledFeedIsDetected: a server that accepts and sends nothing, and
// a publisher that stops sending while its session stays open, are both
// detected and retried; another camera keeps recording meanwhile.
func TestStalledFeedIsDetected(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	t.Parallel()
	mute := muteServer(t)
	rl := rtsptest.StartRelay(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go publishDemo(ctx, t, rl.URL("stalls"), 30) // 2 s of video, then silence
	go publishDemo(ctx, t, rl.URL("good"), 0)
	rl.WaitPublished(t, "stalls", 20*time.Second)
	rl.WaitPublished(t, "good", 20*time.Second)
	rec := newRecorder(t)
	rec.record(t, "mute", "rtsp://"+mute+"/x", nil)
	rec.record(t, "stalls", rl.URL("stalls"), nil)
	rec.record(t, "good", rl.URL("good"), nil)
	deadline := time.Now().Add(20 * time.Second)
	for {
		mute, stalls := rec.state("mute"), rec.state("stalls")
		if mute.Reconnects > 0 && stalls.Reconnects > 0 {
			if mute.LastError == "" || stalls.LastError == "" {
				t.Fatalf("no error reported: %+v %+v", mute, stalls)
			}
			t.Logf("mute: %s; stalls: %s", mute.LastError, stalls.LastError)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not detected within 20 s: %+v %+v", mute, stalls)
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitFragments(t, rec, "good", 2, 10*time.Second)
	if g := rec.state("good"); g.State != StateRecording || g.Reconnects != 0 {
		t.Fatalf("the healthy camera: %+v", g)
	}
}

// portBelowEphemeral returns a free loopback address with a port below
// Linux's ephemeral range (32768 and up).
func portBelowEphemeral(t *testing.T) string {
	t.Helper()
	for range 200 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		return addr
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

// TestAutoTransportPrefersTCP: with transport auto a camera is asked for
// RTP over TCP first (read by the RTP tap); one that refuses TCP (461,
// as UDP-only cameras answer) is recorded over UDP within the same
// connection attempt, and asked for UDP from then on.
func TestAutoTransportPrefersTCP(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	t.Parallel()
	tcpOnly := rtsptest.StartRelay(t, "")
	udpOnly := rtsptest.StartRelayUDP(t)
	udpOnly.RefuseTCP()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, rl := range []*rtsptest.Relay{tcpOnly, udpOnly} {
		go publishDemo(ctx, t, rl.URL("cam"), 0)
		rl.WaitPublished(t, "cam", 20*time.Second)
	}
	rec := newRecorder(t)
	srcs := map[string]*RTSPSource{}
	for name, rl := range map[string]*rtsptest.Relay{"tcp-only": tcpOnly, "udp-only": udpOnly} {
		rec.record(t, name, rl.URL("cam"), func(c *CameraConfig) {
			s, err := NewRTSPSource(rl.URL("cam"), "auto")
			if err != nil {
				t.Fatal(err)
			}
			s.ReadTimeout = 3 * time.Second
			c.Source, srcs[name] = s, s
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(rec.fragments(t, "tcp-only")) < 2 || len(rec.fragments(t, "udp-only")) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: %+v\n%+v", rec.state("tcp-only"), rec.state("udp-only"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for name, src := range srcs {
		if st := rec.state(name); st.Reconnects > 0 || st.State != StateRecording {
			t.Fatalf("%s: %+v", name, st)
		}
		tapped, refused := src.tapped.Load() > 0, src.tcpRefused.Load()
		if want := name == "tcp-only"; tapped != want || refused == want {
			t.Fatalf("%s: tapped %v, TCP refused %v", name, tapped, refused)
		}
	}
}

// muteServer starts a TCP server that accepts connections and never
// answers, and returns its address.
func muteServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		var conns []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, c)
		}
	}()
	return ln.Addr().String()
}
