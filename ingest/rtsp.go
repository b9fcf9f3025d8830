package ingest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/headers"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
	"github.com/bluenviron/gortsplib/v4/pkg/rtptime"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// RTSPSource pulls a camera over RTSP (or RTSPS) with gortsplib: H.264 or
// H.265 video and, when the camera offers it, one AAC, G.711 or Opus audio
// track. Basic and digest authentication come from the URL's user info.
type RTSPSource struct {
	url      string
	redacted string
	// transport is the configured one; nil (auto): TCP, or, once the
	// camera refused it (tcpRefused), gortsplib's choice (UDP, falling
	// back to TCP).
	transport  *gortsplib.Transport
	tcpRefused atomic.Bool
	// InsecureTLS accepts any certificate on rtsps:// (cameras mostly
	// present self-signed ones).
	InsecureTLS bool
	// ReadTimeout is how long without packets (with the RTP tap, without
	// any byte) before the connection fails, and how long a request may
	// wait for its answer. Default 10 s.
	ReadTimeout time.Duration

	// tapped counts the video RTP packets the tap took (rtptap.go), and
	// reports the RTCP sender reports taken (the camera's clock).
	tapped, reports atomic.Uint64
	// rrPeriod is the period of the video's receiver reports over TCP
	// (rtcprr.go); 0: receiverReportPeriod. Tests shorten it.
	rrPeriod time.Duration
}

const defaultRTSPReadTimeout = 10 * time.Second

// tapClientTimeout is gortsplib's read timeout on a tapped connection:
// never, in practice; rtspSession.watch enforces ReadTimeout.
const tapClientTimeout = 24 * time.Hour

// NewRTSPSource checks the URL; transport is "auto", "tcp" or "udp".
func NewRTSPSource(rawURL, transport string) (*RTSPSource, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "rtsp" && u.Scheme != "rtsps") || u.Host == "" {
		return nil, fmt.Errorf("%q is not an rtsp:// or rtsps:// URL", Redact(rawURL))
	}
	s := &RTSPSource{url: rawURL, redacted: Redact(rawURL)}
	switch transport {
	case "", "auto":
	case "tcp":
		t := gortsplib.TransportTCP
		s.transport = &t
	case "udp":
		t := gortsplib.TransportUDP
		s.transport = &t
	default:
		return nil, fmt.Errorf("transport %q is not auto, tcp or udp", transport)
	}
	return s, nil
}

// Redact removes the password from a URL for logs and state.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	return u.String()
}

// Describe implements Source.
func (s *RTSPSource) Describe() string { return s.redacted }

// rtspSession is one connection's state, shared by gortsplib's packet
// callbacks (one goroutine per media) under mu.
type rtspSession struct {
	mu     sync.Mutex
	fr     *Fragmenter
	tl     *timeline
	st     *feedStats
	err    error
	client *gortsplib.Client
	log    *slog.Logger
	tap    *rtpTap     // nil: gortsplib reads the video (rtptap.go)
	tv     tappedVideo // the tap's video state
	// over TCP (reportRX), the video's reception, reported to the
	// camera (rtcprr.go)
	reportRX        bool
	rx              receptionStats
	videoMedia      *description.Media
	tapped, reports *atomic.Uint64
	// the camera's clocks, from the medias' RTCP sender reports
	videoClock, audioClock senderClock
	// times decodes the tracks' RTP timestamps into presentation times,
	// aligned across tracks: gortsplib's decoder, but the session's own,
	// since gortsplib's Client.PacketPTS2 uses one it drops (nil) when
	// the connection closes, while the tap may still be reading.
	times rtptime.GlobalDecoder2

	tracks  []mkv.TrackSpec
	vd      *videoDepacketizer // the video track's, nil without video
	videoTI int
	audioTI int
	h265    bool
	// parameter sets in effect (from the SDP, then in band)
	vps, sps, pps []byte
	haveParams    bool
}

func (r *rtspSession) fail(err error) {
	if r.err == nil {
		r.err = err
		go r.client.Close()
	}
}

// Run implements Source.
//
// With transport auto, it asks for RTP over TCP first, as Moonfire NVR
// and Frigate do: nothing is lost on a busy network, the connection reads
// on the box-wide pace (readpace.go), one read a tick instead of one per
// UDP packet, and the RTP tap (rtptap.go) serves it. A camera that
// refuses TCP (461 Unsupported Transport, or an answer with UDP) is asked
// again at once, as gortsplib's auto does (UDP, falling back to TCP),
// and from then on for this source.
func (s *RTSPSource) Run(ctx context.Context, fr *Fragmenter, tl *timeline, st *feedStats) error {
	log := st.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if s.transport != nil || s.tcpRefused.Load() {
		return s.run(ctx, fr, tl, st, log, s.transport)
	}
	tcp := gortsplib.TransportTCP
	err := s.run(ctx, fr, tl, st, log, &tcp)
	if !refusedTCP(err) {
		return err
	}
	s.tcpRefused.Store(true)
	log.Info("rtsp: the camera refuses RTP over TCP: asking for UDP", "reason", err)
	return s.run(ctx, fr, tl, st, log, nil)
}

// refusedTCP: err is a camera's refusal of RTP over TCP at SETUP.
func refusedTCP(err error) bool {
	var code liberrors.ErrClientBadStatusCode
	return errors.As(err, &code) && code.Code == base.StatusUnsupportedTransport ||
		errors.As(err, new(liberrors.ErrClientServerRequestedUDP))
}

// run is one connection with transport (nil: gortsplib's auto).
func (s *RTSPSource) run(ctx context.Context, fr *Fragmenter, tl *timeline, st *feedStats, log *slog.Logger, transport *gortsplib.Transport) error {
	u, err := base.ParseURL(s.url)
	if err != nil {
		return fmt.Errorf("rtsp: %w", err)
	}
	readTimeout := s.ReadTimeout
	if readTimeout <= 0 {
		readTimeout = defaultRTSPReadTimeout
	}
	r := &rtspSession{fr: fr, tl: tl, st: st, log: log, videoTI: -1, audioTI: -1, tapped: &s.tapped, reports: &s.reports}
	rrPeriod := s.rrPeriod
	if rrPeriod <= 0 {
		rrPeriod = receiverReportPeriod
	}
	// gortsplib reports only over UDP: over TCP the session does.
	r.reportRX = transport != nil && *transport == gortsplib.TransportTCP
	r.times.Initialize()
	c := &gortsplib.Client{
		Scheme:      u.Scheme,
		Host:        u.Host,
		Transport:   transport,
		ReadTimeout: readTimeout,
		// gortsplib reports through these instead of its default log.Printf.
		OnTransportSwitch: func(err error) { log.Info("rtsp: switching transport", "reason", err) },
		OnPacketsLost:     func(lost uint64) { log.Debug("rtsp: packets lost", "count", lost) },
		OnDecodeError:     func(err error) { log.Debug("rtsp: decode error", "err", err) },
	}
	watched := fr.liveWatched()
	c.DialContext = func(ctx context.Context, network, address string) (net.Conn, error) {
		return dialBuffered(ctx, network, address, watched)
	}
	r.client = c
	if u.Scheme == "rtsp" && transport != nil && *transport == gortsplib.TransportTCP {
		// The video's RTP is read by the tap (rtptap.go), so gortsplib's
		// timeout, which counts the frames it sees, would close a
		// connection whose video flows; the tap's watchdog below counts
		// every byte instead, and bounds the requests' answers too.
		r.tap = newRTPTap(r.tapRTP)
		c.DialContext = func(ctx context.Context, network, address string) (net.Conn, error) {
			return dialTapped(ctx, network, address, r.tap, watched)
		}
		c.ReadTimeout = tapClientTimeout
	}
	if s.InsecureTLS {
		c.TLSConfig = &tls.Config{InsecureSkipVerify: true}
	}
	if err := c.Start2(); err != nil {
		return fmt.Errorf("rtsp: connecting: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()
	if r.reportRX {
		done := make(chan struct{})
		defer close(done)
		go r.watch(readTimeout, rrPeriod, done)
	}
	desc, _, err := c.Describe(u)
	if err != nil {
		if r.timedOut() {
			return r.err
		}
		return fmt.Errorf("rtsp: DESCRIBE: %w", err)
	}
	if err := r.setup(c, desc); err != nil {
		if r.timedOut() {
			return r.err
		}
		return err
	}
	if _, err := c.Play(nil); err != nil {
		if r.timedOut() {
			return r.err
		}
		return fmt.Errorf("rtsp: PLAY: %w", err)
	}
	werr := c.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("rtsp: %w", werr)
}

// rtspReadBuffer is the read buffer under gortsplib's own (4 KiB) on an
// RTSP connection: one read system call takes what the camera sent since
// the last (a frame's RTP packets come in a burst) instead of one call
// per 4 KiB. Its bytes are copied once more, in cache, which costs less
// than the calls it saves (BenchmarkRecorder's reads/frame).
const rtspReadBuffer = 64 << 10

// dialBuffered dials an RTSP connection whose reads go through a
// rtspReadBuffer buffer, filled by paced reads (readpace.go: on the
// slow clock while watched, if not nil, says no live viewer and the
// camera sends little enough; TLS, on rtsps://, is layered above both).
func dialBuffered(ctx context.Context, network, address string, watched func() bool) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &bufferedConn{Conn: c, r: bufio.NewReaderSize(newPacedConn(c, readPacer, unwatchedPacer(), watched), rtspReadBuffer)}, nil
}

// dialTapped is dialBuffered with tap taking the video's RTP frames out
// of what gortsplib reads, from a buffer that holds the largest frame.
func dialTapped(ctx context.Context, network, address string, tap *rtpTap, watched func() bool) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	tap.touch()
	return &bufferedConn{Conn: c, r: bufio.NewReaderSize(newPacedConn(c, readPacer, unwatchedPacer(), watched), tapReadBuffer), tap: tap}, nil
}

// bufferedConn is a net.Conn whose reads are buffered, and tapped if tap
// is set (rtptap.go); everything else (writes, deadlines, addresses,
// Close) is the connection's own.
type bufferedConn struct {
	net.Conn
	r   *bufio.Reader
	tap *rtpTap
	// pass is how many bytes of the message at hand gortsplib has still
	// to read; untapped: the tap gave up on this connection.
	pass     int
	untapped bool
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if c.tap == nil {
		return c.r.Read(p)
	}
	return c.tappedRead(p)
}

// setup picks the video and audio medias, builds their tracks and sets up
// the decoders.
func (r *rtspSession) setup(c *gortsplib.Client, desc *description.Session) error {
	var (
		h264f *format.H264
		h265f *format.H265
		aacf  *format.MPEG4Audio
		g711f *format.G711
		opusf *format.Opus
	)
	vm := desc.FindFormat(&h264f)
	if vm == nil {
		vm = desc.FindFormat(&h265f)
	}
	am := desc.FindFormat(&aacf)
	if am == nil {
		am = desc.FindFormat(&g711f)
	}
	if am == nil {
		am = desc.FindFormat(&opusf)
	}
	if vm == nil && am == nil {
		return errors.New("rtsp: the camera offers no H.264, H.265, AAC, G.711 or Opus track")
	}
	videoChannel := -1
	if vm != nil {
		r.videoMedia = vm
		res, err := c.Setup(desc.BaseURL, vm, 0, 0)
		if err != nil {
			return fmt.Errorf("rtsp: SETUP video: %w", err)
		}
		var th headers.Transport
		if r.tap != nil && th.Unmarshal(res.Header["Transport"]) == nil &&
			th.Protocol == headers.TransportProtocolTCP && !th.Secure && th.InterleavedIDs != nil {
			videoChannel = th.InterleavedIDs[0]
		}
		r.videoTI = len(r.tracks)
		spec := mkv.TrackSpec{Number: uint64(len(r.tracks) + 1), Type: mkv.TrackVideo, Name: "video"}
		if h264f != nil {
			spec.CodecID = mkv.CodecH264
			r.sps, r.pps = h264f.SafeParams()
			if err := r.onVideo(c, vm, h264f, h264f.ClockRate()); err != nil {
				return err
			}
		} else {
			r.h265 = true
			spec.CodecID = mkv.CodecH265
			r.vps, r.sps, r.pps = h265f.SafeParams()
			if err := r.onVideo(c, vm, h265f, h265f.ClockRate()); err != nil {
				return err
			}
		}
		r.tracks = append(r.tracks, spec)
	}
	if am != nil {
		if _, err := c.Setup(desc.BaseURL, am, 0, 0); err != nil {
			return fmt.Errorf("rtsp: SETUP audio: %w", err)
		}
		r.audioTI = len(r.tracks)
		spec := mkv.TrackSpec{Number: uint64(len(r.tracks) + 1), Type: mkv.TrackAudio, Name: "audio"}
		switch {
		case aacf != nil:
			if aacf.Config == nil {
				return errors.New("rtsp: AAC track without its AudioSpecificConfig")
			}
			cp, err := aacf.Config.Marshal()
			if err != nil {
				return fmt.Errorf("rtsp: AAC config: %w", err)
			}
			spec.CodecID, spec.CodecPrivate = mkv.CodecAAC, cp
			spec.SampleRate, spec.Channels = float64(aacf.Config.SampleRate), aacf.Config.ChannelCount
			dec, err := aacf.CreateDecoder()
			if err != nil {
				return err
			}
			rate := aacf.ClockRate()
			c.OnPacketRTP(am, aacf, func(pkt *rtp.Packet) {
				aus, err := dec.Decode(pkt)
				if err != nil {
					return
				}
				for i, au := range aus {
					r.audio(aacf, pkt, rate, int64(i*1024), au)
				}
			})
		case g711f != nil:
			spec.CodecID = mkv.CodecPCMA
			spec.CodecPrivate = waveFormatEx(g711f.MULaw, g711f.SampleRate, g711f.ChannelCount)
			spec.SampleRate, spec.Channels = float64(g711f.SampleRate), g711f.ChannelCount
			dec, err := g711f.CreateDecoder()
			if err != nil {
				return err
			}
			rate := g711f.ClockRate()
			c.OnPacketRTP(am, g711f, func(pkt *rtp.Packet) {
				samples, err := dec.Decode(pkt)
				if err == nil {
					r.audio(g711f, pkt, rate, 0, samples)
				}
			})
		default:
			spec.CodecID, spec.CodecPrivate = mkv.CodecOpus, opusHead(opusf.ChannelCount)
			spec.SampleRate, spec.Channels = 48000, opusf.ChannelCount
			dec, err := opusf.CreateDecoder()
			if err != nil {
				return err
			}
			rate := opusf.ClockRate()
			c.OnPacketRTP(am, opusf, func(pkt *rtp.Packet) {
				frame, err := dec.Decode(pkt)
				if err == nil {
					r.audio(opusf, pkt, rate, 0, frame)
				}
			})
		}
		r.onSenderReports(c, am, &r.audioClock, nil)
		r.tracks = append(r.tracks, spec)
	}
	if r.videoTI < 0 {
		return r.fr.SetTracks(r.tracks)
	}
	if err := r.applyParams(); err != nil && !errors.Is(err, errNoParams) {
		return err
	}
	if videoChannel >= 0 {
		r.tap.channel.Store(int32(videoChannel)) // after r.tv and r.vd are set
	}
	return nil
}

func (r *rtspSession) onVideo(c *gortsplib.Client, m *description.Media, f format.Format, rate int) error {
	// The formats gortsplib's own decoders refuse.
	switch f := f.(type) {
	case *format.H264:
		if f.PacketizationMode >= 2 {
			return errors.New("rtsp: video decoder: H.264 packetization mode 2 is not supported")
		}
	case *format.H265:
		if f.MaxDONDiff != 0 {
			return errors.New("rtsp: video decoder: H.265 with decoding order numbers (sprop-max-don-diff) is not supported")
		}
	}
	r.vd = &videoDepacketizer{s: r, h265: r.h265}
	r.tv = tappedVideo{f: f, pt: f.PayloadType(), rate: rate}
	// The packets the tap does not take (rtsps://, UDP, a connection it
	// gave up on) come this way.
	c.OnPacketRTP(m, f, func(pkt *rtp.Packet) {
		pts, ok := r.times.Decode(f, pkt)
		r.video(pkt, ptsDuration(pts, rate), ok, rate)
	})
	for _, other := range m.Formats {
		if other == f {
			continue
		}
		// The source's packets of the media's other payload types count
		// in its receiver reports, as on the tap (else they read as lost).
		c.OnPacketRTP(m, other, func(pkt *rtp.Packet) {
			r.mu.Lock()
			if r.reportRX {
				r.rx.packetOther(pkt.SSRC, pkt.SequenceNumber)
			}
			r.mu.Unlock()
		})
	}
	r.onSenderReports(c, m, &r.videoClock, &r.rx)
	return nil
}

// onSenderReports keeps clock, and rx if not nil, from the sender
// reports of m's RTCP.
func (r *rtspSession) onSenderReports(c *gortsplib.Client, m *description.Media, clock *senderClock, rx *receptionStats) {
	c.OnPacketRTCP(m, func(p rtcp.Packet) {
		if sr, ok := p.(*rtcp.SenderReport); ok {
			r.mu.Lock()
			clock.report(sr)
			if rx != nil {
				rx.senderReport(sr, time.Now())
			}
			r.mu.Unlock()
			r.reports.Add(1)
		}
	})
}

// video hands one video RTP packet to the depacketizer.
func (r *rtspSession) video(pkt *rtp.Packet, pts time.Duration, ptsOK bool, rate int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reportRX { // rtsps://, or a connection the tap gave up on
		r.rx.packet(pkt.SSRC, pkt.SequenceNumber)
	}
	r.videoLocked(pkt, pts, ptsOK, rate)
}

// videoLocked is video with r.mu held.
func (r *rtspSession) videoLocked(pkt *rtp.Packet, pts time.Duration, ptsOK bool, rate int) {
	if r.err != nil {
		return
	}
	ntp, haveNTP := r.videoClock.at(pkt.SSRC, pkt.Timestamp, rate)
	if err := r.vd.packet(pkt, pts, ptsOK, ntp, haveNTP); err != nil {
		r.fail(err)
	}
}

// tappedVideo is the video's state on the tap's side, touched by the
// connection's reader goroutine only.
type tappedVideo struct {
	f     format.Format
	pt    uint8
	rate  int
	pkt   rtp.Packet // reused: its payload points into the read buffer
	seq   uint16     // the next sequence number expected
	seqOK bool
}

// tapRTP takes one video RTP packet from the tap (rtptap.go): what
// gortsplib's reader and the callback above did, allocating nothing.
func (r *rtspSession) tapRTP(b []byte) {
	v := &r.tv
	if err := v.pkt.Unmarshal(b); err != nil {
		r.log.Debug("rtsp: decode error", "err", err)
		return
	}
	if v.pkt.PayloadType != v.pt {
		r.mu.Lock()
		r.rx.packetOther(v.pkt.SSRC, v.pkt.SequenceNumber)
		r.mu.Unlock()
		r.log.Debug("rtsp: RTP packet of an unknown payload type", "type", v.pkt.PayloadType)
		return
	}
	if v.seqOK && v.pkt.SequenceNumber != v.seq {
		r.log.Debug("rtsp: packets lost", "count", v.pkt.SequenceNumber-v.seq)
	}
	v.seq, v.seqOK = v.pkt.SequenceNumber+1, true
	r.tapped.Add(1)
	pts, ok := r.times.Decode(v.f, &v.pkt)
	r.mu.Lock()
	r.rx.packet(v.pkt.SSRC, v.pkt.SequenceNumber)
	r.videoLocked(&v.pkt, ptsDuration(pts, v.rate), ok, v.rate)
	r.mu.Unlock()
}

// watch runs beside a connection over TCP until done: it closes a
// tapped connection silent for timeout (gortsplib's own timeout is off:
// it sees no video frames) and sends the video's receiver reports every
// rrPeriod (rtcprr.go).
func (r *rtspSession) watch(timeout, rrPeriod time.Duration, done <-chan struct{}) {
	t := alignedTicker(min(timeout/4, rrPeriod, time.Second), done)
	if t == nil {
		return
	}
	defer t.Stop()
	rep := newReceiverReport()
	var lastReport time.Time
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			if r.tap != nil {
				if d := r.tap.idle(); d >= timeout {
					r.mu.Lock()
					r.fail(fmt.Errorf("rtsp: nothing received for %s", d.Round(100*time.Millisecond)))
					r.mu.Unlock()
					return
				}
			}
			if now.Sub(lastReport) >= rrPeriod-rrPeriod/8 { // a tick may come early
				lastReport = now
				r.receiverReport(rep)
			}
		}
	}
}

// receiverReport sends rep with the video's report block (none when no
// packet came since the last), once a video packet was counted.
func (r *rtspSession) receiverReport(rep *receiverReport) {
	r.mu.Lock()
	if !r.rx.started {
		// No video packet yet: the video may not be set up, or may not
		// exist (a camera of audio alone).
		r.mu.Unlock()
		return
	}
	block, ok := r.rx.report(time.Now())
	r.mu.Unlock()
	// A packet was counted, so PLAY was answered: the video is set up.
	if err := r.client.WritePacketRTCP(r.videoMedia, rep.with(block, ok)); err != nil {
		r.log.Debug("rtsp: sending a receiver report", "err", err)
	}
}

// timedOut reports whether the session failed (the watchdog closed it):
// then r.err says why.
func (r *rtspSession) timedOut() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err != nil
}

// ptsDuration converts a presentation time in clock-rate units without
// overflowing on long connections (pts·10⁹ overflows int64 after ~28 h at
// 90 kHz).
func ptsDuration(pts int64, rate int) time.Duration {
	r := int64(rate)
	return time.Duration(pts/r)*time.Second + time.Duration(pts%r)*time.Second/time.Duration(r)
}

var errNoParams = errors.New("parameter sets not known yet")

// applyParams (re)builds the video track from the parameter sets in
// effect; a change of SPS/PPS or resolution gives a new header.
func (r *rtspSession) applyParams() error {
	spec := &r.tracks[r.videoTI]
	var cp []byte
	var err error
	if r.h265 {
		if r.vps == nil || r.sps == nil || r.pps == nil {
			return errNoParams
		}
		var sps h265.SPS
		if err := sps.Unmarshal(r.sps); err != nil {
			return fmt.Errorf("rtsp: H.265 SPS does not parse: %w", err)
		}
		spec.Width, spec.Height = sps.Width(), sps.Height()
		cp, err = h265CodecPrivate(r.vps, r.sps, r.pps)
	} else {
		if r.sps == nil || r.pps == nil {
			return errNoParams
		}
		var sps h264.SPS
		if err := sps.Unmarshal(r.sps); err != nil {
			return fmt.Errorf("rtsp: H.264 SPS does not parse: %w", err)
		}
		spec.Width, spec.Height = sps.Width(), sps.Height()
		cp, err = h264CodecPrivate(r.sps, r.pps)
	}
	if err != nil {
		return fmt.Errorf("rtsp: %w", err)
	}
	spec.CodecPrivate = cp
	r.haveParams = true
	return r.fr.SetTracks(r.tracks)
}

// audio handles one audio frame of track f, offset samples after the
// packet's time.
func (r *rtspSession) audio(f rtptime.GlobalDecoder2Track, pkt *rtp.Packet, rate int, offset int64, frame []byte) {
	pts, ok := r.times.Decode(f, pkt)
	if !ok || len(frame) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return
	}
	ntp, haveNTP := r.audioClock.at(pkt.SSRC, pkt.Timestamp, rate)
	if err := r.audioAt(ptsDuration(pts+offset, rate), ntp, haveNTP, frame); err != nil {
		r.fail(err)
	}
}

// audioAt writes one audio frame at pts. REQUIRES: r.mu.
func (r *rtspSession) audioAt(pts time.Duration, ntp time.Time, haveNTP bool, frame []byte) error {
	if r.videoTI >= 0 && !r.haveParams {
		return nil
	}
	ms := r.tl.ms(pts, ntp, haveNTP, false)
	r.st.frame(false, len(frame))
	if r.vd != nil {
		return r.vd.audio(r.audioTI, ms, frame) // after an open video block
	}
	return r.fr.WriteAudio(r.audioTI, ms, frame)
}
