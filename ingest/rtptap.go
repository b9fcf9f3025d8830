package ingest

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
)

// The RTP tap: a camera's video RTP packets taken off its RTSP/TCP
// connection before gortsplib reads them.
//
// gortsplib's client reads every interleaved frame (RFC 2326 §10.12:
// '$', channel, 16-bit big-endian length, then the RTP or RTCP packet)
// into a new buffer, decodes it into a new rtp.Packet and hands it on in
// a new slice: three allocations and one more copy of every media byte,
// per packet (BenchmarkRecorder's bare receiver: ~30 allocations a
// frame). Its reader has no option to reuse them, and its UDP path
// allocates a buffer per packet too. So, wrapping it rather than forking
// it, the connection it reads (bufferedConn, under its own 4 KiB buffer)
// takes the video's RTP frames out of the byte stream itself: each is
// parsed into one reused rtp.Packet whose payload points into the
// connection's read buffer, and depacketised into the fragment from
// there (rtpvideo.go), on gortsplib's reader goroutine (inside its Read
// call), where its own callback would have run. Everything else goes up
// to gortsplib unchanged and whole: RTSP responses and server requests
// (keepalive answers; bodies sized by Content-Length), RTCP (the video's
// sender reports reach the session through Client.OnPacketRTCP, as with
// any transport), other medias' frames.
//
// What gortsplib no longer does for the video: its packet statistics
// (over TCP it sends no receiver reports; the session does: rtcprr.go);
// its loss count (the tap counts sequence gaps itself and logs them as
// gortsplib did); its rejection of packets from a new SSRC (a camera
// whose encoder restarts goes on recording instead of stalling); and its
// read timeout, which counts the frames it sees: the tap keeps the time
// of the last byte read, and RTSPSource.Run closes a connection silent
// for its ReadTimeout. Presentation times come from gortsplib's decoder
// (rtptime.GlobalDecoder2, the session's own: the one behind
// Client.PacketPTS2 is dropped when the connection closes, while the tap
// may still be reading), which the audio's go through too, so the tracks
// stay aligned.
//
// The tap serves rtsp:// over TCP (RTSPSource's transport "tcp"); on
// rtsps:// the stream under gortsplib is TLS records, and with UDP the
// packets never cross this connection. If it meets an RTSP message
// whose head it cannot size within its buffer, it stops tapping that
// connection and hands everything up, where gortsplib's own video
// callback (still registered) takes the packets as before.
type rtpTap struct {
	// channel is the video's RTP interleaved channel (its RTCP one is
	// channel+1), set once its SETUP is answered; -1 until then. Written
	// by the client goroutine, read by the reader goroutine.
	channel atomic.Int32
	// lastRead is the time of the last byte read (unix ns): liveness.
	lastRead atomic.Int64
	// rtp receives the video's RTP packets, valid during the call only,
	// on the connection's reader goroutine.
	rtp func(pkt []byte)
}

func newRTPTap(rtp func([]byte)) *rtpTap {
	t := &rtpTap{rtp: rtp}
	t.channel.Store(-1)
	t.touch()
	return t
}

func (t *rtpTap) touch() { t.lastRead.Store(time.Now().UnixNano()) }

// idle is how long since the last byte was read.
func (t *rtpTap) idle() time.Duration {
	return time.Duration(time.Now().UnixNano() - t.lastRead.Load())
}

// tapReadBuffer holds the largest interleaved frame whole (4 + 65535
// bytes), so a tapped frame is always read in place.
const tapReadBuffer = 4 + 0xffff

// tappedRead is bufferedConn.Read with the tap: it consumes the video's
// RTP frames and returns the bytes of what gortsplib must read, never
// more than the rest of the message at hand, so every message it hands
// up starts where gortsplib expects one.
func (c *bufferedConn) tappedRead(p []byte) (int, error) {
	for {
		if c.pass > 0 || c.untapped {
			q := p
			if !c.untapped && len(q) > c.pass {
				q = q[:c.pass]
			}
			n, err := c.r.Read(q)
			if !c.untapped {
				c.pass -= n
			}
			if n > 0 {
				c.tap.touch()
			}
			return n, err
		}
		h, err := c.r.Peek(4)
		if err != nil {
			// A message cut by the end of the stream: gortsplib gets
			// what there is, then the error.
			if len(h) == 0 {
				return 0, err
			}
			c.pass = len(h)
			continue
		}
		if h[0] != '$' {
			if c.pass = c.messageSize(h); c.pass <= 0 {
				c.untapped = true // never spin on a message not sized
			}
			continue
		}
		size := 4 + int(binary.BigEndian.Uint16(h[2:]))
		video := c.tap.channel.Load()
		ch := int32(h[1])
		if ch != video {
			c.pass = size
			continue
		}
		frame, err := c.r.Peek(size)
		if err != nil {
			c.pass = len(frame) // cut by the end of the stream, as above
			continue
		}
		c.tap.touch()
		c.tap.rtp(frame[4:])
		_, _ = c.r.Discard(size) // peeked: cannot fail
	}
}

// messageSize sizes the message at the head of the buffer, which does
// not start with '$': an RTSP response or request, head and body
// (Content-Length), or a stray byte, which gortsplib skips one at a
// time (as it does, bytes that start no message it knows). A head the
// buffer cannot hold, or one whose body gortsplib refuses, ends the tap
// on this connection (0: everything goes up from here).
func (c *bufferedConn) messageSize(h []byte) int {
	if !rtspMessageStart(h) {
		return 1
	}
	n, from := max(len(h), c.r.Buffered()), 0
	for {
		b, err := c.r.Peek(n)
		if i := bytes.Index(b[from:], crlfcrlf); i >= 0 {
			head := b[:from+i+4]
			body, ok := contentLength(head)
			if !ok {
				c.untapped = true
				return 0
			}
			return len(head) + body
		}
		if err != nil {
			if len(b) == 0 {
				return 1
			}
			return len(b) // cut by the end of the stream or a read error
		}
		if n >= c.r.Size() {
			c.untapped = true
			return 0
		}
		from = max(0, len(b)-3)
		n = min(max(c.r.Buffered(), n+1), c.r.Size())
	}
}

var crlfcrlf = []byte("\r\n\r\n")

// rtspMessageStart: the first two bytes start a message gortsplib reads
// (pkg/conn: "RT" a response; the requests' first letters).
func rtspMessageStart(h []byte) bool {
	switch string(h[:2]) {
	case "RT", "AN", "DE", "GE", "OP", "PA", "PL", "RE", "SE", "TE":
		return true
	}
	return false
}

// rtspMaxBody is the largest body gortsplib reads (pkg/base).
const rtspMaxBody = 128 << 10

// contentLength is the body length of an RTSP message head, as gortsplib
// reads it (pkg/base): none unless the head has exactly one
// Content-Length; !ok when that one is not a length or is over
// rtspMaxBody (gortsplib then fails on the message: the tap hands
// everything up rather than size a body gortsplib will not read).
func contentLength(head []byte) (n int, ok bool) {
	const name = "content-length:"
	var value []byte
	count := 0
	for line := range bytes.SplitSeq(head, []byte("\r\n")) {
		if len(line) >= len(name) && bytes.EqualFold(line[:len(name)], []byte(name)) {
			value, count = bytes.TrimSpace(line[len(name):]), count+1
		}
	}
	if count != 1 {
		return 0, true
	}
	v, err := strconv.ParseUint(string(value), 10, 64)
	if err != nil || v > rtspMaxBody {
		return 0, false
	}
	return int(v), true
}

// senderClock is a stream's clock from its RTCP sender reports (RFC 3550
// §6.4.1): the wall-clock time of an RTP timestamp.
//
// gortsplib v4's Client.PacketNTP reads the NTP timestamp's fraction as
// nanoseconds where RFC 3550 §4 has it in units of 2⁻³² s (gortsplib
// issue #869, fixed in v5 only; v4's last release has it), so for a
// camera it is up to 3.3 s off, differently at each report, and the
// timeline would step at most of them. Its server side encodes the same
// way, so against a gortsplib v4 relay this reads times up to 0.77 s off,
// constant between reports (slewed, never stepped). MediaMTX since v1.15
// (gortsplib v5), ffmpeg, GStreamer, live555 and cameras encode per RFC.
type senderClock struct {
	ok   bool
	ssrc uint32
	ntp  uint64 // NTP timestamp: seconds since 1900 . 32-bit fraction
	rtp  uint32
}

// report takes a sender report.
func (s *senderClock) report(sr *rtcp.SenderReport) {
	s.ok, s.ssrc, s.ntp, s.rtp = true, sr.SSRC, sr.NTPTime, sr.RTPTime
}

// ntpEpochOffset is 1900-01-01 to 1970-01-01 in seconds.
const ntpEpochOffset = 2208988800

// at is the wall-clock time of RTP timestamp ts of ssrc (clock rate
// rate), from the last sender report of that stream.
func (s *senderClock) at(ssrc, ts uint32, rate int) (time.Time, bool) {
	if !s.ok || s.ssrc != ssrc || rate <= 0 {
		return time.Time{}, false
	}
	secs := int64(s.ntp>>32) - ntpEpochOffset
	frac := int64((s.ntp & 0xffffffff) * 1e9 >> 32)
	d := time.Duration(int32(ts-s.rtp)) * time.Second / time.Duration(rate)
	return time.Unix(secs, frac).Add(d), true
}
