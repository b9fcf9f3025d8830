package ingest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/conn"
	"github.com/bluenviron/gortsplib/v4/pkg/rtcpreceiver"
	"github.com/kvsedge/kvsedge/internal/rtsptest"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// interleaved is one RFC 2326 §10.12 frame.
func interleaved(ch byte, payload []byte) []byte {
	b := []byte{'$', ch, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(len(payload)))
	return append(b, payload...)
}

func rtpPacket(t testing.TB, seq uint16, size int) []byte {
	t.Helper()
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(int(seq) + i)
	}
	b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: 9000 * uint32(seq), SSRC: 0x1234}, Payload: payload}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func senderReportPacket(t testing.TB, ssrc uint32, ntp uint64, ts uint32) []byte {
	t.Helper()
	b, err := rtcp.Marshal([]rtcp.Packet{
		&rtcp.SenderReport{SSRC: ssrc, NTPTime: ntp, RTPTime: ts, PacketCount: 1, OctetCount: 2},
		&rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: ssrc, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "cam"}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// chunkedReader returns its bytes a random few at a time, so frames and
// messages arrive cut anywhere.
type chunkedReader struct {
	b   []byte
	rnd *rand.Rand
	max int
}

func (r *chunkedReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.b), 1+r.rnd.IntN(r.max))
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

// tapped builds a tapped connection over src, video on channel 2, and
// what the tap was given.
type tapRecord struct {
	rtp [][]byte
}

func tappedConn(src io.Reader, channel int32) (*bufferedConn, *tapRecord) {
	rec := &tapRecord{}
	tap := newRTPTap(func(b []byte) { rec.rtp = append(rec.rtp, bytes.Clone(b)) })
	tap.channel.Store(channel)
	return &bufferedConn{r: bufio.NewReaderSize(src, tapReadBuffer), tap: tap}, rec
}

// readAll reads c as gortsplib's client does (pkg/conn over it) until the
// stream ends, and returns what it read.
func readAll(t *testing.T, c io.ReadWriter) []any {
	t.Helper()
	gc := conn.NewConn(c)
	var got []any
	for {
		what, err := gc.Read()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("gortsplib's reader failed: %v", err)
			}
			return got
		}
		switch w := what.(type) {
		case *base.InterleavedFrame:
			got = append(got, interleavedCopy{w.Channel, bytes.Clone(w.Payload)})
		case *base.Response:
			got = append(got, responseCopy{w.StatusCode, string(w.Body), w.Header["CSeq"]})
		case *base.Request:
			got = append(got, requestCopy{w.Method, string(w.Body)})
		}
	}
}

type interleavedCopy struct {
	ch      int
	payload []byte
}
type responseCopy struct {
	status base.StatusCode
	body   string
	cseq   base.HeaderValue
}
type requestCopy struct {
	method base.Method
	body   string
}

type rw struct{ io.Reader }

func (rw) Write(p []byte) (int, error) { return len(p), nil }

// TestTapSplitsTheStream: from a stream mixing every kind of message,
// cut at random places, the tap takes the video's RTP frames (and only
// them), and gortsplib's own reader reads everything else (the video's
// RTCP included), whole and in order, as it would without the tap.
func TestTapSplitsTheStream(t *testing.T) {
	sr := senderReportPacket(t, 0x1234, 0xe8e1_0000_8000_0000, 90000)
	var stream bytes.Buffer
	var wantRTP [][]byte
	stream.WriteString("RTSP/1.0 200 OK\r\nCSeq: 4\r\nSession: 12345678\r\n\r\n")
	for i := range 40 {
		p := rtpPacket(t, uint16(i), 100+i*37)
		wantRTP = append(wantRTP, p)
		stream.Write(interleaved(2, p))
		switch i % 10 {
		case 3:
			stream.Write(interleaved(3, sr)) // the video's RTCP
		case 5:
			stream.Write(interleaved(0, rtpPacket(t, uint16(1000+i), 160))) // audio
		case 7:
			// A keepalive answer with a body; the length's header in
			// another case.
			stream.WriteString("RTSP/1.0 200 OK\r\nCSeq: 9\r\ncontent-LENGTH: 12\r\nContent-Type: text/parameters\r\n\r\nparam: 1\r\n\r\n")
		case 8:
			stream.WriteString("xx") // stray bytes gortsplib skips
			stream.WriteString("SET_PARAMETER rtsp://cam/ RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 4\r\n\r\nab\r\n")
		}
	}
	// A frame of the largest size, tapped in place.
	big := make([]byte, 0xffff)
	copy(big, rtpPacket(t, 40, 0xffff-12))
	wantRTP = append(wantRTP, big)
	stream.Write(interleaved(2, big))
	stream.WriteString("RTSP/1.0 200 OK\r\nCSeq: 10\r\n\r\n")

	// The same stream without the tap: what gortsplib must read.
	plain := readAll(t, rw{bytes.NewReader(stream.Bytes())})
	var want []any
	for _, w := range plain {
		if f, ok := w.(interleavedCopy); ok && f.ch == 2 {
			continue
		}
		want = append(want, w)
	}
	for seed := range uint64(20) {
		src := &chunkedReader{b: stream.Bytes(), rnd: rand.New(rand.NewPCG(seed, 1)), max: 1 + int(seed)*500}
		c, rec := tappedConn(src, 2)
		got := readAll(t, c)
		if !equalMessages(got, want) {
			t.Fatalf("seed %d: gortsplib read %d messages (want %d), not the same", seed, len(got), len(want))
		}
		if len(rec.rtp) != len(wantRTP) {
			t.Fatalf("seed %d: the tap took %d RTP frames, want %d", seed, len(rec.rtp), len(wantRTP))
		}
		for i := range wantRTP {
			if !bytes.Equal(rec.rtp[i], wantRTP[i]) {
				t.Fatalf("seed %d: tapped frame %d differs", seed, i)
			}
		}
	}
}

func equalMessages(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		switch x := a[i].(type) {
		case interleavedCopy:
			y, ok := b[i].(interleavedCopy)
			if !ok || x.ch != y.ch || !bytes.Equal(x.payload, y.payload) {
				return false
			}
		case responseCopy:
			y, ok := b[i].(responseCopy)
			if !ok || x.status != y.status || x.body != y.body || len(x.cseq) != 1 || len(y.cseq) != 1 || x.cseq[0] != y.cseq[0] {
				return false
			}
		case requestCopy:
			if y, ok := b[i].(requestCopy); !ok || x != y {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// TestTapUnarmedPassesEverything: before the video's SETUP is answered
// (channel -1) the tap takes nothing.
func TestTapUnarmedPassesEverything(t *testing.T) {
	var stream bytes.Buffer
	stream.WriteString("RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n")
	stream.Write(interleaved(0, rtpPacket(t, 1, 500)))
	c, rec := tappedConn(bytes.NewReader(stream.Bytes()), -1)
	got := readAll(t, c)
	if len(got) != 2 || len(rec.rtp) != 0 {
		t.Fatalf("gortsplib read %d messages (want 2), the tap took %d (want 0)", len(got), len(rec.rtp))
	}
}

// TestTapGivesUpOnAnUnsizableHead: a message head longer than the
// buffer cannot be sized; the tap then hands everything up, video
// frames included, so gortsplib's own path takes over.
func TestTapGivesUpOnAnUnsizableHead(t *testing.T) {
	var stream bytes.Buffer
	stream.Write(interleaved(2, rtpPacket(t, 1, 300)))
	stream.WriteString("RTSP/1.0 200 OK\r\nCSeq: 3\r\nX-Long: ")
	stream.Write(bytes.Repeat([]byte("a"), tapReadBuffer))
	stream.WriteString("\r\n\r\n")
	stream.Write(interleaved(2, rtpPacket(t, 2, 300)))
	c, rec := tappedConn(bytes.NewReader(stream.Bytes()), 2)
	gc := conn.NewConn(rw{c})
	var frames int
	for {
		what, err := gc.Read()
		if err != nil {
			break // gortsplib refuses the long header; what matters is below
		}
		if _, ok := what.(*base.InterleavedFrame); ok {
			frames++
		}
	}
	if len(rec.rtp) != 1 || !c.untapped {
		t.Fatalf("the tap took %d frames (want the first only) and untapped = %v", len(rec.rtp), c.untapped)
	}
	if frames != 0 {
		t.Fatalf("gortsplib read %d frames before the long head, want 0", frames)
	}
}

// TestTapCutStream: a stream that ends inside a tapped frame or a head
// ends gortsplib's reader with an error, nothing else.
func TestTapCutStream(t *testing.T) {
	full := append(interleaved(2, rtpPacket(t, 1, 300)), "RTSP/1.0 200 OK\r\nCSeq: 3\r\nContent-Length: 10\r\n\r\n0123456789"...)
	for cut := range len(full) {
		c, rec := tappedConn(bytes.NewReader(full[:cut]), 2)
		gc := conn.NewConn(rw{c})
		for {
			if _, err := gc.Read(); err != nil {
				break
			}
		}
		if want := cut >= 4+312; (len(rec.rtp) == 1) != want {
			t.Fatalf("cut at %d: the tap took %d frames", cut, len(rec.rtp))
		}
	}
}

// repeatReader returns b over and over.
type repeatReader struct {
	b   []byte
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.b[r.off:])
	r.off = (r.off + n) % len(r.b)
	return n, nil
}

// TestTappedReadAllocatesNothing: the tapped video frames, parsed into
// the reused packet, among a keepalive answer and an RTCP frame handed
// up, cost no allocation (gortsplib's reading of what is handed up is
// not in this count: the test reads the bufferedConn directly).
func TestTappedReadAllocatesNothing(t *testing.T) {
	var stream bytes.Buffer
	for i := range 20 {
		stream.Write(interleaved(2, rtpPacket(t, uint16(i), 1400)))
	}
	stream.WriteString("RTSP/1.0 200 OK\r\nCSeq: 9\r\nContent-Length: 2\r\n\r\nok")
	stream.Write(interleaved(3, senderReportPacket(t, 0x1234, 1<<32, 0)))
	r := &rtspSession{log: slog.New(slog.DiscardHandler)}
	var frames int
	tap := newRTPTap(func(b []byte) {
		if err := r.tv.pkt.Unmarshal(b); err == nil {
			frames++
		}
	})
	tap.channel.Store(2)
	c := &bufferedConn{r: bufio.NewReaderSize(&repeatReader{b: stream.Bytes()}, tapReadBuffer), tap: tap}
	buf := make([]byte, 4096)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	})
	if frames == 0 || allocs != 0 {
		t.Fatalf("%d frames tapped, %.1f allocations per read, want some and 0", frames, allocs)
	}
}

// TestSenderClock: the camera's clock read from a sender report gives
// each RTP timestamp its RFC 3550 time (the NTP fraction in 2⁻³² s);
// gortsplib v4's PacketNTP, which reads the fraction as nanoseconds,
// does not (this test documents why the session keeps its own).
func TestSenderClock(t *testing.T) {
	const rate = 90000
	// 2023-10-23 16:52:21.25 UTC: seconds 0xe8e12345 since 1900, a
	// quarter second in the fraction.
	sr := &rtcp.SenderReport{SSRC: 77, NTPTime: 0xe8e1_2345_4000_0000, RTPTime: 3_000_000_000}
	base := time.Date(2023, 10, 23, 16, 52, 21, 250_000_000, time.UTC)
	var clock senderClock
	if _, ok := clock.at(77, 0, rate); ok {
		t.Fatal("a time before any sender report")
	}
	clock.report(sr)
	for _, c := range []struct {
		ts   uint32
		want time.Time
	}{
		{3_000_000_000, base},
		{3_000_090_000, base.Add(time.Second)},
		{2_999_955_000, base.Add(-500 * time.Millisecond)},
		{3_000_000_000 + 90000*3600, base.Add(time.Hour)},
	} {
		if got, ok := clock.at(77, c.ts, rate); !ok || !got.Equal(c.want) {
			t.Fatalf("ts %d: %v (%v), want %v", c.ts, got, ok, c.want)
		}
	}
	if _, ok := clock.at(78, 3_000_000_000, rate); ok {
		t.Fatal("a time for another SSRC")
	}

	ssrc := uint32(5)
	rr := &rtcpreceiver.RTCPReceiver{ClockRate: rate, LocalSSRC: &ssrc, Period: time.Hour, WritePacketRTCP: func(rtcp.Packet) {}}
	if err := rr.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	rr.ProcessSenderReport(sr, time.Now())
	if g, _ := rr.PacketNTP(3_000_000_000); g.Equal(base) {
		t.Log("gortsplib's PacketNTP now reads the NTP fraction per RFC 3550: the session could use it again")
	}
}

// TestTappedConnectionTimesOut: gortsplib's own timeout is off on a
// tapped connection; the tap's watchdog closes one that stays silent for
// ReadTimeout (here a server that never answers the DESCRIBE).
func TestTappedConnectionTimesOut(t *testing.T) {
	t.Parallel()
	src, err := NewRTSPSource("rtsp://"+muteServer(t)+"/mute", "tcp")
	if err != nil {
		t.Fatal(err)
	}
	src.ReadTimeout = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = src.Run(ctx, NewFragmenter(&collect{}, 0), &timeline{now: time.Now}, &feedStats{})
	if err == nil || !strings.Contains(err.Error(), "nothing received") || ctx.Err() != nil {
		t.Fatalf("Run returned %v (context: %v), want the watchdog's timeout", err, ctx.Err())
	}
}

// TestTappedCloseWhileStreaming: closing a tapped connection while its
// video streams ends Run with the cancellation, every time. (gortsplib
// stops its transport, sends TEARDOWN and only then closes the
// connection, so the tap may read frames after gortsplib's time decoder
// is gone: the session decodes with its own. With gortsplib's, this test
// did not hit that window in 10 rounds: paced reads make it narrow.)
func TestTappedCloseWhileStreaming(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	t.Parallel()
	rl := rtsptest.StartRelay(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go publishDemo(ctx, t, rl.URL("cam"), 0)
	rl.WaitPublished(t, "cam", 20*time.Second)
	src, err := NewRTSPSource(rl.URL("cam"), "tcp")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		out := &collect{}
		rctx, rcancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- src.Run(rctx, NewFragmenter(out, 0), &timeline{now: time.Now}, &feedStats{}) }()
		before := src.tapped.Load()
		deadline := time.Now().Add(20 * time.Second)
		for src.tapped.Load() < before+20 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the tap took %d packets in 20 s", i, src.tapped.Load()-before)
			}
			time.Sleep(10 * time.Millisecond)
		}
		rcancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: Run returned %v, want the cancellation", i, err)
		}
	}
}

// TestTapBodiesAsGortsplibReadsThem: the tap sizes a message's body as
// gortsplib does: none when Content-Length is repeated; and a length
// gortsplib refuses (over 128 KiB, or one that overflows an int) ends
// tapping instead of sizing it: gortsplib's reader then fails on the
// message, and nothing spins (a huge length once made the tap loop on
// the same bytes forever, and Close wait for it).
func TestTapBodiesAsGortsplibReadsThem(t *testing.T) {
	frame := interleaved(2, rtpPacket(t, 1, 300))
	for _, c := range []struct {
		name     string
		head     string
		untapped bool
	}{
		{"repeated", "RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 10\r\nContent-Length: 10\r\n\r\n", false},
		{"over 128 KiB", "RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 131073\r\n\r\n", true},
		{"overflows", "RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 9223372036854775807\r\n\r\n", true},
		{"not a length", "RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: -5\r\n\r\n", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			stream := append([]byte(c.head), frame...)
			tc, rec := tappedConn(bytes.NewReader(stream), 2)
			done := make(chan []any, 1)
			go func() {
				gc := conn.NewConn(rw{tc})
				var got []any
				for {
					what, err := gc.Read()
					if err != nil {
						done <- got
						return
					}
					got = append(got, what)
				}
			}()
			select {
			case got := <-done:
				if tc.untapped != c.untapped {
					t.Fatalf("untapped = %v, want %v", tc.untapped, c.untapped)
				}
				if !c.untapped && (len(got) != 1 || len(rec.rtp) != 1) {
					t.Fatalf("gortsplib read %d messages (want the response), the tap took %d frames (want 1)", len(got), len(rec.rtp))
				}
				if c.untapped && len(rec.rtp) != 0 {
					t.Fatalf("the tap took %d frames after giving up", len(rec.rtp))
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the reader did not return in 10 s")
			}
		})
	}
}
