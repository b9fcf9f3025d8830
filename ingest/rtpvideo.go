package ingest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/pion/rtp"
)

// videoDepacketizer turns a camera's RTP video packets into Matroska
// blocks written straight into the fragment being built: H.264 (RFC 6184,
// packetization modes 0 and 1: single NAL units, STAP-A, FU-A) and H.265
// (RFC 7798 without DON: single NAL units, aggregation packets,
// fragmentation units). Each NAL unit goes from the RTP payload into the
// fragment's media buffer once, behind its 4-byte length (AVCC/HVCC, as
// Fragmenter.WriteVideo stores it); fragmentation units are appended in
// place. Nothing is allocated per packet or access unit once the buffers
// have grown to the stream's sizes.
//
// What it writes is what gortsplib's rtph264/rtph265 decoders followed by
// Fragmenter.WriteVideo wrote before (rtpvideo_test.go compares the two
// byte for byte), with these differences, all on damaged or unusual
// streams:
//   - an access unit ended by a new RTP timestamp instead of the marker
//     bit is stamped with its own time (the decoder's caller saw the next
//     unit's);
//   - a key frame unit whose key frame slices are all lost after their
//     first packet (the block opened as a key frame there) is written as
//     a delta frame, or dropped if it was to start a fragment (which then
//     waits for the next key frame); the decoder's caller saw a unit
//     without them and never cut there;
//   - the H.265 decoder adds what is left of a damaged unit (its marker
//     packet lost) to the next unit; here it is a unit of its own;
//   - parameter sets after the first VCL NAL unit take effect from the
//     next access unit;
//   - an access unit over mediacommon's limits (MaxAccessUnitSize,
//     MaxNALUsPerAccessUnit) is dropped whole.
//
// The access unit's block opens at its first VCL NAL unit, when the key
// flag is known: the fragmenter cuts there if it is a key frame after the
// target duration. Non-VCL NAL units before it (AUD, SEI, parameter sets)
// wait in pending, a small reused buffer, and are scanned for parameter
// set changes before the block opens. Audio frames that arrive while a
// video block is open wait in deferred and are written after it.
//
// All methods run under the session's mutex.
type videoDepacketizer struct {
	s    *rtspSession
	h265 bool

	// The access unit in progress.
	inAU    bool
	ts      uint32 // its RTP timestamp
	pts     time.Duration
	ptsOK   bool
	ntp     time.Time
	haveNTP bool
	pending []byte // non-VCL NAL units before the first VCL one, each behind its length
	open    bool   // its block is open in the fragmenter
	openKey bool   // … as a key frame
	keySeen bool   // a key frame NAL unit is complete in the block
	drop    bool   // the rest of the unit is discarded
	counted bool   // it reached the fragmenter: counted in the feed's stats
	nalus   int    // complete NAL units in it
	size    int    // their bytes
	maxAU   int    // the largest unit so far, block overhead included: the size hint
	// lateParams: a parameter set changed after the block opened.
	lateParams bool

	// The fragmented NAL unit in progress.
	fu     bool
	fuNext uint16 // the sequence number its next fragment must have
	fuDest dest
	fuAt   int // where its length prefix is in fuDest
	fuSize int // its bytes so far, header included

	annexB  bool   // H.264 in Annex-B inside RTP (gortsplib's removeAnnexB)
	scratch []byte // a fragmented unit taken out for Annex-B splitting

	deferred       []byte
	deferredFrames []deferredFrame
}

// dest is where a NAL unit's bytes go.
type dest uint8

const (
	destNone    dest = iota // discarded (the access unit is dropped)
	destPending             // pending: before the unit's first VCL NAL unit
	destBlock               // the open block in the fragment
)

type deferredFrame struct {
	ms int64
	n  int
}

// annexBStartCode marks H.264 carried in Annex-B form inside RTP (which
// a NAL unit cannot contain: emulation prevention forbids it).
var annexBStartCode = []byte{0, 0, 0, 1}

// packet takes one RTP packet of the video track with its presentation
// time (ptsOK false: gortsplib cannot time it yet) and the NTP time of its
// timestamp, if known. Damaged packets are dropped as gortsplib's
// decoders drop them; the error is the fragmenter's or its output's.
func (d *videoDepacketizer) packet(pkt *rtp.Packet, pts time.Duration, ptsOK bool, ntp time.Time, haveNTP bool) error {
	if d.inAU && pkt.Timestamp != d.ts {
		// Some cameras never set the marker bit: a new timestamp ends
		// the unit.
		if err := d.finishAU(); err != nil {
			return err
		}
	}
	if !d.inAU {
		d.inAU, d.ts = true, pkt.Timestamp
	}
	if !d.open {
		d.pts, d.ptsOK, d.ntp, d.haveNTP = pts, ptsOK, ntp, haveNTP
	}
	var err error
	if d.h265 {
		err = d.h265Packet(pkt)
	} else {
		err = d.h264Packet(pkt)
	}
	if err != nil {
		return err
	}
	if pkt.Marker {
		return d.finishAU()
	}
	return nil
}

func (d *videoDepacketizer) h264Packet(pkt *rtp.Packet) error {
	p := pkt.Payload
	if len(p) < 1 {
		d.resetFU()
		return nil
	}
	switch h264.NALUType(p[0] & 0x1F) {
	case h264.NALUTypeFUA:
		if len(p) < 2 {
			return nil
		}
		start, end := p[1]>>7 == 1, (p[1]>>6)&1 == 1
		if start {
			d.resetFU()
			head := [1]byte{p[0]&0x60 | p[1]&0x1F}
			if end { // not allowed, but some cameras do it for small units
				d.scratch = append(append(d.scratch[:0], head[0]), p[2:]...)
				return d.single(d.scratch)
			}
			return d.fuStart(head[:], p[2:], pkt.SequenceNumber+1)
		}
		return d.fuMore(p[2:], pkt.SequenceNumber, end)

	case h264.NALUTypeSTAPA:
		d.resetFU()
		n, ok := stapCount(p[1:], true)
		if !ok {
			return nil
		}
		return d.aggregated(p[1:], n)

	case h264.NALUTypeSTAPB, h264.NALUTypeMTAP16, h264.NALUTypeMTAP24, h264.NALUTypeFUB:
		d.resetFU()
		return nil // not supported (gortsplib neither)

	default:
		d.resetFU()
		return d.single(p)
	}
}

func (d *videoDepacketizer) h265Packet(pkt *rtp.Packet) error {
	p := pkt.Payload
	if len(p) < 2 {
		d.resetFU()
		return nil
	}
	switch h265.NALUType((p[0] >> 1) & 0x3F) {
	case h265.NALUType_AggregationUnit:
		d.resetFU()
		n, ok := stapCount(p[2:], false)
		if !ok {
			return nil
		}
		return d.aggregated(p[2:], n)

	case h265.NALUType_FragmentationUnit:
		if len(p) < 3 {
			d.resetFU()
			return nil
		}
		start, end := p[2]>>7 == 1, (p[2]>>6)&1 == 1
		if start {
			d.resetFU()
			if end {
				return nil // invalid in H.265 (gortsplib refuses it too)
			}
			head := [2]byte{p[0]&0x81 | (p[2]&0x3F)<<1, p[1]}
			return d.fuStart(head[:], p[3:], pkt.SequenceNumber+1)
		}
		return d.fuMore(p[3:], pkt.SequenceNumber, end)

	case h265.NALUType_PACI:
		d.resetFU()
		return nil

	default:
		d.resetFU()
		return d.single(p)
	}
}

// stapCount checks an aggregation packet's payload (2-byte sizes, each
// followed by a NAL unit) and counts its units; H.264's may end in zero
// padding. The whole packet is dropped if any size is wrong, as gortsplib
// does.
func stapCount(payload []byte, padding bool) (int, bool) {
	n := 0
	for len(payload) > 0 {
		if len(payload) < 2 {
			return 0, false
		}
		size := int(binary.BigEndian.Uint16(payload))
		payload = payload[2:]
		if size == 0 && padding && isAllZero(payload) {
			break
		}
		if size == 0 || size > len(payload) {
			return 0, false
		}
		n++
		payload = payload[size:]
	}
	return n, n > 0
}

func isAllZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// aggregated writes the n NAL units of a checked aggregation packet.
func (d *videoDepacketizer) aggregated(payload []byte, n int) error {
	for i := 0; i < n; i++ {
		size := int(binary.BigEndian.Uint16(payload))
		u := payload[2 : 2+size]
		payload = payload[2+size:]
		var err error
		if n == 1 {
			err = d.single(u) // gortsplib looks for Annex-B in lone units only
		} else {
			err = d.naluPlain(u)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// single writes a NAL unit that came alone (a single NAL unit packet, a
// whole fragmentation unit, a lone unit of an aggregation packet): the
// units gortsplib checks for an Annex-B wrapping.
func (d *videoDepacketizer) single(u []byte) error {
	if !d.h265 && (d.annexB || bytes.Contains(u, annexBStartCode)) {
		d.annexB = true
		return d.annexBUnits(u)
	}
	return d.naluPlain(u)
}

// annexBUnits splits an Annex-B wrapped unit and writes its NAL units
// (a rare camera's quirk: this path may allocate).
func (d *videoDepacketizer) annexBUnits(u []byte) error {
	if !bytes.HasPrefix(u, annexBStartCode) {
		u = append(append([]byte(nil), annexBStartCode...), u...)
	}
	var au h264.AnnexB
	if err := au.Unmarshal(u); err != nil {
		return nil // dropped, as gortsplib drops it
	}
	for _, n := range au {
		if err := d.naluPlain(n); err != nil {
			return err
		}
	}
	return nil
}

// classify tells whether a NAL unit (by its first byte) is a VCL unit and
// whether it makes its access unit a random access point
// (h264.IsRandomAccess, h265.IsRandomAccess).
func (d *videoDepacketizer) classify(b0 byte) (vcl, key bool) {
	if d.h265 {
		typ := h265.NALUType((b0 >> 1) & 0x3F)
		switch typ {
		case h265.NALUType_IDR_W_RADL, h265.NALUType_IDR_N_LP, h265.NALUType_CRA_NUT:
			return true, true
		}
		return typ < h265.NALUType_VPS_NUT, false
	}
	typ := h264.NALUType(b0 & 0x1F)
	return typ >= h264.NALUTypeNonIDR && typ <= h264.NALUTypeIDR, typ == h264.NALUTypeIDR
}

// destFor decides where a NAL unit starting with b0 goes, opening the
// access unit's block at its first VCL unit.
func (d *videoDepacketizer) destFor(b0 byte) (dest, error) {
	switch {
	case d.drop:
		return destNone, nil
	case d.open:
		return destBlock, nil
	}
	vcl, key := d.classify(b0)
	if !vcl {
		return destPending, nil
	}
	if err := d.openBlock(key); err != nil {
		return destNone, err
	}
	if d.open {
		return destBlock, nil
	}
	return destNone, nil
}

// naluPlain writes one complete NAL unit (header included).
func (d *videoDepacketizer) naluPlain(u []byte) error {
	if len(u) == 0 {
		return nil
	}
	if !d.admit(len(u)) {
		return nil
	}
	dst, err := d.destFor(u[0])
	if err != nil {
		return err
	}
	switch dst {
	case destPending:
		d.pending = binary.BigEndian.AppendUint32(d.pending, uint32(len(u)))
		d.pending = append(d.pending, u...)
	case destBlock:
		fr := d.s.fr
		if !fr.AppendVideoLen(uint32(len(u))) || !fr.AppendVideo(u) {
			d.refusedAU()
			return nil
		}
		d.noteUnit(u)
	}
	return nil
}

// admit counts a complete NAL unit of n bytes into the access unit,
// dropping the unit if it goes over mediacommon's limits.
func (d *videoDepacketizer) admit(n int) bool {
	maxNALUs, maxSize := h264.MaxNALUsPerAccessUnit, h264.MaxAccessUnitSize
	if d.h265 {
		maxNALUs, maxSize = h265.MaxNALUsPerAccessUnit, h265.MaxAccessUnitSize
	}
	if d.nalus+1 > maxNALUs || d.size+n > maxSize {
		d.dropAU()
		return false
	}
	d.nalus++
	d.size += n
	return true
}

// dropAU discards the access unit in progress (its block too).
func (d *videoDepacketizer) dropAU() {
	d.fu = false
	if d.open {
		d.s.fr.CancelVideo()
		d.open = false
	}
	d.pending = d.pending[:0]
	d.drop, d.counted, d.lateParams = true, false, false
}

// refusedAU drops the rest of an access unit the media memory had no
// room for (the fragmenter dropped its block with the fragment in
// progress, Fragmenter.refused). It reached the fragmenter, so the feed's
// stats count it, as a unit the fragmenter refused at BeginVideo.
func (d *videoDepacketizer) refusedAU() {
	d.dropAU()
	d.counted = true
}

// fuStart begins a fragmented NAL unit: head is its reconstructed NAL
// unit header, rest the first fragment.
func (d *videoDepacketizer) fuStart(head, rest []byte, next uint16) error {
	dst, err := d.destFor(head[0])
	if err != nil {
		return err
	}
	d.fu, d.fuNext, d.fuDest, d.fuSize = true, next, dst, len(head)+len(rest)
	switch dst {
	case destPending:
		d.fuAt = len(d.pending)
		d.pending = append(d.pending, 0, 0, 0, 0)
		d.pending = append(append(d.pending, head...), rest...)
	case destBlock:
		fr := d.s.fr
		d.fuAt = fr.VideoLen()
		// The length is patched when the unit ends.
		if !fr.AppendVideoLen(0) || !fr.AppendVideo(head) || !fr.AppendVideo(rest) {
			d.refusedAU()
		}
	}
	return nil
}

// fuMore appends a further fragment; end completes the unit.
func (d *videoDepacketizer) fuMore(frag []byte, seq uint16, end bool) error {
	if !d.fu {
		return nil // no start seen (joined mid-unit, or it was dropped)
	}
	if seq != d.fuNext || d.fuSize+len(frag) > h264.MaxAccessUnitSize {
		d.resetFU() // a packet is missing: the unit is lost
		return nil
	}
	d.fuNext++
	d.fuSize += len(frag)
	switch d.fuDest {
	case destPending:
		d.pending = append(d.pending, frag...)
	case destBlock:
		if !d.s.fr.AppendVideo(frag) {
			d.refusedAU()
			return nil
		}
	}
	if !end {
		return nil
	}
	return d.fuEnd()
}

// fuEnd completes the fragmented unit in place: its length is filled in.
func (d *videoDepacketizer) fuEnd() error {
	d.fu = false
	n := d.fuSize
	var u []byte
	switch d.fuDest {
	case destPending:
		u = d.pending[d.fuAt+4:]
	case destBlock:
		u = d.s.fr.VideoBytes(d.fuAt + 4)
	}
	if u != nil && !d.h265 && (d.annexB || bytes.Contains(u, annexBStartCode)) {
		// Annex-B inside a fragmentation unit: take it out and split it.
		d.scratch = append(d.scratch[:0], u...)
		d.truncate(d.fuDest, d.fuAt)
		d.annexB = true
		return d.annexBUnits(d.scratch)
	}
	if !d.admit(n) {
		return nil
	}
	switch d.fuDest {
	case destPending:
		binary.BigEndian.PutUint32(d.pending[d.fuAt:], uint32(n))
	case destBlock:
		binary.BigEndian.PutUint32(d.s.fr.VideoBytes(d.fuAt), uint32(n))
		d.noteUnit(u)
	}
	return nil
}

// resetFU drops the fragmented unit in progress, if any.
func (d *videoDepacketizer) resetFU() {
	if d.fu {
		d.fu = false
		d.truncate(d.fuDest, d.fuAt)
	}
}

func (d *videoDepacketizer) truncate(dst dest, at int) {
	switch dst {
	case destPending:
		d.pending = d.pending[:at]
	case destBlock:
		d.s.fr.TruncateVideo(at)
	}
}

// openBlock opens the access unit's block in the fragment, as
// rtspSession.video did for a whole unit: parameter sets first (a change
// gives a new track header), then the timeline, then the fragmenter
// (which may cut, or drop the unit while it waits for a key frame).
func (d *videoDepacketizer) openBlock(key bool) error {
	s := d.s
	if !d.ptsOK {
		d.drop = true // gortsplib cannot time the track yet
		d.pending = d.pending[:0]
		return nil
	}
	changed := false
	for p := d.pending; len(p) >= 4; {
		n := int(binary.BigEndian.Uint32(p))
		if 4+n > len(p) {
			break
		}
		changed = d.setParam(p[4:4+n]) || changed
		p = p[4+n:]
	}
	if changed || !s.haveParams {
		if err := s.applyParams(); err != nil {
			// Without parameter sets, or with none that parse yet: wait
			// for in-band ones. One that does not parse while others are
			// in effect is ignored.
			if errors.Is(err, errNoParams) || !s.haveParams {
				s.fr.DroppedUnits++
				d.drop = true
				d.pending = d.pending[:0]
				return nil
			}
		}
	}
	d.counted = true
	ms := s.tl.ms(d.pts, d.ntp, d.haveNTP, true)
	ok, err := s.fr.BeginVideo(ms, key, d.maxAU)
	if err != nil {
		return err
	}
	if !ok {
		d.drop = true
		d.pending = d.pending[:0]
		return nil
	}
	d.open, d.openKey, d.keySeen = true, key, false
	if len(d.pending) > 0 {
		if !s.fr.AppendVideo(d.pending) {
			d.refusedAU()
			return nil
		}
		d.pending = d.pending[:0]
	}
	return nil
}

// setParam records a parameter set NAL unit, reporting a change (only a
// change copies it).
func (d *videoDepacketizer) setParam(u []byte) bool {
	if len(u) == 0 {
		return false
	}
	s := d.s
	var dst *[]byte
	if d.h265 {
		switch h265.NALUType((u[0] >> 1) & 0x3F) {
		case h265.NALUType_VPS_NUT:
			dst = &s.vps
		case h265.NALUType_SPS_NUT:
			dst = &s.sps
		case h265.NALUType_PPS_NUT:
			dst = &s.pps
		}
	} else {
		switch h264.NALUType(u[0] & 0x1F) {
		case h264.NALUTypeSPS:
			dst = &s.sps
		case h264.NALUTypePPS:
			dst = &s.pps
		}
	}
	if dst == nil || bytes.Equal(*dst, u) {
		return false
	}
	*dst = append([]byte(nil), u...)
	return true
}

// noteUnit notes a complete NAL unit in the open block: a key frame unit,
// or a parameter set (a change takes effect after this access unit).
func (d *videoDepacketizer) noteUnit(u []byte) {
	if _, key := d.classify(u[0]); key {
		d.keySeen = true
	}
	if d.setParam(u) {
		d.lateParams = true
	}
}

// finishAU ends the access unit: its block is closed (a unit of non-VCL
// NAL units only is written as a non-key block, as before), the feed's
// stats count it, and deferred audio follows it.
func (d *videoDepacketizer) finishAU() error {
	d.resetFU()
	s := d.s
	var err error
	if !d.open && !d.drop && len(d.pending) > 0 {
		err = d.openBlock(false)
	}
	if d.open {
		s.fr.EndVideo(d.openKey && !d.keySeen)
		d.open = false
		d.maxAU = max(d.maxAU, d.size+4*d.nalus+blockOverhead)
	}
	if d.counted {
		s.st.frame(true, d.size)
	}
	if d.lateParams {
		_ = s.applyParams() // errors as in openBlock: the previous sets stay
	}
	d.inAU, d.drop, d.counted, d.lateParams = false, false, false, false
	d.nalus, d.size = 0, 0
	d.pending = d.pending[:0]
	if err != nil {
		return err
	}
	return d.flushAudio()
}

// audio writes an audio frame, or keeps it until the open video block
// closes.
func (d *videoDepacketizer) audio(ti int, ms int64, frame []byte) error {
	if d.open {
		d.deferred = append(d.deferred, frame...)
		d.deferredFrames = append(d.deferredFrames, deferredFrame{ms: ms, n: len(frame)})
		return nil
	}
	return d.s.fr.WriteAudio(ti, ms, frame)
}

func (d *videoDepacketizer) flushAudio() error {
	if len(d.deferredFrames) == 0 {
		return nil
	}
	b := d.deferred
	var err error
	for _, f := range d.deferredFrames {
		if err == nil {
			err = d.s.fr.WriteAudio(d.s.audioTI, f.ms, b[:f.n])
		}
		b = b[f.n:]
	}
	d.deferred, d.deferredFrames = d.deferred[:0], d.deferredFrames[:0]
	return err
}
