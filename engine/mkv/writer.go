package mkv

import (
	"errors"
	"math"
)

// TrackSpec describes a track for BuildHeader.
type TrackSpec struct {
	Number       uint64
	Type         uint8 // 1 video, 2 audio
	CodecID      string
	CodecPrivate []byte
	Name         string
	// Video
	Width, Height int
	// Audio
	SampleRate float64
	Channels   int
}

// Track types.
const (
	TrackVideo uint8 = 1
	TrackAudio uint8 = 2
)

// Codec ids kvsedge writes.
const (
	CodecH264 = "V_MPEG4/ISO/AVC"
	CodecH265 = "V_MPEGH/ISO/HEVC"
	CodecAAC  = "A_AAC"
	CodecOpus = "A_OPUS"
	CodecPCMA = "A_MS/ACM" // G.711 in a WAVEFORMATEX CodecPrivate
	CodecMJPG = "V_MJPEG"
)

// Element IDs only the writer needs.
const (
	idEBMLVersion        = 0x4286
	idEBMLReadVersion    = 0x42F7
	idEBMLMaxIDLength    = 0x42F2
	idEBMLMaxSizeLength  = 0x42F3
	idDocType            = 0x4282
	idDocTypeVersion     = 0x4287
	idDocTypeReadVersion = 0x4285
	idMuxingApp          = 0x4D80
	idWritingApp         = 0x5741
	idTrackUID           = 0x73C5
	idName               = 0x536E
	idVideo              = 0xE0
	idPixelWidth         = 0xB0
	idPixelHeight        = 0xBA
	idAudio              = 0xE1
	idSamplingFrequency  = 0xB5
	idChannels           = 0x9F
)

// elemWriter builds nested elements with 8-byte sizes patched on close.
type elemWriter struct{ b []byte }

func (w *elemWriter) open(id uint32) int {
	w.b = appendID(w.b, id)
	at := len(w.b)
	w.b = append(w.b, 0x01, 0, 0, 0, 0, 0, 0, 0)
	return at
}

func (w *elemWriter) close(at int) {
	n := len(w.b) - at - 8
	for i := 7; i >= 1; i-- {
		w.b[at+i] = byte(n)
		n >>= 8
	}
}

func (w *elemWriter) uint(id uint32, v uint64) { w.b = appendUintElem(w.b, id, v) }

func (w *elemWriter) bytes(id uint32, v []byte) {
	at := w.open(id)
	w.b = append(w.b, v...)
	w.close(at)
}

func (w *elemWriter) float(id uint32, v float64) {
	w.b = appendID(w.b, id)
	w.b = append(w.b, 0x88)
	bits := math.Float64bits(v)
	for i := 7; i >= 0; i-- {
		w.b = append(w.b, byte(bits>>(8*i)))
	}
}

// BuildHeader returns the session header for tracks: EBML header, Segment
// of unknown size, Info (TimecodeScale 1 ms), Tracks — what a KVS producer
// sends before its first cluster.
func BuildHeader(tracks []TrackSpec) (*Header, error) {
	if len(tracks) == 0 || len(tracks) > 3 {
		return nil, errors.New("mkv: a header needs 1 to 3 tracks")
	}
	w := &elemWriter{}
	e := w.open(IDEBML)
	w.uint(idEBMLVersion, 1)
	w.uint(idEBMLReadVersion, 1)
	w.uint(idEBMLMaxIDLength, 4)
	w.uint(idEBMLMaxSizeLength, 8)
	w.bytes(idDocType, []byte("matroska"))
	w.uint(idDocTypeVersion, 2)
	w.uint(idDocTypeReadVersion, 2)
	w.close(e)
	w.b = appendID(w.b, IDSegment)
	w.b = append(w.b, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF)
	info := w.open(IDInfo)
	w.uint(IDTimecodeScale, 1_000_000)
	w.bytes(idMuxingApp, []byte("kvsedge"))
	w.bytes(idWritingApp, []byte("kvsedge"))
	w.close(info)
	tr := w.open(IDTracks)
	h := &Header{TimecodeScale: 1_000_000}
	for _, t := range tracks {
		te := w.open(IDTrackEntry)
		w.uint(IDTrackNumber, t.Number)
		w.uint(idTrackUID, t.Number)
		w.uint(IDTrackType, uint64(t.Type))
		if t.Name != "" {
			w.bytes(idName, []byte(t.Name))
		}
		w.bytes(IDCodecID, []byte(t.CodecID))
		if len(t.CodecPrivate) > 0 {
			w.bytes(IDCodecPrivate, t.CodecPrivate)
		}
		switch t.Type {
		case TrackVideo:
			v := w.open(idVideo)
			w.uint(idPixelWidth, uint64(t.Width))
			w.uint(idPixelHeight, uint64(t.Height))
			w.close(v)
		case TrackAudio:
			a := w.open(idAudio)
			w.float(idSamplingFrequency, t.SampleRate)
			w.uint(idChannels, uint64(max(t.Channels, 1)))
			w.close(a)
		}
		w.close(te)
		h.Tracks = append(h.Tracks, Track{Number: t.Number, Type: t.Type, CodecID: t.CodecID,
			CodecPrivate: append([]byte(nil), t.CodecPrivate...)})
	}
	w.close(tr)
	h.Raw = w.b
	return h, nil
}

// FragmentBuilder writes one fragment — an unknown-size Cluster of
// SimpleBlocks and its end-of-fragment tag — into a buffer, keeping the
// statistics a Fragment carries, so a camera's fragments are exactly what
// a PutMedia upload of the same media would produce.
//
// A block is written whole (AddBlock) or streamed: BeginBlock writes its
// header with the size left open, the caller appends the payload to Buf
// and hands the grown slice back with SetBuf, and EndBlock fills in the
// size (CancelBlock removes the block instead). A camera's depacketiser
// writes NAL units straight from RTP payloads this way, so an access unit
// is never assembled anywhere else first.
type FragmentBuilder struct {
	f      *Fragment
	baseMs int64
	// The open block of BeginBlock: where its 8-byte size field starts
	// (-1: none), its track index, relative timecode and key flag.
	blockAt  int
	blockTI  int
	blockRel int16
	blockKey bool
}

// ErrBlockOutOfRange: a block is more than 32.767 s from its cluster's
// timecode (the int16 block timecode): the caller must start a new
// fragment first.
var ErrBlockOutOfRange = errors.New("mkv: block timecode out of the cluster's range")

// Start begins a fragment whose cluster timecode is timecodeMs (1 ms
// timecode scale) in buf (which the fragment then owns).
func (b *FragmentBuilder) Start(h *Header, timecodeMs int64, buf []byte) {
	buf = buf[:0]
	buf = appendID(buf, IDCluster)
	buf = append(buf, 0xFF) // unknown size, as the KVS producer writes
	buf = appendUintElem(buf, IDTimecode, uint64(timecodeMs))
	b.f = &Fragment{Header: h, Timecode: uint64(timecodeMs), Buf: buf}
	b.baseMs = timecodeMs
	b.blockAt = -1
}

// Started reports whether a fragment is being built.
func (b *FragmentBuilder) Started() bool { return b.f != nil }

// Frames is the number of blocks written so far.
func (b *FragmentBuilder) Frames() int {
	if b.f == nil {
		return 0
	}
	return b.f.Frames
}

// Len is the fragment's size so far.
func (b *FragmentBuilder) Len() int {
	if b.f == nil {
		return 0
	}
	return len(b.f.Buf)
}

// AddBlock appends a SimpleBlock for track (its index in the header's
// tracks is ti) at ptsMs, with payload made of the given parts
// concatenated (for example AVCC length prefixes and NAL units).
func (b *FragmentBuilder) AddBlock(ti int, ptsMs int64, key bool, parts ...[]byte) error {
	f := b.f
	rel := ptsMs - b.baseMs
	if rel < math.MinInt16 || rel > math.MaxInt16 {
		return ErrBlockOutOfRange
	}
	size := 4
	for _, p := range parts {
		size += len(p)
	}
	track := f.Header.Tracks[ti].Number
	f.Buf = appendID(f.Buf, IDSimpleBlock)
	// The block size as an 8-byte EBML vint: the length marker 0x01 fills
	// the first byte, the value the other seven.
	f.Buf = append(f.Buf, 0x01, byte(size>>48), byte(size>>40), byte(size>>32), byte(size>>24), byte(size>>16), byte(size>>8), byte(size))
	f.Buf = append(f.Buf, 0x80|byte(track), byte(uint16(rel)>>8), byte(uint16(rel)))
	flags := byte(0)
	if key {
		flags = 0x80
	}
	f.Buf = append(f.Buf, flags)
	for _, p := range parts {
		f.Buf = append(f.Buf, p...)
	}
	b.count(ti, int16(rel), key)
	return nil
}

// count adds a finished block to the fragment's statistics.
func (b *FragmentBuilder) count(ti int, off int16, key bool) {
	f := b.f
	if f.Frames == 0 {
		f.MinOffset, f.MaxOffset = off, off
	}
	f.MinOffset, f.MaxOffset = min(f.MinOffset, off), max(f.MaxOffset, off)
	f.Frames++
	if key {
		f.KeyFrames++
	}
	if ti < len(f.perTrack) {
		f.perTrack[ti]++
	}
	f.ClusterLen = len(f.Buf)
}

// BeginBlock writes the header of a SimpleBlock for track ti at ptsMs
// whose payload the caller then appends to Buf (handing the result back
// with SetBuf) before EndBlock or CancelBlock. No other block may be added
// while it is open.
func (b *FragmentBuilder) BeginBlock(ti int, ptsMs int64, key bool) error {
	f := b.f
	rel := ptsMs - b.baseMs
	if rel < math.MinInt16 || rel > math.MaxInt16 {
		return ErrBlockOutOfRange
	}
	track := f.Header.Tracks[ti].Number
	flags := byte(0)
	if key {
		flags = 0x80
	}
	f.Buf = appendID(f.Buf, IDSimpleBlock)
	b.blockAt = len(f.Buf)
	// The size (patched by EndBlock) as an 8-byte vint, as AddBlock writes it.
	f.Buf = append(f.Buf, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x80|byte(track), byte(uint16(rel)>>8), byte(uint16(rel)), flags)
	b.blockTI, b.blockRel, b.blockKey = ti, int16(rel), key
	return nil
}

// BlockOpen reports whether a block of BeginBlock is open.
func (b *FragmentBuilder) BlockOpen() bool { return b.f != nil && b.blockAt >= 0 }

// Buf is the fragment so far, an open block's payload included.
func (b *FragmentBuilder) Buf() []byte { return b.f.Buf }

// SetBuf replaces the fragment's bytes with buf, which must begin with
// Buf() (the caller appended to it, or copied it into a larger buffer).
func (b *FragmentBuilder) SetBuf(buf []byte) { b.f.Buf = buf }

// EndBlock closes the open block: its size is everything appended since
// BeginBlock.
func (b *FragmentBuilder) EndBlock() {
	f := b.f
	size := len(f.Buf) - b.blockAt - 8
	for i := 7; i >= 1; i-- {
		f.Buf[b.blockAt+i] = byte(size)
		size >>= 8
	}
	b.blockAt = -1
	b.count(b.blockTI, b.blockRel, b.blockKey)
}

// ClearBlockKey marks the open block as not a key frame (its key frame
// NAL units were lost).
func (b *FragmentBuilder) ClearBlockKey() {
	b.f.Buf[b.blockAt+8+3] &^= 0x80
	b.blockKey = false
}

// CancelBlock removes the open block and everything appended to it.
func (b *FragmentBuilder) CancelBlock() {
	b.f.Buf = b.f.Buf[:b.blockAt-1] // the one-byte SimpleBlock ID before it
	b.blockAt = -1
}

// Finish closes the fragment with the end-of-fragment tag and returns it.
func (b *FragmentBuilder) Finish() *Fragment {
	if b.BlockOpen() {
		b.CancelBlock() // never ended: not part of the fragment
	}
	f := b.f
	b.f = nil
	f.ClusterLen = len(f.Buf)
	f.Buf = AppendEndOfFragment(f.Buf)
	f.EndOfFragment = true
	return f
}
