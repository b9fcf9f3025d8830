package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/pion/rtcp"
)

// RTCP receiver reports for the video over TCP (RFC 3550 §6.4.2).
//
// RFC 3550 §6 has every participant of a session send RTCP, receivers
// their reports, and some cameras stop sending to a reader whose reports
// do not come often enough (Arlo's, in MediaMTX issue #1403, which then
// reported every 5 s instead of 10). gortsplib v4 sends receiver reports
// over UDP only (client_format.go: none over TCP, tapped or not), as
// MediaMTX, built on it, does; ffmpeg sent none over TCP either in 8 s
// (a throwaway check against the test relay). So over TCP, rtsp:// and
// rtsps://, the session reports the video itself, every
// receiverReportPeriod, through gortsplib's Client.WritePacketRTCP (the
// video's RTCP channel); over UDP gortsplib's receiver does, as before.
// The audio is not reported over TCP (nor by gortsplib).
//
// gortsplib's receiver is not used for the counting: it allocates per
// packet (ProcessPacket2 returns a new slice) and refuses the packets of
// a new SSRC, which the tap accepts (a camera whose encoder restarts goes
// on recording): TestGortsplibReceiverDoesNotFitTheTap.

// receiverReportPeriod is how often the video is reported: the period
// of gortsplib's client (over UDP) and GStreamer's default.
const receiverReportPeriod = 5 * time.Second

// RFC 3550 appendix A.1: a jump of the sequence number by less than
// maxDropout is packets lost; one backwards by less than maxMisorder is
// a late packet; anything else is ignored, unless the next packet
// follows it: then it is the sender's new sequence, and the counts start
// again.
const (
	maxDropout  = 3000
	maxMisorder = 100
	noJump      = 1 << 16 // not a sequence number
)

// receptionStats counts one source's packets for its receiver reports
// (RFC 3550 appendix A.1 and A.3). Its owner serialises the calls (the
// session's mu). Nothing in it allocates.
type receptionStats struct {
	started bool
	ssrc    uint32
	// base is the first extended sequence number counted; cycles the
	// sequence number's wraps, shifted left 16; max the highest
	// sequence number (with cycles: the extended highest).
	base     uint32
	cycles   uint32
	max      uint16
	received uint32
	// badSeq is the sequence number that would confirm a jump (the
	// one after it), noJump when none is pending.
	badSeq uint32
	// at the previous report: for the fraction lost since, and whether
	// a packet came since
	expectedPrior, receivedPrior uint32
	// the last sender report of source lsrSSRC (kept across a change of
	// source, echoed only for its own): the middle 32 bits of its NTP
	// timestamp (LSR), and when it was read
	lsrSSRC uint32
	lsr     uint32
	lsrAt   time.Time
}

// packet counts one RTP packet of ssrc with sequence number seq.
func (s *receptionStats) packet(ssrc uint32, seq uint16) {
	if !s.started || ssrc != s.ssrc {
		*s = receptionStats{started: true, ssrc: ssrc, lsrSSRC: s.lsrSSRC, lsr: s.lsr, lsrAt: s.lsrAt}
		s.restart(seq)
		return
	}
	switch delta := seq - s.max; {
	case delta < maxDropout:
		if seq < s.max {
			s.cycles += 1 << 16
		}
		s.max = seq
	case delta <= 1<<16-maxMisorder:
		if uint32(seq) != s.badSeq {
			s.badSeq = uint32(seq + 1) // a stray packet, unless the next follows it
			return
		}
		// The sender's new sequence (its encoder restarted with the
		// same SSRC): counted from here. The last sender report stays:
		// it is still this source's.
		s.restart(seq)
		return
	}
	// A duplicate or late packet counts as received and moves nothing
	// (A.1); more received than expected reads as no loss.
	s.received++
}

// packetOther counts a packet of another payload type than the video's:
// only when it is the source's (same SSRC, same sequence); another SSRC
// on the channel (retransmissions, forward error correction) is not the
// source and never replaces it.
func (s *receptionStats) packetOther(ssrc uint32, seq uint16) {
	if s.started && ssrc == s.ssrc {
		s.packet(ssrc, seq)
	}
}

// restart counts from seq, the first packet of a new sequence.
func (s *receptionStats) restart(seq uint16) {
	s.base, s.cycles, s.max, s.received, s.badSeq = uint32(seq), 0, seq, 1, noJump
	s.expectedPrior, s.receivedPrior = 0, 0
}

// senderReport takes a sender report of the video's media, read at at:
// the source's, or any before the first packet (the source may be its).
func (s *receptionStats) senderReport(sr *rtcp.SenderReport, at time.Time) {
	if !s.started || sr.SSRC == s.ssrc {
		s.lsrSSRC, s.lsr, s.lsrAt = sr.SSRC, uint32(sr.NTPTime>>16), at
	}
}

// report is the reception report block of the source at now, and
// starts the next interval of its fraction lost; false when no packet
// came since the previous report (§6.4: a report covers the sources
// heard since the last one). Jitter is reported as 0: the connection's
// reads are paced (readpace.go), so the time a packet is read says
// nothing of when it arrived, and over TCP nothing is lost or reordered
// that jitter would warn of.
func (s *receptionStats) report(now time.Time) (rtcp.ReceptionReport, bool) {
	if !s.started || s.received == s.receivedPrior {
		return rtcp.ReceptionReport{}, false
	}
	extMax := s.cycles + uint32(s.max)
	expected := extMax - s.base + 1
	lost := int64(expected) - int64(s.received)
	r := rtcp.ReceptionReport{
		SSRC:               s.ssrc,
		LastSequenceNumber: extMax,
		TotalLost:          uint32(min(max(lost, 0), 0x7fffff)), // 24-bit signed, negatives as 0
	}
	expInterval := expected - s.expectedPrior
	recvInterval := s.received - s.receivedPrior
	s.expectedPrior, s.receivedPrior = expected, s.received
	if lostInterval := int64(expInterval) - int64(recvInterval); expInterval > 0 && lostInterval > 0 {
		r.FractionLost = uint8(lostInterval << 8 / int64(expInterval))
	}
	if !s.lsrAt.IsZero() && s.lsrSSRC == s.ssrc {
		r.LastSenderReport = s.lsr
		us := uint64(max(0, now.Sub(s.lsrAt)) / time.Microsecond)
		r.Delay = uint32(min(us*65536/1e6, math.MaxUint32)) // units of 1/65536 s
	}
	return r, true
}

// receiverReport is one connection's RTCP compound packet (RFC 3550
// §6.1: every RTCP packet sent is compound, and carries the CNAME): a
// Receiver Report (§6.4.2) of at most one block, then an SDES packet
// (§6.5) with the CNAME of the report's SSRC. It encodes itself in one
// buffer: pion's CompoundPacket.Marshal makes 8 allocations a report
// (TestReceiverReportEncodesAsPion logs it, and checks our bytes
// against pion's).
type receiverReport struct {
	ssrc     uint32
	cname    string
	block    rtcp.ReceptionReport
	hasBlock bool
}

// newReceiverReport makes a connection's report, under a random SSRC of
// its own (this receiver's).
func newReceiverReport() *receiverReport {
	ssrc := rand.Uint32()
	return &receiverReport{ssrc: ssrc, cname: fmt.Sprintf("kvsedge-%08x", ssrc)}
}

// with sets the report block (none unless ok) and returns the packet.
func (r *receiverReport) with(block rtcp.ReceptionReport, ok bool) rtcp.Packet {
	r.block, r.hasBlock = block, ok
	return r
}

// sizes: the Receiver Report, and the SDES chunk (SSRC, the CNAME item,
// at least one null octet ending the item list, padded to 32 bits).
func (r *receiverReport) sizes() (rr, chunk int) {
	rr = 8
	if r.hasBlock {
		rr += 24
	}
	return rr, (4 + 2 + len(r.cname) + 1 + 3) &^ 3
}

// MarshalSize implements rtcp.Packet.
func (r *receiverReport) MarshalSize() int {
	rr, chunk := r.sizes()
	return rr + 4 + chunk
}

// Marshal implements rtcp.Packet: the compound packet in a new buffer
// (the caller may keep it: gortsplib queues it for its writer).
func (r *receiverReport) Marshal() ([]byte, error) {
	rrLen, chunk := r.sizes()
	if len(r.cname) > 255 {
		return nil, errors.New("rtcp: CNAME longer than 255 bytes")
	}
	b := make([]byte, rrLen+4+chunk)
	be := binary.BigEndian
	count := byte(0)
	if r.hasBlock {
		count = 1
	}
	// Header: version 2, no padding, report count; type 201 (RR);
	// length in 32-bit words minus one.
	b[0], b[1] = 2<<6|count, 201
	be.PutUint16(b[2:], uint16(rrLen/4-1))
	be.PutUint32(b[4:], r.ssrc)
	if r.hasBlock {
		k := r.block
		be.PutUint32(b[8:], k.SSRC)
		be.PutUint32(b[12:], uint32(k.FractionLost)<<24|k.TotalLost&0xffffff)
		be.PutUint32(b[16:], k.LastSequenceNumber)
		be.PutUint32(b[20:], k.Jitter)
		be.PutUint32(b[24:], k.LastSenderReport)
		be.PutUint32(b[28:], k.Delay)
	}
	// SDES: one chunk (source count 1), type 202; the chunk: SSRC, the
	// CNAME item (type 1, length, text), then zeros (make's).
	sd := b[rrLen:]
	sd[0], sd[1] = 2<<6|1, 202
	be.PutUint16(sd[2:], uint16((4+chunk)/4-1))
	be.PutUint32(sd[4:], r.ssrc)
	sd[8], sd[9] = byte(rtcp.SDESCNAME), byte(len(r.cname))
	copy(sd[10:], r.cname)
	return b, nil
}

// Unmarshal implements rtcp.Packet; the session only sends the report.
func (r *receiverReport) Unmarshal([]byte) error {
	return errors.New("rtcp: the session's receiver report is not decoded")
}

// DestinationSSRC implements rtcp.Packet: the source reported on.
func (r *receiverReport) DestinationSSRC() []uint32 {
	if !r.hasBlock {
		return nil
	}
	return []uint32{r.block.SSRC}
}
