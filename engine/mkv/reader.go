package mkv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"time"
)

// ErrIdle is what a Reader's source returns when no byte has arrived for a
// while (the caller's idle timer). It is not an end: the Reader closes the
// fragment in progress, if it has frames, and keeps reading.
var ErrIdle = errors.New("mkv: source idle")

// PutMedia ErrorIds (shared/kvs-api.md §4.3) that the Reader reports.
const (
	ErrIDStreamRead          = 4000
	ErrIDMaxFragmentSize     = 4001
	ErrIDMaxFragmentDuration = 4002
	ErrIDTimecodeLesser      = 4004
	ErrIDInvalidMKV          = 4006
	ErrIDInvalidTimestamp    = 4007
	ErrIDMetadataLimit       = 4009
	ErrIDTrackMismatch       = 4010
	ErrIDFramesMissing       = 4011
	ErrIDTooManyTracks       = 4012
)

var errorCodes = map[int]string{
	ErrIDStreamRead:          "STREAM_READ_ERROR",
	ErrIDMaxFragmentSize:     "MAX_FRAGMENT_SIZE_REACHED",
	ErrIDMaxFragmentDuration: "MAX_FRAGMENT_DURATION_REACHED",
	ErrIDTimecodeLesser:      "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS",
	ErrIDInvalidMKV:          "INVALID_MKV_DATA",
	ErrIDInvalidTimestamp:    "INVALID_PRODUCER_TIMESTAMP",
	ErrIDMetadataLimit:       "FRAGMENT_METADATA_LIMIT_REACHED",
	ErrIDTrackMismatch:       "TRACK_NUMBER_MISMATCH",
	ErrIDFramesMissing:       "FRAMES_MISSING_FOR_TRACK",
	ErrIDTooManyTracks:       "MORE_THAN_ALLOWED_TRACKS_FOUND",
}

// Error is a failure of the upload that KVS reports with an ERROR ack.
type Error struct {
	ID  int    // KVS ErrorId
	Msg string // what was wrong, for logs
}

func (e *Error) Error() string { return fmt.Sprintf("mkv: %s (%d): %s", e.Code(), e.ID, e.Msg) }

// Code is the SDK's name for ID.
func (e *Error) Code() string { return errorCodes[e.ID] }

func errf(id int, format string, args ...any) *Error {
	return &Error{ID: id, Msg: fmt.Sprintf(format, args...)}
}

// Track is one TrackEntry of a header.
type Track struct {
	Number        uint64
	Type          uint8 // 1 video, 2 audio
	CodecID       string
	CodecPrivate  []byte
	Width, Height int // video tracks, when the header says
}

// Header is the session header a fragment depends on.
type Header struct {
	// Raw is ready to start a GetMedia chunk: the producer's EBML header, a
	// Segment of unknown size (01 FF FF FF FF FF FF FF), then the
	// producer's Info and Tracks elements verbatim.
	Raw           []byte
	TimecodeScale uint64 // nanoseconds per timecode unit
	Tracks        []Track
}

// trackIndex returns the index in Tracks of the track numbered n, or -1.
func (h *Header) trackIndex(n uint64) int {
	for i := range h.Tracks {
		if h.Tracks[i].Number == n {
			return i
		}
	}
	return -1
}

// Fragment is one Cluster and the segment-level Tags that followed it.
type Fragment struct {
	Header *Header
	// Timecode is the cluster Timecode exactly as sent (timecode-scale
	// units); Ack timecodes echo it.
	Timecode uint64
	// Buf holds the Cluster element verbatim (its ID and size field as
	// sent, unknown size included), followed by the Tags elements that
	// came after it. Buf[:ClusterLen] is the cluster.
	Buf        []byte
	ClusterLen int
	// Frames counts blocks; KeyFrames those flagged as key frames.
	Frames, KeyFrames int
	// MinOffset and MaxOffset are the lowest and highest block timecodes
	// relative to Timecode.
	MinOffset, MaxOffset int16
	// perTrack counts blocks by the track's index in Header.Tracks.
	perTrack [4]int
	// MetaTags counts the producer's SimpleTags (other than
	// AWS_KINESISVIDEO_*); EndOfFragment reports the closing tag.
	MetaTags      int
	EndOfFragment bool
	// ClosedByIdle reports a fragment closed by the idle timer.
	ClosedByIdle bool
}

// Duration estimates the fragment's length: the span of its block
// timecodes plus one average frame interval.
func (f *Fragment) Duration() time.Duration {
	scale := time.Duration(f.Header.TimecodeScale)
	span := time.Duration(int64(f.MaxOffset)-int64(f.MinOffset)) * scale
	// Add one frame interval of the track with the most blocks (its
	// frames are evenly spread over the span).
	n := 0
	for _, c := range f.perTrack {
		n = max(n, c)
	}
	if n > 1 {
		span += span / time.Duration(n-1)
	}
	if span <= 0 {
		span = scale
	}
	return span
}

// Options bounds what a Reader accepts (KVS's PutMedia limits by default).
type Options struct {
	MaxFragmentBytes    int           // 50 MB
	MaxFragmentDuration time.Duration // 20 s
	MaxTracks           int           // 3
	MaxMetaTags         int           // 10
	// RequireEveryTrack refuses a fragment without a block of each
	// declared track (KVS's 4011, as PutMedia does); a client cutting a
	// file into fragments leaves it off.
	RequireEveryTrack bool
	// Buffers holds the fragments' bytes (default: the Go heap). A
	// fragment's buffer is the caller's once taken (TakeFragment); one in
	// progress when the reader stops is freed by Close.
	Buffers Buffers
	// BufferHint is the first buffer size for a cluster of unknown size
	// (later ones start at the previous fragment's size). Default 256 KiB.
	BufferHint int
	// OnBlock, when set, is called for every block the reader accepts,
	// as soon as it is complete (before its fragment is): the engine's
	// live tap. b.Payload is a view of the fragment's buffer, valid only
	// during the call.
	OnBlock func(h *Header, b Block)
}

// Buffers hands out the memory fragments are assembled in (the engine's
// media allocator; HeapBuffers by default).
type Buffers interface {
	// Grow returns b with room for at least n more bytes: b itself when
	// it has room, else a larger buffer holding b's bytes (b is then
	// released). A nil b starts a new fragment's buffer. On error b is
	// unchanged and still the caller's.
	Grow(b []byte, n int) ([]byte, error)
	// Free releases a buffer that will not be handed on.
	Free(b []byte)
}

// HeapBuffers are Go slices, grown by half again.
type HeapBuffers struct{}

func (HeapBuffers) Grow(b []byte, n int) ([]byte, error) {
	if cap(b)-len(b) >= n {
		return b, nil
	}
	g := make([]byte, len(b), len(b)+n+len(b)/2)
	copy(g, b)
	return g, nil
}

func (HeapBuffers) Free([]byte) {}

// BufferError is a fragment buffer the Buffers could not grow (the media
// memory budget is full): the reader stops, the error wrapped as is.
type BufferError struct{ Err error }

func (e *BufferError) Error() string { return "mkv: fragment buffer: " + e.Err.Error() }
func (e *BufferError) Unwrap() error { return e.Err }

// maxFirstBuffer bounds the buffer taken at once for a cluster that
// declares its size: a body that declares 50 MB and sends nothing holds
// no more than this.
const maxFirstBuffer = 8 << 20

func (o *Options) ensureDefaults() {
	if o.MaxFragmentBytes == 0 {
		o.MaxFragmentBytes = 50_000_000
	}
	if o.MaxFragmentDuration == 0 {
		o.MaxFragmentDuration = 20 * time.Second
	}
	if o.MaxTracks <= 0 || o.MaxTracks > len(Fragment{}.perTrack) {
		o.MaxTracks = 3
	}
	if o.MaxMetaTags == 0 {
		o.MaxMetaTags = 10
	}
	if o.Buffers == nil {
		o.Buffers = HeapBuffers{}
	}
	if o.BufferHint <= 0 {
		o.BufferHint = 256 << 10
	}
}

// Event is what Next found.
type Event int

const (
	// EventFragmentStart: a cluster began and its Timecode is known
	// (BUFFERING). Fragment() describes it.
	EventFragmentStart Event = iota + 1
	// EventFragmentEnd: the fragment is complete (RECEIVED); take it with
	// TakeFragment.
	EventFragmentEnd
)

// maxHeaderElem bounds each buffered header-area element (EBML header,
// Info, Tracks, Tags); real ones are well under 4 KiB.
const maxHeaderElem = 1 << 20

// Reader parses a PutMedia body incrementally. It is not safe for
// concurrent use.
type Reader struct {
	opts Options
	src  source

	// Header being assembled from the current EBML document.
	ebml, info, tracks []byte
	inSegment          bool
	hdr                *Header // header in effect for new clusters

	frag         *Fragment
	inCluster    bool
	clusterLeft  int64 // bytes left in a known-size cluster; unknownSize otherwise
	haveTimecode bool
	done         bool // frag is complete and waits for TakeFragment
	lastMs       int64
	haveLast     bool

	pending    bool // an element ID already read and not yet handled
	pendingID  uint32
	pendingRaw [4]byte
	pendingN   int
	eof        bool
	lastLen    int // the previous fragment's size, to size the next buffer
}

// NewReader reads a PutMedia body from r. r may return ErrIdle.
func NewReader(r io.Reader, opts Options) *Reader {
	opts.ensureDefaults()
	return &Reader{opts: opts, src: source{r: r, buf: make([]byte, 64<<10)}}
}

// Fragment is the fragment in progress (after EventFragmentStart).
func (r *Reader) Fragment() *Fragment { return r.frag }

// TakeFragment hands the completed fragment to the caller, who owns its
// buffer from then on.
func (r *Reader) TakeFragment() *Fragment {
	f := r.frag
	r.frag, r.done = nil, false
	if f != nil {
		r.lastLen = len(f.Buf)
	}
	return f
}

// Close frees the buffer of a fragment the caller did not take (one in
// progress when the body failed or ended). The reader is done.
func (r *Reader) Close() {
	r.dropFragment()
	r.eof = true
}

// dropFragment abandons the fragment in progress and frees its buffer.
func (r *Reader) dropFragment() {
	if r.frag != nil {
		r.opts.Buffers.Free(r.frag.Buf)
		r.frag.Buf = nil
		r.frag, r.done = nil, false
	}
}

// grow makes room for n more bytes in the fragment's buffer b.
func (r *Reader) grow(b []byte, n int) ([]byte, error) {
	if cap(b)-len(b) >= n {
		return b, nil
	}
	g, err := r.opts.Buffers.Grow(b, n)
	if err != nil {
		return b, &BufferError{Err: err}
	}
	return g, nil
}

// Next parses until the next event. It returns io.EOF at a clean end of
// the body, an *Error for content KVS rejects, or the source's error.
func (r *Reader) Next() (Event, error) {
	if r.done {
		return 0, errors.New("mkv: Next called before TakeFragment")
	}
	for {
		if r.eof {
			return 0, io.EOF
		}
		id, raw, n, err := r.nextID()
		switch {
		case errors.Is(err, ErrIdle):
			if r.frag != nil && r.frag.Frames > 0 {
				r.frag.ClosedByIdle = true
				return r.closeFragment()
			}
			continue
		case errors.Is(err, io.EOF):
			r.eof = true
			if r.frag != nil {
				if r.inCluster && r.clusterLeft != unknownSize && r.clusterLeft > 0 {
					return 0, errf(ErrIDInvalidMKV, "body ended %d bytes before the end its cluster declared", r.clusterLeft)
				}
				return r.closeFragment()
			}
			return 0, io.EOF
		case err != nil:
			return 0, r.readErr(err)
		}
		if r.inCluster {
			if ev, handled, err := r.clusterChild(id, raw[:n]); handled || err != nil {
				if err != nil {
					return 0, r.readErr(err)
				}
				if ev != 0 {
					return ev, nil
				}
				continue
			}
			r.inCluster = false // an element that cannot be a child ends the cluster
		}
		ev, err := r.topLevel(id, raw[:n])
		if err != nil {
			return 0, r.readErr(err)
		}
		if ev != 0 {
			return ev, nil
		}
	}
}

func (r *Reader) readErr(err error) error {
	var be *BufferError
	if errors.As(err, &be) {
		return be
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errf(ErrIDInvalidMKV, "body ended inside an element")
	}
	var me *Error
	if errors.As(err, &me) {
		return me
	}
	return &Error{ID: ErrIDStreamRead, Msg: err.Error()}
}

// unread makes the element ID just read the next one Next sees.
func (r *Reader) unread(id uint32, raw []byte) {
	r.pending, r.pendingID, r.pendingN = true, id, copy(r.pendingRaw[:], raw)
}

func (r *Reader) closeFragment() (Event, error) {
	f := r.frag
	r.inCluster = false
	if f.Frames == 0 {
		r.dropFragment()
		return 0, errf(ErrIDFramesMissing, "fragment %d has no frames", f.Timecode)
	}
	if r.opts.RequireEveryTrack {
		for i, tr := range f.Header.Tracks {
			if f.perTrack[i] == 0 {
				r.dropFragment()
				return 0, errf(ErrIDFramesMissing, "fragment %d has no frames of track %d", f.Timecode, tr.Number)
			}
		}
	}
	if f.MetaTags > r.opts.MaxMetaTags {
		r.dropFragment()
		return 0, errf(ErrIDMetadataLimit, "%d metadata tags, at most %d", f.MetaTags, r.opts.MaxMetaTags)
	}
	r.done = true
	return EventFragmentEnd, nil
}

// topLevel handles an element at Segment level (or before one).
func (r *Reader) topLevel(id uint32, raw []byte) (Event, error) {
	switch id {
	case IDEBML:
		if r.frag != nil {
			r.unread(id, raw)
			return r.closeFragment()
		}
		b, err := r.readWhole(nil, raw, maxHeaderElem, false)
		if err != nil {
			return 0, err
		}
		r.ebml, r.info, r.tracks, r.inSegment = b, nil, nil, false
		return 0, nil
	case IDSegment:
		if r.frag != nil {
			r.unread(id, raw)
			return r.closeFragment()
		}
		if r.ebml == nil || r.inSegment {
			return 0, errf(ErrIDInvalidMKV, "Segment without its own EBML header")
		}
		if _, _, err := r.readSize(); err != nil {
			return 0, err
		}
		r.inSegment = true
		return 0, nil
	case IDInfo, IDTracks:
		if !r.inSegment {
			return 0, errf(ErrIDInvalidMKV, "element %X outside a Segment", id)
		}
		if r.frag != nil {
			r.unread(id, raw)
			return r.closeFragment()
		}
		b, err := r.readWhole(nil, raw, maxHeaderElem, false)
		if err != nil {
			return 0, err
		}
		if id == IDInfo {
			r.info = b
		} else {
			r.tracks = b
		}
		r.hdr = nil // a new header applies to the next cluster
		return 0, nil
	case IDCluster:
		if r.frag != nil {
			r.unread(id, raw)
			return r.closeFragment()
		}
		if !r.inSegment {
			return 0, errf(ErrIDInvalidMKV, "Cluster outside a Segment")
		}
		if r.hdr == nil {
			h, err := r.buildHeader()
			if err != nil {
				return 0, err
			}
			r.hdr = h
		}
		sizeRaw, size, err := r.readSize()
		if err != nil {
			return 0, err
		}
		if size != unknownSize && size > int64(r.opts.MaxFragmentBytes) {
			return 0, errf(ErrIDMaxFragmentSize, "cluster declares %d bytes, more than a fragment may hold (%d)", size, r.opts.MaxFragmentBytes)
		}
		// A declared size sizes the buffer (up to maxFirstBuffer); an
		// unknown one starts at the previous fragment's size.
		hint := len(raw) + len(sizeRaw)
		switch {
		case size != unknownSize:
			hint += int(min(size, maxFirstBuffer))
		case r.lastLen > 0:
			hint += r.lastLen + r.lastLen/8
		default:
			hint += r.opts.BufferHint
		}
		buf, err := r.opts.Buffers.Grow(nil, hint)
		if err != nil {
			return 0, &BufferError{Err: err}
		}
		buf = append(buf, raw...)
		buf = append(buf, sizeRaw...)
		r.frag = &Fragment{Header: r.hdr, Buf: buf}
		r.inCluster, r.clusterLeft, r.haveTimecode = true, size, false
		return 0, nil
	case IDTags:
		if r.frag == nil {
			// Tags before the first cluster, or an upload of only the
			// leftover Tags of an earlier one: nothing to attach them to.
			_, err := r.skipElem()
			return 0, err
		}
		start := len(r.frag.Buf)
		// Tags count towards the fragment's size limit like its blocks.
		limit := min(maxHeaderElem, r.opts.MaxFragmentBytes-len(r.frag.Buf))
		if limit <= 0 {
			return 0, errf(ErrIDMaxFragmentSize, "fragment exceeds %d bytes", r.opts.MaxFragmentBytes)
		}
		b, err := r.readWhole(r.frag.Buf, raw, limit, true)
		if err != nil {
			var me *Error
			if errors.As(err, &me) && me.ID == ErrIDInvalidMKV && limit < maxHeaderElem {
				return 0, errf(ErrIDMaxFragmentSize, "fragment exceeds %d bytes", r.opts.MaxFragmentBytes)
			}
			return 0, err
		}
		r.frag.Buf = b
		meta, eof, ok := scanTags(b[start:])
		if !ok {
			return 0, errf(ErrIDInvalidMKV, "malformed Tags element")
		}
		r.frag.MetaTags += meta
		if eof {
			r.frag.EndOfFragment = true
			return r.closeFragment()
		}
		return 0, nil
	case IDSimpleBlock, IDBlockGroup, IDTimecode:
		return 0, errf(ErrIDInvalidMKV, "cluster element %X outside a cluster (after the fragment was closed)", id)
	}
	if !r.inSegment && r.ebml == nil {
		return 0, errf(ErrIDInvalidMKV, "body does not start with an EBML header (element %X)", id)
	}
	// SeekHead, Void, Cues, Chapters, Attachments, CRC-32 and unknown
	// elements carry nothing a fragment needs.
	unknown, err := r.skipElem()
	if err != nil {
		return 0, err
	}
	if unknown {
		return 0, errf(ErrIDInvalidMKV, "element %X of unknown size at Segment level", id)
	}
	return 0, nil
}

// buildHeader assembles the header for the clusters that follow.
func (r *Reader) buildHeader() (*Header, error) {
	if r.info == nil || r.tracks == nil {
		return nil, errf(ErrIDInvalidMKV, "Cluster before Info and Tracks")
	}
	h := &Header{TimecodeScale: 1_000_000}
	ok := walk(r.info[elemHeaderLen(r.info):], func(id uint32, p []byte) bool {
		if id == IDTimecodeScale && len(p) > 0 && len(p) <= 8 {
			h.TimecodeScale = readUint(p)
		}
		return true
	})
	if !ok || h.TimecodeScale == 0 || h.TimecodeScale > uint64(time.Second) {
		return nil, errf(ErrIDInvalidMKV, "malformed Info or TimecodeScale")
	}
	ok = walk(r.tracks[elemHeaderLen(r.tracks):], func(id uint32, p []byte) bool {
		if id != IDTrackEntry {
			return true
		}
		var t Track
		good := walk(p, func(id uint32, v []byte) bool {
			switch id {
			case IDTrackNumber:
				t.Number = readUint(v)
			case IDTrackType:
				t.Type = uint8(readUint(v))
			case IDCodecID:
				t.CodecID = string(bytes.TrimRight(v, "\x00"))
			case IDCodecPrivate:
				t.CodecPrivate = append([]byte(nil), v...)
			case idVideo:
				walk(v, func(id uint32, v []byte) bool {
					switch id {
					case idPixelWidth:
						t.Width = int(readUint(v))
					case idPixelHeight:
						t.Height = int(readUint(v))
					}
					return true
				})
			}
			return true
		})
		if !good || t.Number == 0 {
			return false
		}
		h.Tracks = append(h.Tracks, t)
		return true
	})
	if !ok || len(h.Tracks) == 0 {
		return nil, errf(ErrIDInvalidMKV, "malformed Tracks")
	}
	if len(h.Tracks) > r.opts.MaxTracks {
		return nil, errf(ErrIDTooManyTracks, "%d tracks, at most %d", len(h.Tracks), r.opts.MaxTracks)
	}
	raw := make([]byte, 0, len(r.ebml)+12+len(r.info)+len(r.tracks))
	raw = append(raw, r.ebml...)
	raw = appendID(raw, IDSegment)
	raw = append(raw, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF)
	raw = append(raw, r.info...)
	raw = append(raw, r.tracks...)
	h.Raw = raw
	return h, nil
}

// elemHeaderLen is the length of a complete element's ID and size fields.
func elemHeaderLen(b []byte) int {
	n := vintLen(b[0])
	return n + vintLen(b[n])
}

func isClusterChild(id uint32) bool {
	switch id {
	case IDTimecode, IDPosition, IDPrevSize, IDSimpleBlock, IDBlockGroup, IDVoid, IDCRC32, IDSilentTracks:
		return true
	}
	return false
}

// clusterChild handles an element inside a cluster; handled is false when
// the element ends the cluster instead.
func (r *Reader) clusterChild(id uint32, raw []byte) (ev Event, handled bool, err error) {
	if !isClusterChild(id) {
		if r.clusterLeft > 0 {
			return 0, true, errf(ErrIDInvalidMKV, "element %X inside a cluster", id)
		}
		return 0, false, nil
	}
	f := r.frag
	start := len(f.Buf)
	sizeRaw, size, err := r.readSize()
	if err != nil {
		return 0, true, err
	}
	if size == unknownSize {
		return 0, true, errf(ErrIDInvalidMKV, "cluster child %X of unknown size", id)
	}
	if int64(len(f.Buf))+int64(len(raw)+len(sizeRaw))+size > int64(r.opts.MaxFragmentBytes) {
		return 0, true, errf(ErrIDMaxFragmentSize, "fragment exceeds %d bytes", r.opts.MaxFragmentBytes)
	}
	if f.Buf, err = r.grow(f.Buf, len(raw)+len(sizeRaw)+int(size)); err != nil {
		return 0, true, err
	}
	f.Buf = append(f.Buf, raw...)
	f.Buf = append(f.Buf, sizeRaw...)
	hdrLen := len(f.Buf) - start
	f.Buf, err = r.src.appendN(f.Buf, int(size))
	if err != nil {
		return 0, true, err
	}
	payload := f.Buf[start+hdrLen:]
	f.ClusterLen = len(f.Buf)
	if r.clusterLeft != unknownSize {
		r.clusterLeft -= int64(hdrLen) + size
		if r.clusterLeft <= 0 {
			r.inCluster = false
		}
	}
	switch id {
	case IDTimecode:
		if r.haveTimecode || len(payload) == 0 || len(payload) > 8 {
			return 0, true, errf(ErrIDInvalidMKV, "malformed or repeated cluster Timecode")
		}
		f.Timecode = readUint(payload)
		r.haveTimecode = true
		// A cluster time whose nanoseconds do not fit an int64 (after the
		// year 2262) is no producer's clock, and would overflow the
		// millisecond arithmetic downstream.
		if hi, lo := bits.Mul64(f.Timecode, f.Header.TimecodeScale); hi != 0 || lo > math.MaxInt64 {
			return 0, true, errf(ErrIDInvalidTimestamp, "cluster timecode %d × %d ns is after the year 2262", f.Timecode, f.Header.TimecodeScale)
		}
		ms := int64(f.Timecode * f.Header.TimecodeScale / 1e6)
		if r.haveLast && ms <= r.lastMs {
			return 0, true, errf(ErrIDTimecodeLesser, "timecode %d ms is not after the previous fragment's %d ms", ms, r.lastMs)
		}
		r.lastMs, r.haveLast = ms, true
		return EventFragmentStart, true, nil
	case IDSimpleBlock:
		return 0, true, r.block(payload)
	case IDBlockGroup:
		var blk []byte
		key := true
		ok := walk(payload, func(id uint32, v []byte) bool {
			switch id {
			case IDBlock:
				blk = v
			case IDReferenceBlk:
				key = false
			}
			return true
		})
		if !ok || len(blk) < 4 {
			return 0, true, errf(ErrIDInvalidMKV, "malformed BlockGroup")
		}
		return 0, true, r.blockHeader(blk, key)
	}
	return 0, true, nil
}

// block checks a SimpleBlock payload.
func (r *Reader) block(payload []byte) error {
	if len(payload) < 4 {
		return errf(ErrIDInvalidMKV, "SimpleBlock too short")
	}
	n := vintLen(payload[0])
	if n == 0 || len(payload) < n+3 {
		return errf(ErrIDInvalidMKV, "malformed SimpleBlock header")
	}
	return r.blockHeader(payload, payload[n+2]&0x80 != 0)
}

// blockHeader checks a block's track number and timecode.
func (r *Reader) blockHeader(b []byte, key bool) error {
	f := r.frag
	if !r.haveTimecode {
		return errf(ErrIDInvalidMKV, "block before the cluster Timecode")
	}
	if len(b) == 0 {
		return errf(ErrIDInvalidMKV, "empty block")
	}
	n := vintLen(b[0])
	if n == 0 || len(b) < n+3 {
		return errf(ErrIDInvalidMKV, "malformed block header")
	}
	track := uint64(b[0] & (0xFF >> n))
	for _, c := range b[1:n] {
		track = track<<8 | uint64(c)
	}
	ti := f.Header.trackIndex(track)
	if ti < 0 {
		return errf(ErrIDTrackMismatch, "block for track %d, which Tracks does not declare", track)
	}
	f.perTrack[ti]++
	off := int16(uint16(b[n])<<8 | uint16(b[n+1]))
	if f.Frames == 0 {
		if !key {
			return errf(ErrIDInvalidMKV, "fragment does not start with a key frame")
		}
		f.MinOffset, f.MaxOffset = off, off
	}
	f.MinOffset, f.MaxOffset = min(f.MinOffset, off), max(f.MaxOffset, off)
	f.Frames++
	if key {
		f.KeyFrames++
	}
	// The span from the earliest to the latest block counts, so blocks
	// before the cluster's timecode (negative offsets) cannot hide length.
	if time.Duration(int64(f.MaxOffset)-int64(min(f.MinOffset, 0)))*time.Duration(f.Header.TimecodeScale) > r.opts.MaxFragmentDuration {
		return errf(ErrIDMaxFragmentDuration, "fragment blocks span more than %v", r.opts.MaxFragmentDuration)
	}
	if r.opts.OnBlock != nil {
		scale := int64(f.Header.TimecodeScale)
		tc := int64(f.Timecode)
		r.opts.OnBlock(f.Header, Block{Track: track, TimeMs: (tc + int64(off)) * scale / 1e6, ClusterMs: tc * scale / 1e6, Key: key, Payload: b[n+3:]})
	}
	return nil
}

// scanTags parses a complete Tags element: how many producer SimpleTags it
// holds and whether one is AWS_KINESISVIDEO_END_OF_FRAGMENT.
func scanTags(b []byte) (meta int, eof, ok bool) {
	var simple func(p []byte) bool
	simple = func(p []byte) bool {
		return walk(p, func(id uint32, v []byte) bool {
			switch id {
			case IDTagName:
				name := bytes.TrimRight(v, "\x00")
				switch {
				case string(name) == "AWS_KINESISVIDEO_END_OF_FRAGMENT":
					eof = true
				case !bytes.HasPrefix(name, []byte("AWS_KINESISVIDEO_")):
					meta++
				}
			case IDSimpleTag:
				return simple(v)
			}
			return true
		})
	}
	ok = walk(b[elemHeaderLen(b):], func(id uint32, v []byte) bool {
		if id != IDTag {
			return true
		}
		return walk(v, func(id uint32, v []byte) bool {
			if id == IDSimpleTag {
				return simple(v)
			}
			return true
		})
	})
	return meta, eof, ok
}

// nextID returns the next element ID (the pending one first). Only here,
// at an element boundary, does the Reader report ErrIdle and io.EOF.
func (r *Reader) nextID() (id uint32, raw [4]byte, n int, err error) {
	if r.pending {
		r.pending = false
		return r.pendingID, r.pendingRaw, r.pendingN, nil
	}
	if err := r.src.fill(1, true); err != nil {
		return 0, raw, 0, err
	}
	n = vintLen(r.src.peek())
	if n == 0 || n > 4 {
		return 0, raw, 0, errf(ErrIDInvalidMKV, "invalid element ID byte %#x", r.src.peek())
	}
	if err := r.src.fill(n, false); err != nil {
		return 0, raw, 0, err
	}
	copy(raw[:], r.src.take(n))
	return uint32(readUint(raw[:n])), raw, n, nil
}

// readSize reads a size field; it returns the raw bytes (valid until the
// next read) and the size (unknownSize for all ones).
func (r *Reader) readSize() ([]byte, int64, error) {
	if err := r.src.fill(1, false); err != nil {
		return nil, 0, err
	}
	n := vintLen(r.src.peek())
	if n == 0 {
		return nil, 0, errf(ErrIDInvalidMKV, "invalid size field")
	}
	if err := r.src.fill(n, false); err != nil {
		return nil, 0, err
	}
	raw := r.src.take(n)
	return raw, decodeSize(raw), nil
}

// readWhole appends a complete known-size element (ID raw, size, payload)
// to dst, refusing one larger than limit.
func (r *Reader) readWhole(dst, raw []byte, limit int, intoFragment bool) ([]byte, error) {
	sizeRaw, size, err := r.readSize()
	if err != nil {
		return nil, err
	}
	if size == unknownSize || size > int64(limit) {
		return nil, errf(ErrIDInvalidMKV, "element %X of %d bytes (unknown or over %d)", readUint(raw), size, limit)
	}
	if intoFragment {
		if dst, err = r.grow(dst, len(raw)+len(sizeRaw)+int(size)); err != nil {
			return nil, err
		}
		r.frag.Buf = dst // grown (and moved): the old buffer is gone
	}
	dst = append(dst, raw...)
	dst = append(dst, sizeRaw...)
	return r.src.appendN(dst, int(size))
}

// skipElem discards an element's payload; unknown reports an unknown size
// (nothing skipped).
func (r *Reader) skipElem() (unknown bool, err error) {
	_, size, err := r.readSize()
	if err != nil {
		return false, err
	}
	if size == unknownSize {
		return true, nil
	}
	return false, r.src.skip(size)
}

// source is a small buffered reader that knows element boundaries from
// mid-element reads: ErrIdle and a clean io.EOF pass through only when
// fill is called with atBoundary and nothing is buffered.
type source struct {
	r    io.Reader
	buf  []byte
	rpos int
	wpos int
	err  error // sticky error other than ErrIdle
}

func (s *source) buffered() int { return s.wpos - s.rpos }
func (s *source) peek() byte    { return s.buf[s.rpos] }

func (s *source) take(n int) []byte {
	b := s.buf[s.rpos : s.rpos+n]
	s.rpos += n
	return b
}

// fillAhead is how far past what it was asked for fill reads: enough for
// the next few element headers (a block's ID, size and block header are
// under 20 bytes), little of the payload after them.
const fillAhead = 256

// fill makes at least n (≤ len(buf)) bytes available. It reads no more
// than n plus fillAhead, so a block's payload, which follows the header
// fill was asked for, is mostly read by appendN straight into its
// fragment's buffer: through this buffer it would be copied twice (a
// PutMedia upload spent 12 % of its CPU on that second copy).
func (s *source) fill(n int, atBoundary bool) error {
	for s.buffered() < n {
		if s.err != nil {
			if s.err == io.EOF && (!atBoundary || s.buffered() > 0) {
				return io.ErrUnexpectedEOF
			}
			return s.err
		}
		if s.rpos > 0 && s.rpos+n > len(s.buf) {
			s.wpos = copy(s.buf, s.buf[s.rpos:s.wpos])
			s.rpos = 0
		}
		m, err := s.r.Read(s.buf[s.wpos:min(len(s.buf), s.rpos+n+fillAhead)])
		s.wpos += m
		switch {
		case err == nil:
		case errors.Is(err, ErrIdle):
			if atBoundary && s.buffered() == 0 {
				return ErrIdle
			}
		default:
			s.err = err
		}
	}
	return nil
}

// appendN appends the next n bytes to dst, reading straight into dst once
// the buffer is drained.
func (s *source) appendN(dst []byte, n int) ([]byte, error) {
	if k := min(n, s.buffered()); k > 0 {
		dst = append(dst, s.take(k)...)
		n -= k
	}
	if n == 0 {
		return dst, nil
	}
	if cap(dst)-len(dst) < n {
		grown := make([]byte, len(dst), len(dst)+n+len(dst)/2)
		copy(grown, dst)
		dst = grown
	}
	for n > 0 {
		if s.err != nil {
			if s.err == io.EOF {
				return dst, io.ErrUnexpectedEOF
			}
			return dst, s.err
		}
		m, err := s.r.Read(dst[len(dst) : len(dst)+n])
		dst = dst[:len(dst)+m]
		n -= m
		if err != nil && !errors.Is(err, ErrIdle) {
			s.err = err
		}
	}
	return dst, nil
}

// skip discards n bytes.
func (s *source) skip(n int64) error {
	for n > 0 {
		if s.buffered() == 0 {
			if err := s.fill(1, false); err != nil {
				return err
			}
		}
		k := min(n, int64(s.buffered()))
		s.rpos += int(k)
		n -= k
	}
	return nil
}
