package ingest

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/rtcpreceiver"
	"github.com/kvsedge/kvsedge/internal/rtsptest"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// TestReceptionStatsReportsAsRFC3550: the counts of a receiver report
// (RFC 3550 §6.4.1, appendix A.1 and A.3) across a sequence number wrap,
// a lost packet, a duplicate, a stray jump, a restarted sequence, a new
// SSRC and sender reports.
func TestReceptionStatsReportsAsRFC3550(t *testing.T) {
	var s receptionStats
	t0 := time.Unix(1_800_000_000, 0)
	if _, ok := s.report(t0); ok {
		t.Fatal("a report before any packet")
	}
	// A sender report before the first packet: kept for its source.
	s.senderReport(&rtcp.SenderReport{SSRC: 7, NTPTime: 0x0102030405060708}, t0)
	// 65530 … 65535, 0 … 5 without 2: one lost across the wrap.
	for seq := uint16(65530); seq != 6; seq++ {
		if seq != 2 {
			s.packet(7, seq)
		}
	}
	r, ok := s.report(t0.Add(time.Second))
	if !ok || r.SSRC != 7 || r.LastSequenceNumber != 1<<16+5 || r.TotalLost != 1 || r.FractionLost != 256/12 ||
		r.LastSenderReport != 0x03040506 || r.Delay != 65536 || r.Jitter != 0 {
		t.Fatalf("after a wrap and a loss: %+v", r)
	}
	// No packet since the last report: no report block (§6.4).
	if r, ok := s.report(t0); ok {
		t.Fatalf("a report block with nothing heard since the last: %+v", r)
	}
	// The next interval loses nothing.
	s.packet(7, 6)
	s.packet(7, 7)
	s.senderReport(&rtcp.SenderReport{SSRC: 7, NTPTime: 0x1122334455667788}, t0)
	s.senderReport(&rtcp.SenderReport{SSRC: 8, NTPTime: 0xffffffffffffffff}, t0) // another source's
	r, _ = s.report(t0.Add(1500 * time.Millisecond))
	if r.LastSequenceNumber != 1<<16+7 || r.TotalLost != 1 || r.FractionLost != 0 {
		t.Fatalf("after a clean interval: %+v", r)
	}
	if r.LastSenderReport != 0x33445566 || r.Delay != 98304 { // 1.5 s in 1/65536 s
		t.Fatalf("LSR %#x, DLSR %d", r.LastSenderReport, r.Delay)
	}
	// A stray packet far ahead is ignored; a duplicate counts as
	// received (A.3: expected - received, which it offsets).
	s.packet(7, 30000)
	s.packet(7, 8)
	if r, _ = s.report(t0); r.LastSequenceNumber != 1<<16+8 || r.TotalLost != 1 {
		t.Fatalf("after a stray packet: %+v", r)
	}
	s.packet(7, 8)
	if r, _ = s.report(t0); r.LastSequenceNumber != 1<<16+8 || r.TotalLost != 0 || r.FractionLost != 0 {
		t.Fatalf("after a duplicate: %+v", r)
	}
	// ... two in sequence are the sender's new sequence: counted afresh,
	// with the source's sender report kept.
	s.packet(7, 40000)
	s.packet(7, 40001)
	s.packet(7, 40002)
	if r, _ = s.report(t0.Add(time.Second)); r.LastSequenceNumber != 40002 || r.TotalLost != 0 || r.FractionLost != 0 ||
		r.LastSenderReport != 0x33445566 || r.Delay != 65536 {
		t.Fatalf("after a restarted sequence: %+v", r)
	}
	// A new SSRC is a new source: its own counts, no sender report.
	s.packet(9, 100)
	s.packet(9, 102)
	if r, _ = s.report(t0); r.SSRC != 9 || r.LastSequenceNumber != 102 || r.TotalLost != 1 || r.FractionLost != 256/3 ||
		r.LastSenderReport != 0 {
		t.Fatalf("after a new SSRC: %+v", r)
	}
	// A delay beyond 32 bits of 1/65536 s saturates.
	s.senderReport(&rtcp.SenderReport{SSRC: 9, NTPTime: 1 << 16}, t0)
	s.packet(9, 103)
	if r, _ = s.report(t0.Add(24 * time.Hour)); r.LastSenderReport != 1 || r.Delay != 1<<32-1 {
		t.Fatalf("a day after the sender report: %+v", r)
	}
	if n := testing.AllocsPerRun(1000, func() { s.packet(9, 104) }); n != 0 {
		t.Fatalf("counting a packet allocates %v", n)
	}
}

// TestReceptionStatsClampsCumulativeLost: more than 2²³−1 lost reads as
// 2²³−1 (RFC 3550 A.3), not as a negative 24-bit number.
func TestReceptionStatsClampsCumulativeLost(t *testing.T) {
	var s receptionStats
	seq := uint16(0)
	s.packet(1, seq)
	for range 2900 { // 2900 jumps of 2998 lost: 8,694,200 > 8,388,607
		seq += 2999
		s.packet(1, seq)
	}
	r, _ := s.report(time.Unix(0, 0))
	if r.TotalLost != 0x7fffff || r.FractionLost != 255 {
		t.Fatalf("%+v", r)
	}
	b, err := (&receiverReport{cname: "x"}).with(r, true).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rtcp.Unmarshal(b); err != nil || got[0].(*rtcp.ReceiverReport).Reports[0].TotalLost != 0x7fffff {
		t.Fatalf("%v, %v", got, err)
	}
}

// TestTapCountsOnlyTheVideosSource: another SSRC on the video's channel
// (retransmissions, forward error correction: another payload type)
// neither resets the source's counts nor takes its place; the source's
// own packets of another payload type count.
func TestTapCountsOnlyTheVideosSource(t *testing.T) {
	r := &rtspSession{log: slog.New(slog.DiscardHandler), tapped: new(atomic.Uint64), reports: new(atomic.Uint64),
		err: errors.New("depacketizer off"), reportRX: true}
	r.times.Initialize()
	r.tv = tappedVideo{f: &format.H264{PayloadTyp: 96, PacketizationMode: 1}, pt: 96, rate: 90000}
	pkt := func(pt uint8, ssrc uint32, seq uint16) []byte {
		b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, SSRC: ssrc}, Payload: []byte{1}}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	r.tapRTP(pkt(97, 0xB, 4000)) // before the source: not it
	r.tapRTP(pkt(96, 0xA, 1000))
	r.rx.senderReport(&rtcp.SenderReport{SSRC: 0xA, NTPTime: 0x1122334455667788}, time.Now())
	seq := uint16(1001)
	for i := range 100 {
		pt := uint8(96)
		if i%7 == 0 {
			pt = 98 // the source's own, another payload type
		}
		r.tapRTP(pkt(pt, 0xA, seq))
		seq++
		if i%10 == 0 {
			r.tapRTP(pkt(97, 0xB, uint16(5000+i)))
		}
	}
	b, ok := r.rx.report(time.Now())
	if !ok || b.SSRC != 0xA || b.LastSequenceNumber != uint32(seq-1) || b.TotalLost != 0 || b.LastSenderReport != 0x33445566 {
		t.Fatalf("report of the video's source: %+v", b)
	}
}

// TestNoReportsOfOursOverUDP: over UDP (auto after the camera refused
// TCP, and "udp") gortsplib reports, and the session does not.
func TestNoReportsOfOursOverUDP(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	t.Parallel()
	for _, tr := range []string{"auto", "udp"} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			rl := rtsptest.StartRelayUDP(t)
			rl.RefuseTCP()
			rec := recordOnRelay(t, rl)
			start := time.Now()
			rec.record(t, "cam", rl.URL("cam"), func(c *CameraConfig) {
				s, err := NewRTSPSource(rl.URL("cam"), tr)
				if err != nil {
					t.Fatal(err)
				}
				s.rrPeriod = 200 * time.Millisecond
				c.Source = s
			})
			waitFragments(t, rec, "cam", 1, 20*time.Second)
			time.Sleep(2 * time.Second) // ten of our periods
			rrs := rl.ReceiverReports("cam")
			ssrcs := map[uint32]int{}
			for _, rr := range rrs {
				ssrcs[rr.SSRC]++
			}
			// gortsplib's, one SSRC every 5 s; ours would be another SSRC,
			// and every 200 ms.
			if limit := 1 + int(time.Since(start)/(4*time.Second)); len(ssrcs) > 1 || len(rrs) > limit {
				t.Fatalf("%d receiver reports over UDP in %v, from SSRCs %v", len(rrs), time.Since(start), ssrcs)
			}
		})
	}
}

// recordOnRelay publishes the demo clip on rl's path "cam" until the
// test ends, and returns a recorder (closed when the test ends) for
// the test to record it.
func recordOnRelay(t *testing.T, rl *rtsptest.Relay) *recorder {
	ctx, cancel := context.WithCancel(context.Background())
	sentc := make(chan int, 1)
	go func() { sentc <- publishDemo(ctx, t, rl.URL("cam"), 0) }()
	t.Cleanup(func() { cancel(); <-sentc })
	rl.WaitPublished(t, "cam", 20*time.Second)
	rec := newRecorder(t)
	t.Cleanup(rec.cams.Close)
	return rec
}

// TestAudioOnlyCameraOverTCP: a camera of audio alone records over TCP,
// and the session reports no video it does not have (gortsplib would
// dereference the missing media).
func TestAudioOnlyCameraOverTCP(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	t.Parallel()
	rl := rtsptest.StartRelay(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f := &format.G711{PayloadTyp: 0, MULaw: true, SampleRate: 8000, ChannelCount: 1}
		desc := &description.Session{Medias: []*description.Media{{Type: description.MediaTypeAudio, Formats: []format.Format{f}}}}
		tcp := gortsplib.TransportTCP
		c := gortsplib.Client{Transport: &tcp}
		if err := c.StartRecording(rl.URL("cam"), desc); err != nil {
			t.Errorf("publisher: %v", err)
			return
		}
		defer c.Close()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(i), Timestamp: uint32(i * 160)},
				Payload: make([]byte, 160)}
			if c.WritePacketRTP(desc.Medias[0], p) != nil {
				return
			}
		}
	}()
	defer func() { cancel(); <-done }()
	rl.WaitPublished(t, "cam", 20*time.Second)
	rec := newRecorder(t)
	defer rec.cams.Close()
	rec.record(t, "cam", rl.URL("cam"), func(c *CameraConfig) { c.Source.(*RTSPSource).rrPeriod = 200 * time.Millisecond })
	waitFragments(t, rec, "cam", 1, 20*time.Second)
	time.Sleep(time.Second) // five of the periods
	if st := rec.state("cam"); st.State != StateRecording || st.Reconnects > 0 {
		t.Fatalf("%+v", st)
	}
	if n := len(rl.ReceiverReports("cam")); n != 0 {
		t.Fatalf("%d receiver reports for a camera without video", n)
	}
}

// TestReceptionStatsTakesLatePackets: a packet that comes after a later
// one (within RFC 3550 A.1's misorder bound) fills its gap: nothing is
// lost.
func TestReceptionStatsTakesLatePackets(t *testing.T) {
	var s receptionStats
	s.packet(1, 1000)
	s.packet(1, 1002)
	s.packet(1, 1001) // late
	if r, _ := s.report(time.Unix(0, 0)); r.LastSequenceNumber != 1002 || r.TotalLost != 0 || r.FractionLost != 0 {
		t.Fatalf("%+v", r)
	}
	s.packet(1, 1003)
	s.packet(1, 1003-maxMisorder+1) // late by less than the bound: counted
	s.packet(1, 1003-maxMisorder)   // back by the bound: a stray, ignored
	if r, _ := s.report(time.Unix(0, 0)); r.LastSequenceNumber != 1003 || r.TotalLost != 0 || r.FractionLost != 0 {
		t.Fatalf("%+v", r)
	}
	want := receptionStats{started: true, ssrc: 1, base: 1000, max: 1003, received: 5, badSeq: 1003 - maxMisorder + 1,
		expectedPrior: 4, receivedPrior: 5}
	if s != want {
		t.Fatalf("%+v, want %+v", s, want)
	}
}

// TestReceiverReportEncodesAsPion: the session's compound packet is
// byte for byte pion's encoding of the same Receiver Report and SDES
// CNAME, with a block and without, in one allocation.
func TestReceiverReportEncodesAsPion(t *testing.T) {
	rep := newReceiverReport()
	block := rtcp.ReceptionReport{SSRC: 0xdeadbeef, FractionLost: 21, TotalLost: 0x7fffff, LastSequenceNumber: 1<<16 + 5,
		LastSenderReport: 0x33445566, Delay: 98304}
	cnames := []string{rep.cname, "a", "ab", "abc", "abcd", "abcde"} // every padding
	for i := range 2 * len(cnames) {
		ok := i%2 == 0
		rep.cname = cnames[i/2]
		got, err := rep.with(block, ok).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		want := &rtcp.ReceiverReport{SSRC: rep.ssrc}
		if ok {
			want.Reports = []rtcp.ReceptionReport{block}
		}
		sdes := &rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: rep.ssrc,
			Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: rep.cname}}}}}
		pion, err := rtcp.CompoundPacket{want, sdes}.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, pion) || rep.MarshalSize() != len(pion) {
			t.Fatalf("block %v, CNAME %q: %x (size %d), pion %x", ok, rep.cname, got, rep.MarshalSize(), pion)
		}
		pkts, err := rtcp.Unmarshal(got)
		if err != nil || len(pkts) != 2 {
			t.Fatalf("pion reads %v, %v", pkts, err)
		}
		if rr, isRR := pkts[0].(*rtcp.ReceiverReport); !isRR || rr.SSRC != rep.ssrc || len(rr.Reports) != len(want.Reports) ||
			ok && rr.Reports[0] != block {
			t.Fatalf("pion reads %+v", pkts[0])
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = rep.with(block, true).Marshal() }); n != 1 {
		t.Fatalf("%v allocations a report", n)
	}
	// Why it encodes itself: pion's compound marshal allocates more.
	pion := rtcp.CompoundPacket{&rtcp.ReceiverReport{SSRC: rep.ssrc, Reports: []rtcp.ReceptionReport{block}},
		&rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: rep.ssrc,
			Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: rep.cname}}}}}}
	n := testing.AllocsPerRun(100, func() { _, _ = pion.Marshal() })
	t.Logf("pion's compound marshal: %v allocations a report", n)
	if n <= 1 {
		t.Fatalf("pion's compound marshal makes %v allocations a report: the session could use it", n)
	}
}

// TestGortsplibReceiverDoesNotFitTheTap: why the tap counts its own
// (rtcprr.go): gortsplib's receiver allocates per packet, and refuses a
// new SSRC, which the tap takes.
func TestGortsplibReceiverDoesNotFitTheTap(t *testing.T) {
	rr := &rtcpreceiver.RTCPReceiver{ClockRate: 90000, Period: time.Hour, WritePacketRTCP: func(rtcp.Packet) {}}
	if err := rr.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	pkt := &rtp.Packet{Header: rtp.Header{SSRC: 7, SequenceNumber: 1, Timestamp: 0}}
	now := time.Now()
	if _, _, err := rr.ProcessPacket2(pkt, now, true); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		pkt.SequenceNumber++
		pkt.Timestamp += 3000
		_, _, _ = rr.ProcessPacket2(pkt, now, true)
	}); n < 1 {
		t.Fatalf("gortsplib's receiver allocates %v per packet: the tap could use it", n)
	}
	pkt.SSRC++
	if _, _, err := rr.ProcessPacket2(pkt, now, true); err == nil {
		t.Fatal("gortsplib's receiver takes a new SSRC: the tap could use it")
	}
}

// TestVideoIsReportedToTheCameraOverTCP: over TCP gortsplib sends no
// receiver reports; the session sends the video's itself, tapped
// (rtsp://) or not (rtsps://): on their period, with the sequence numbers
// received, nothing lost, and the camera's last sender report echoed.
func TestVideoIsReportedToTheCameraOverTCP(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	t.Parallel()
	for _, scheme := range []string{"rtsp", "rtsps"} {
		t.Run(scheme, func(t *testing.T) {
			t.Parallel()
			var rl *rtsptest.Relay
			if scheme == "rtsps" {
				rl = rtsptest.StartRelayTLS(t)
			} else {
				rl = rtsptest.StartRelay(t, "")
			}
			rec := recordOnRelay(t, rl)
			var src *RTSPSource
			rec.record(t, "cam", rl.URL("cam"), func(c *CameraConfig) {
				src = c.Source.(*RTSPSource)
				src.InsecureTLS = true
				src.rrPeriod = 200 * time.Millisecond
			})
			// Reports with a block (one without: no packet in its
			// period, possible on a loaded machine).
			withBlock := func() []rtcp.ReceiverReport {
				var rrs []rtcp.ReceiverReport
				for _, rr := range rl.ReceiverReports("cam") {
					if len(rr.Reports) > 1 {
						t.Fatalf("a receiver report of %d blocks: %+v", len(rr.Reports), rr)
					}
					if len(rr.Reports) == 1 {
						rrs = append(rrs, rr)
					}
				}
				return rrs
			}
			var rrs []rtcp.ReceiverReport
			deadline := time.Now().Add(20 * time.Second)
			for rrs = withBlock(); len(rrs) < 4; rrs = withBlock() {
				if time.Now().After(deadline) {
					t.Fatalf("%d receiver reports after 20 s (%d packets tapped)", len(rrs), src.tapped.Load())
				}
				time.Sleep(50 * time.Millisecond)
			}
			if tapped := src.tapped.Load(); (scheme == "rtsp") != (tapped > 0) {
				t.Fatalf("%d packets tapped over %s", tapped, scheme)
			}
			for i, rr := range rrs {
				if rr.SSRC != rrs[0].SSRC || rr.Reports[0].SSRC != rrs[0].Reports[0].SSRC {
					t.Fatalf("report %d: %+v (first %+v)", i, rr, rrs[0])
				}
				b := rr.Reports[0]
				if b.TotalLost != 0 || b.FractionLost != 0 || b.Jitter != 0 {
					t.Fatalf("report %d: %+v", i, b)
				}
				if i > 0 && b.LastSequenceNumber <= rrs[i-1].Reports[0].LastSequenceNumber {
					t.Fatalf("report %d: sequence number %d after %d", i, b.LastSequenceNumber, rrs[i-1].Reports[0].LastSequenceNumber)
				}
			}
			// The camera's sender reports come back as LSR: send some
			// until a report echoes one (the relay's own, every 10 s, may
			// come between).
			source := rrs[0].Reports[0].SSRC
			var sent []uint32
			for ntp := uint64(0x0000_abcd_0000_0000); ; ntp += 1 << 16 {
				if time.Now().After(deadline) {
					t.Fatalf("no receiver report echoes the sender reports sent (LSR %#x); last %+v", sent, rl.ReceiverReports("cam"))
				}
				if err := rl.SendRTCP("cam", &rtcp.SenderReport{SSRC: source, NTPTime: ntp}); err != nil {
					t.Fatal(err)
				}
				sent = append(sent, uint32(ntp>>16))
				time.Sleep(100 * time.Millisecond)
				got := withBlock()
				if b := got[len(got)-1].Reports[0]; b.LastSenderReport != 0 && slices.Contains(sent, b.LastSenderReport) {
					if b.Delay > 65536 { // 1 s
						t.Fatalf("DLSR %d/65536 s", b.Delay)
					}
					break
				}
			}
		})
	}
}
