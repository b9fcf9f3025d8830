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
// header with the size left open, the caller appends the payload (Append,
// AppendUint32; Truncate cuts back what it appended, Buf patches it in
// place), and EndBlock fills in the size (CancelBlock removes the block
// instead). A camera's depacketiser writes NAL units straight from RTP
// payloads this way, so an access unit is never assembled anywhere else
// first.
//
// Buffer ownership: the fragment's buffer comes from Buffers and only
// ever grows through it (Start, AddBlock, BeginBlock, Reserve, Append,
// Finish), so every byte of it is counted against the media budget and it
// is never replaced behind the builder's back. It is the caller's once
// Finish returns it; Discard frees one in progress. A failed growth
// (*BufferError: the budget has no room) leaves the fragment as it was,
// still the builder's: the caller goes on or Discards it. A builder must
// not be copied while a fragment is in progress (it points into itself).
type FragmentBuilder struct {
	// Buffers holds the fragments' bytes (nil: the Go heap).
	Buffers Buffers
	// OnBlock, when set, is called for every block as it is complete
	// (AddBlock, EndBlock), before its fragment is: the engine's live
	// tap. b.Payload is a view of the buffer, valid only during the call.
	OnBlock func(h *Header, b Block)
	// f is the fragment in progress (nil: none): &cur, so starting one
	// allocates nothing; Finish copies it out.
	f      *Fragment
	cur    Fragment
	baseMs int64
	// The open block of BeginBlock: where its 8-byte size field starts
	// (-1: none), its track index, relative timecode and key flag.
	blockAt  int
	blockTI  int
	blockRel int16
	blockKey bool
}

func (b *FragmentBuilder) buffers() Buffers {
	if b.Buffers == nil {
		return HeapBuffers{}
	}
	return b.Buffers
}

// grow makes room for n more bytes in the fragment's buffer.
func (b *FragmentBuilder) grow(n int) error {
	f := b.f
	if cap(f.Buf)-len(f.Buf) >= n {
		return nil
	}
	g, err := b.buffers().Grow(f.Buf, n)
	if err != nil {
		return &BufferError{Err: err}
	}
	f.Buf = g
	return nil
}

// ErrBlockOutOfRange: a block is more than 32.767 s from its cluster's
// timecode (the int16 block timecode): the caller must start a new
// fragment first.
var ErrBlockOutOfRange = errors.New("mkv: block timecode out of the cluster's range")

// minFragmentBuffer is the least a fragment's buffer starts with: room
// for the cluster's header (Restart rewrites it in place).
const minFragmentBuffer = 64

// Start begins a fragment whose cluster timecode is timecodeMs (1 ms
// timecode scale) in a buffer with room for about hint bytes (it grows
// as blocks are added). It fails only when Buffers has no room
// (*BufferError).
func (b *FragmentBuilder) Start(h *Header, timecodeMs int64, hint int) error {
	buf, err := b.buffers().Grow(nil, max(hint, minFragmentBuffer))
	if err != nil {
		return &BufferError{Err: err}
	}
	b.cur = Fragment{Header: h, Buf: appendClusterStart(buf[:0], timecodeMs), Timecode: uint64(timecodeMs)}
	b.f = &b.cur
	b.baseMs = timecodeMs
	b.blockAt = -1
	return nil
}

// appendClusterStart writes a cluster's ID, unknown size (as the KVS
// producer writes) and timecode: at most 15 bytes.
func appendClusterStart(buf []byte, timecodeMs int64) []byte {
	buf = appendID(buf, IDCluster)
	buf = append(buf, 0xFF)
	return appendUintElem(buf, IDTimecode, uint64(timecodeMs))
}

// Restart begins the fragment in progress again at timecodeMs, in the
// same buffer, with none of its blocks: for a fragment whose first block
// was cancelled, which then starts at the next one.
func (b *FragmentBuilder) Restart(timecodeMs int64) {
	f := b.f
	if b.BlockOpen() {
		b.CancelBlock()
	}
	// Start gave the buffer at least minFragmentBuffer bytes: the header
	// fits without growing.
	*f = Fragment{Header: f.Header, Buf: appendClusterStart(f.Buf[:0], timecodeMs), Timecode: uint64(timecodeMs)}
	b.baseMs = timecodeMs
}

// Discard drops the fragment in progress, if any, and frees its buffer.
func (b *FragmentBuilder) Discard() {
	if b.f != nil {
		b.buffers().Free(b.f.Buf)
		b.f, b.cur = nil, Fragment{}
	}
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
	// ID (1), size (8), then the block.
	if err := b.grow(9 + size); err != nil {
		return err
	}
	track := f.Header.Tracks[ti].Number
	f.Buf = appendID(f.Buf, IDSimpleBlock)
	// The block size as an 8-byte EBML vint: the length marker 0x01 fills
	// the first byte, the value the other seven.
	n := uint64(size)
	f.Buf = append(f.Buf, 0x01, byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
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
	if b.OnBlock != nil {
		b.OnBlock(f.Header, Block{Track: track, TimeMs: ptsMs, ClusterMs: b.baseMs, Key: key, Payload: f.Buf[len(f.Buf)-(size-4):]})
	}
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

// blockHeaderLen is what BeginBlock writes: the SimpleBlock ID, its
// 8-byte size, the track number, relative timecode and flags.
const blockHeaderLen = 1 + 8 + 4

// BeginBlock writes the header of a SimpleBlock for track ti at ptsMs
// whose payload the caller then appends (Append, AppendUint32) before
// EndBlock or CancelBlock. No other block may be added while it is open.
// It fails with ErrBlockOutOfRange, or *BufferError when Buffers has no
// room (nothing is written either way).
func (b *FragmentBuilder) BeginBlock(ti int, ptsMs int64, key bool) error {
	f := b.f
	rel := ptsMs - b.baseMs
	if rel < math.MinInt16 || rel > math.MaxInt16 {
		return ErrBlockOutOfRange
	}
	if err := b.grow(blockHeaderLen); err != nil {
		return err
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

// Reserve makes room for n more bytes in the fragment's buffer (through
// Buffers), so that many appended next do not grow it. It fails only when
// Buffers has no room (*BufferError; the fragment is unchanged).
func (b *FragmentBuilder) Reserve(n int) error { return b.grow(n) }

// Append appends p to the open block's payload, growing the buffer
// through Buffers. It fails only when Buffers has no room (*BufferError;
// nothing is appended).
func (b *FragmentBuilder) Append(p []byte) error {
	if err := b.grow(len(p)); err != nil {
		return err
	}
	b.f.Buf = append(b.f.Buf, p...)
	return nil
}

// AppendUint32 appends v big-endian (a NAL unit's length) to the open
// block's payload, as Append.
func (b *FragmentBuilder) AppendUint32(v uint32) error {
	if err := b.grow(4); err != nil {
		return err
	}
	b.f.Buf = append(b.f.Buf, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	return nil
}

// Truncate cuts the fragment back to its first n bytes (what was appended
// after n goes; the buffer stays the same). n must lie within the open
// block's payload; otherwise, or with no block open, it does nothing.
func (b *FragmentBuilder) Truncate(n int) {
	if b.BlockOpen() && n >= b.blockAt+8+4 && n <= len(b.f.Buf) {
		b.f.Buf = b.f.Buf[:n]
	}
}

// Buf is the fragment so far, an open block's payload included: for
// reading or patching in place what was appended (never for appending:
// use Append). Valid until the next append.
func (b *FragmentBuilder) Buf() []byte { return b.f.Buf }

// EndBlock closes the open block: its size is everything appended since
// BeginBlock.
func (b *FragmentBuilder) EndBlock() {
	f := b.f
	size := len(f.Buf) - b.blockAt - 8
	for i := 7; i >= 1; i-- {
		f.Buf[b.blockAt+i] = byte(size)
		size >>= 8
	}
	payload := f.Buf[b.blockAt+8+4:]
	b.blockAt = -1
	b.count(b.blockTI, b.blockRel, b.blockKey)
	if b.OnBlock != nil {
		b.OnBlock(f.Header, Block{Track: f.Header.Tracks[b.blockTI].Number, TimeMs: b.baseMs + int64(b.blockRel), ClusterMs: b.baseMs, Key: b.blockKey, Payload: payload})
	}
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

// Finish closes the fragment with the end-of-fragment tag and returns it
// (the caller owns it and its buffer); a block still open is not part of
// it. It fails only when Buffers has no room for the tag; the fragment is
// then discarded.
func (b *FragmentBuilder) Finish() (*Fragment, error) {
	f := new(Fragment)
	if err := b.FinishInto(f); err != nil {
		return nil, err
	}
	return f, nil
}

// FinishInto is Finish into the caller's *dst (the caller owns the
// buffer from here on), so that a steady stream of fragments allocates
// no Fragment per fragment.
func (b *FragmentBuilder) FinishInto(dst *Fragment) error {
	if b.BlockOpen() {
		b.CancelBlock() // never ended: not part of the fragment
	}
	if err := b.grow(len(endOfFragmentTag)); err != nil {
		b.Discard()
		return err
	}
	*dst = *b.f
	b.f, b.cur = nil, Fragment{}
	dst.ClusterLen = len(dst.Buf)
	dst.Buf = AppendEndOfFragment(dst.Buf)
	dst.EndOfFragment = true
	return nil
}

var endOfFragmentTag = AppendEndOfFragment(nil)
