package ingest

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtcp"
)

// rfcCamera is an RTSP camera written from the RFCs, not with gortsplib:
// it serves the demo clip over TCP (interleaved), one session at a time,
// with RTCP sender reports whose NTP fraction is in 2⁻³² s (RFC 3550 §4),
// on a clock offset from the box's by up to a second, every 1.33 s, so
// their fractions vary as a real camera's do.
type rfcCamera struct {
	t      *testing.T
	ln     net.Listener
	demo   *DemoSource
	ssrc   uint32
	offset time.Duration // the camera's clock minus the box's
	silent bool          // sends no media after PLAY
	// start is the camera-clock time of frame 0 (set at PLAY); frames
	// follow every 1/15 s.
	mu      sync.Mutex
	start   time.Time
	reports atomic.Int64
}

const rfcCameraFPS = 15

func startRFCCamera(t *testing.T, offset time.Duration) *rfcCamera {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &rfcCamera{t: t, ln: ln, demo: loadDemo(t), ssrc: 0x5eed_cafe, offset: offset}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				stop := context.AfterFunc(ctx, func() { conn.Close() })
				defer stop()
				c.serve(conn)
			}()
		}
	}()
	return c
}

func (c *rfcCamera) url() string { return "rtsp://" + c.ln.Addr().String() + "/cam" }

func (c *rfcCamera) serve(conn net.Conn) {
	var wmu sync.Mutex
	write := func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		_, err := conn.Write(b)
		return err
	}
	br := bufio.NewReader(conn)
	tp := textproto.NewReader(br)
	playing := false
	for {
		if b, err := br.Peek(1); err != nil {
			return
		} else if b[0] == '$' {
			// An interleaved frame (RFC 2326 §10.12): the reader's RTCP
			// receiver reports, skipped whole.
			h := make([]byte, 4)
			if _, err := io.ReadFull(br, h); err != nil {
				return
			}
			if _, err := br.Discard(int(binary.BigEndian.Uint16(h[2:]))); err != nil {
				return
			}
			continue
		}
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		if line == "" {
			continue
		}
		hdr, err := tp.ReadMIMEHeader()
		if err != nil {
			return
		}
		if n := hdr.Get("Content-Length"); n != "" && n != "0" {
			return // no request of a reader has a body
		}
		method := strings.Fields(line)[0]
		head := "RTSP/1.0 200 OK\r\nCSeq: " + hdr.Get("Cseq") + "\r\n"
		var body string
		switch method {
		case "OPTIONS", "GET_PARAMETER":
			head += "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER\r\n"
		case "DESCRIBE":
			d := c.demo
			body = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=cam\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n" +
				"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n" +
				"a=fmtp:96 packetization-mode=1;sprop-parameter-sets=" +
				base64.StdEncoding.EncodeToString(d.sps) + "," + base64.StdEncoding.EncodeToString(d.pps) + "\r\n" +
				"a=control:trackID=0\r\n"
			head += "Content-Base: " + c.url() + "/\r\nContent-Type: application/sdp\r\n"
		case "SETUP":
			if !strings.Contains(hdr.Get("Transport"), "TCP") {
				if err := write([]byte("RTSP/1.0 461 Unsupported Transport\r\nCSeq: " + hdr.Get("Cseq") + "\r\n\r\n")); err != nil {
					return
				}
				continue
			}
			head += fmt.Sprintf("Transport: RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=%08X\r\nSession: 4242;timeout=60\r\n", c.ssrc)
		case "PLAY":
			head += "Session: 4242\r\n"
		case "TEARDOWN":
			_ = write([]byte(head + "\r\n"))
			return
		}
		if body != "" {
			head += fmt.Sprintf("Content-Length: %d\r\n", len(body))
		}
		if err := write([]byte(head + "\r\n" + body)); err != nil {
			return
		}
		if method == "PLAY" && !playing && !c.silent {
			playing = true
			go c.stream(write)
		}
	}
}

// stream sends the clip in a loop, its timestamps running on, and a
// sender report before the first frame and every 20 frames after.
func (c *rfcCamera) stream(write func([]byte) error) {
	enc, err := (&format.H264{PayloadTyp: 96, PacketizationMode: 1}).CreateEncoder()
	if err != nil {
		c.t.Error(err)
		return
	}
	enc.SSRC = &c.ssrc
	begin := time.Now()
	c.mu.Lock()
	c.start = begin.Add(c.offset)
	start := c.start
	c.mu.Unlock()
	const tsBase = 1_234_567_890
	frame := func(i int) time.Time { return start.Add(time.Duration(i) * time.Second / rfcCameraFPS) }
	rtpTS := func(i int) uint32 { return tsBase + uint32(i*90000/rfcCameraFPS) }
	for i := 0; ; i++ {
		if d := time.Until(begin.Add(time.Duration(i) * time.Second / rfcCameraFPS)); d > 0 {
			time.Sleep(d)
		}
		if i%20 == 0 {
			// The report's instant: the camera clock now, and the RTP
			// time of that instant.
			now := time.Now().Add(c.offset)
			ts := rtpTS(i) + uint32(now.Sub(frame(i))*90000/time.Second)
			sr := &rtcp.SenderReport{SSRC: c.ssrc, NTPTime: rfcNTP(now), RTPTime: ts}
			b, err := sr.Marshal()
			if err != nil || write(interleaved(1, b)) != nil {
				return
			}
			c.reports.Add(1)
		}
		pkts, err := enc.Encode(c.demo.aus[i%len(c.demo.aus)])
		if err != nil {
			c.t.Error(err)
			return
		}
		for _, p := range pkts {
			p.Timestamp = rtpTS(i)
			b, err := p.Marshal()
			if err != nil || write(interleaved(0, b)) != nil {
				return
			}
		}
	}
}

// rfcNTP is t as an RFC 3550 NTP timestamp.
func rfcNTP(t time.Time) uint64 {
	secs := uint64(t.Unix() + ntpEpochOffset)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return secs<<32 | frac
}

// TestCameraClockFromSenderReports records a camera written from the
// RFCs (rfcCamera: RTSP over TCP, sender reports with the NTP fraction
// in 2⁻³² s, as cameras, ffmpeg, GStreamer, live555 and MediaMTX since
// v1.15 send it) whose clock is 700 ms ahead of the box's. Each fragment's
// producer timestamp is the camera's time of its first frame, and the
// fragments follow each other without a gap. Read as gortsplib v4 reads
// the fraction (as nanoseconds), the reports are 0.1 to 3 s off, each
// differently, and this fails.
func TestCameraClockFromSenderReports(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	t.Parallel()
	cam := startRFCCamera(t, 700*time.Millisecond)
	rec := newRecorder(t)
	var src *RTSPSource
	rec.record(t, "rfc", cam.url(), func(c *CameraConfig) { src = c.Source.(*RTSPSource) })
	deadline := time.Now().Add(40 * time.Second)
	for len(rec.fragments(t, "rfc")) < 6 || cam.reports.Load() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("after 40 s: %d fragments, %d sender reports sent; camera %+v", len(rec.fragments(t, "rfc")), cam.reports.Load(), rec.state("rfc"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st := rec.state("rfc"); st.Reconnects > 0 {
		t.Fatalf("the camera reconnected: %+v", st)
	}
	if src.tapped.Load() == 0 || src.reports.Load() < 3 {
		t.Fatalf("the tap took %d packets, the session %d sender reports", src.tapped.Load(), src.reports.Load())
	}
	cam.mu.Lock()
	start := cam.start
	cam.mu.Unlock()
	frags := rec.fragments(t, "rfc")
	frames := 0
	for i, f := range frags {
		want := start.Add(time.Duration(frames) * time.Second / rfcCameraFPS).UnixMilli()
		if d := f.ProducerMs - want; d < -100 || d > 100 {
			t.Fatalf("fragment %d (after %d frames) is stamped %d ms from the camera's clock:\n%+v", i, frames, d, frags)
		}
		if i > 0 {
			end := frags[i-1].ProducerMs + int64(frags[i-1].DurationMs)
			if gap := f.ProducerMs - end; gap < -100 || gap > 100 {
				t.Fatalf("fragment %d starts %d ms from where fragment %d ends", i, gap, i-1)
			}
		}
		frames += int(f.Frames)
	}
	t.Logf("%d fragments (%d frames) on the camera's clock, %d sender reports", len(frags), frames, src.reports.Load())
}
