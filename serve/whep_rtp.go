package serve

import (
	"encoding/binary"
	"sync"

	"github.com/kvsedge/kvsedge/engine"
)

// H.264 over RTP (RFC 6184, packetization-mode 1), cut once per frame per
// stream, not once per viewer.
//
// The first WHEP viewer of a stream to send a live frame cuts it into RTP
// payloads (whepSession.Attach) in a buffer of the engine's live tap that
// lives as long as the frame (engine.LiveFrame.AttachBuf, counted against
// the media budget); the frame carries that h264RTP as its attachment, so
// every other viewer of the stream sends the same payloads: a viewer only
// sets its own RTP header (sequence number, timestamp; SSRC and payload
// type are set by pion's TrackLocalStaticRTP binding) and hands pion the
// shared payload by reference. What pion then does per viewer: WriteRTP
// copies the rtp.Packet struct (not the payload) into a pooled packet;
// the NACK responder interceptor copies the packet into its pooled
// history (it must: our buffers are reused once the frame is released,
// so its DisableCopy option would resend freed memory); SRTP marshals
// header and payload into a pooled buffer, encrypts it in place and
// writes it to the socket.
//
// The cutter is written here rather than taken from a library because
// neither pion's codecs.H264Payloader.Payload nor gortsplib's
// rtph264.Encoder.Encode can write into a caller's buffer: both allocate
// every payload (and the slice of them) per call
// (TestLibraryH264PayloadersAllocate measures it).
//
// Payloads: a NAL unit of at most rtpMTU bytes goes as a single NAL unit
// packet; a larger one as FU-A fragments (FU indicator: the NAL header's
// F and NRI with type 28; FU header: start/end bits and the NAL type;
// then up to rtpMTU−2 bytes of the NAL unit after its header). Parameter
// sets (SPS and PPS: the stream's CodecPrivate ones before a key frame,
// and any in the access unit) are held and sent together before the next
// NAL unit: one STAP-A (type 24, F and NRI the OR and maximum of theirs;
// each NAL unit after a 16-bit size) when it fits in rtpMTU, else one by
// one. Access unit delimiters and filler data are dropped, as pion's
// payloader did. The RTP marker bit goes on the access unit's last packet.

// h264RTP is one frame's RTP payloads, shared by every viewer of the
// stream (the frame's engine.LiveAttachment): buf holds n records, each
// a 16-bit big-endian payload size then the payload.
type h264RTP struct {
	buf []byte
	n   int
}

var h264RTPPool = sync.Pool{New: func() any { return new(h264RTP) }}

// Release returns the record to its pool (the frame's bytes, buf
// included, are the engine's).
func (p *h264RTP) Release() {
	p.buf, p.n = nil, 0
	h264RTPPool.Put(p)
}

// next returns the payload at offset off in p's records and the offset
// of the next.
func nextRTPPayload(buf []byte, off int) ([]byte, int) {
	l := int(binary.BigEndian.Uint16(buf[off:]))
	end := off + 2 + l
	return buf[off+2 : end : end], end
}

const (
	h264NALSPS    = 7
	h264NALPPS    = 8
	h264NALAUD    = 9
	h264NALFiller = 12
	h264STAPA     = 24
	h264FUA       = 28
)

// h264Cutter cuts access units into payload records. With sizing, it
// only counts (size, n): the buffer is sized first, then filled.
type h264Cutter struct {
	mtu    int
	sizing bool
	dst    []byte
	size   int // bytes of records
	n      int // records
	// ps are the parameter sets waiting for the next NAL unit.
	ps  [8][]byte
	nps int
}

func (c *h264Cutter) record(l int) {
	c.n++
	c.size += 2 + l
	if !c.sizing {
		c.dst = binary.BigEndian.AppendUint16(c.dst, uint16(l))
	}
}

func (c *h264Cutter) put(b []byte) {
	if !c.sizing {
		c.dst = append(c.dst, b...)
	}
}

func (c *h264Cutter) putByte(b byte) {
	if !c.sizing {
		c.dst = append(c.dst, b)
	}
}

// accessUnit cuts an AVCC access unit (NAL units each after a nalLen-byte
// big-endian size) preceded by the parameter sets ps. A malformed size
// ends it: what came before is sent.
func (c *h264Cutter) accessUnit(au []byte, nalLen int, ps [][]byte) {
	for _, p := range ps {
		c.nal(p)
	}
	for len(au) >= nalLen {
		var l int
		for _, b := range au[:nalLen] {
			l = l<<8 | int(b)
		}
		au = au[nalLen:]
		if l <= 0 || l > len(au) {
			break
		}
		c.nal(au[:l])
		au = au[l:]
	}
	c.flushPS()
}

// nal cuts one NAL unit.
func (c *h264Cutter) nal(n []byte) {
	if len(n) == 0 {
		return
	}
	switch n[0] & 0x1f {
	case h264NALAUD, h264NALFiller:
		return
	case h264NALSPS, h264NALPPS:
		if c.nps == len(c.ps) {
			c.flushPS()
		}
		c.ps[c.nps] = n
		c.nps++
		return
	}
	c.flushPS()
	c.single(n)
}

// flushPS sends the parameter sets held: one STAP-A when they fit.
func (c *h264Cutter) flushPS() {
	ps := c.ps[:c.nps]
	c.nps = 0
	if len(ps) == 0 {
		return
	}
	total := 1
	var hdr byte
	for _, p := range ps {
		total += 2 + len(p)
		hdr = hdr&0x80 | p[0]&0x80 | max(hdr&0x60, p[0]&0x60)
	}
	if len(ps) == 1 || total > c.mtu {
		for _, p := range ps {
			c.single(p)
		}
		clear(ps)
		return
	}
	c.record(total)
	c.putByte(hdr | h264STAPA)
	for _, p := range ps {
		if !c.sizing {
			c.dst = binary.BigEndian.AppendUint16(c.dst, uint16(len(p)))
		}
		c.put(p)
	}
	clear(ps)
}

// single sends a NAL unit as one packet, or as FU-A fragments.
func (c *h264Cutter) single(n []byte) {
	if len(n) <= c.mtu {
		c.record(len(n))
		c.put(n)
		return
	}
	ind := n[0]&0xe0 | h264FUA
	typ := n[0] & 0x1f
	rest := n[1:]
	step := c.mtu - 2
	for first := true; len(rest) > 0; first = false {
		k := min(step, len(rest))
		fu := typ
		if first {
			fu |= 0x80
		}
		if k == len(rest) {
			fu |= 0x40
		}
		c.record(2 + k)
		c.putByte(ind)
		c.putByte(fu)
		c.put(rest[:k])
		rest = rest[k:]
	}
}

// cutH264 appends the records of an access unit to dst (whose capacity
// should be h264RTPSize's) and returns them and their count.
func cutH264(dst, au []byte, nalLen int, ps [][]byte, mtu int) ([]byte, int) {
	c := h264Cutter{mtu: mtu, dst: dst}
	c.accessUnit(au, nalLen, ps)
	return c.dst, c.n
}

// h264RTPSize is the bytes of records cutH264 makes of an access unit.
func h264RTPSize(au []byte, nalLen int, ps [][]byte, mtu int) int {
	c := h264Cutter{mtu: mtu, sizing: true}
	c.accessUnit(au, nalLen, ps)
	return c.size
}

// Attach cuts a live video frame into its RTP payloads once for every
// viewer of the stream (engine.LiveAttacher): in a buffer of the tap's
// that lives as long as the frame. nil (each viewer then cuts it for
// itself) when the media budget has no room. w.avc is the frame's
// header's (sendAt checks).
func (w *whepSession) Attach(f *engine.LiveFrame) engine.LiveAttachment {
	ps := w.framePS(f)
	size := h264RTPSize(f.Data, w.avc.nalLen, ps, rtpMTU)
	buf := f.AttachBuf(size)
	if buf == nil {
		return nil
	}
	p := h264RTPPool.Get().(*h264RTP)
	p.buf, p.n = cutH264(buf[:0], f.Data, w.avc.nalLen, ps, rtpMTU)
	w.cutBytes += uint64(size)
	return p
}

// framePS are the parameter sets sent before f: the stream's SPS and PPS
// before a key frame.
func (w *whepSession) framePS(f *engine.LiveFrame) [][]byte {
	if f.Key {
		return w.avc.ps
	}
	return nil
}
