// Package mkvcheck is the Matroska checker the tests of every package share:
// it splits a GetMedia or GetMediaForFragmentList response into its chunks
// (EBML header, Segment, Info, Tracks, the Tags with the AWS_KINESISVIDEO_*
// tags, Cluster, trailing Tags; shared/kvs-api.md §5, §10.3), parses a
// PutMedia body into its fragments with the byte offsets a test needs to
// edit it, lists frames, and builds elements for hand-made bodies.
//
// Session headers and frames are decoded by engine/mkv (ParseHeader,
// ForEachBlock). The walk over elements, and the offsets it reports, are
// this package's own, written from the Matroska spec: a test does not take
// the server's reader's word for where an element begins and ends.
//
// It is test support: only _test.go files import it (internal/archtest).
// Functions that take a testing.TB fail the test; the others return errors.
package mkvcheck

import (
	"errors"
	"fmt"

	"github.com/kvsedge/kvsedge/engine/mkv"
)

// errShort reports that an element is not complete yet (streaming parse).
var errShort = errors.New("mkvcheck: need more data")

// Element is one EBML element of a buffer. Size is -1 for an unknown size.
// A Segment found by Walk is transparent: End == DataOff and its children
// follow it as siblings.
type Element struct {
	ID                uint32
	Off, DataOff, End int
	Size              int64
}

// Data is the element's payload in b, the buffer it was found in.
func (e Element) Data(b []byte) []byte { return b[e.DataOff:e.End] }

// endsCluster are the IDs that end an unknown-size Cluster: Segment
// children that cannot be its own, and the start of a new document.
var endsCluster = map[uint32]bool{
	mkv.IDEBML: true, mkv.IDSegment: true, mkv.IDSeekHead: true, mkv.IDInfo: true, mkv.IDTracks: true,
	mkv.IDCluster: true, mkv.IDCues: true, mkv.IDTags: true, mkv.IDChapters: true, mkv.IDAttachments: true,
}

// readID reads an element ID (1–4 bytes, marker bits kept).
func readID(b []byte) (uint32, int, error) {
	if len(b) == 0 {
		return 0, 0, errShort
	}
	n := 0
	for i := 0; i < 4; i++ {
		if b[0]&(0x80>>i) != 0 {
			n = i + 1
			break
		}
	}
	if n == 0 {
		return 0, 0, fmt.Errorf("ebml: invalid ID byte %#x", b[0])
	}
	if len(b) < n {
		return 0, 0, errShort
	}
	var id uint32
	for i := 0; i < n; i++ {
		id = id<<8 | uint32(b[i])
	}
	return id, n, nil
}

// readVint reads a size or track-number vint (marker removed); unknown is
// true for the all-ones value.
func readVint(b []byte) (v uint64, n int, unknown bool, err error) {
	if len(b) == 0 {
		return 0, 0, false, errShort
	}
	for i := 0; i < 8; i++ {
		if b[0]&(0x80>>i) != 0 {
			n = i + 1
			break
		}
	}
	if n == 0 {
		return 0, 0, false, fmt.Errorf("ebml: invalid vint byte %#x", b[0])
	}
	if len(b) < n {
		return 0, 0, false, errShort
	}
	v = uint64(b[0] & (0xFF >> n))
	allOnes := v == uint64(0xFF>>n)
	for i := 1; i < n; i++ {
		v = v<<8 | uint64(b[i])
		allOnes = allOnes && b[i] == 0xFF
	}
	return v, n, allOnes, nil
}

// next parses the top-level element at pos. An unknown-size element (only
// a Cluster is expected) ends at the next ID in endsCluster, or at len(b)
// when eof is true. Without eof, an element not complete yet is errShort.
func next(b []byte, pos int, eof bool) (Element, error) {
	id, idLen, err := readID(b[pos:])
	if err == nil {
		var size uint64
		var szLen int
		var unknown bool
		size, szLen, unknown, err = readVint(b[pos+idLen:])
		if err == nil {
			e := Element{ID: id, Off: pos, DataOff: pos + idLen + szLen, Size: int64(size)}
			switch {
			case id == mkv.IDSegment:
				if unknown {
					e.Size = -1
				}
				e.End = e.DataOff
				return e, nil
			case unknown:
				e.Size = -1
				e.End, err = scanUnknown(b, e.DataOff, eof)
				if err != nil {
					return Element{}, err
				}
				return e, nil
			case size > uint64(len(b)-e.DataOff):
				if eof {
					return Element{}, fmt.Errorf("ebml: element %#x at %d: size %d past the end %d", id, pos, size, len(b))
				}
				return Element{}, errShort
			}
			e.End = e.DataOff + int(size)
			return e, nil
		}
	}
	if err == errShort && eof {
		return Element{}, fmt.Errorf("ebml: truncated element at %d", pos)
	}
	return Element{}, err
}

// scanUnknown walks the children of an unknown-size element from p and
// returns where it ends.
func scanUnknown(b []byte, p int, eof bool) (int, error) {
	for p < len(b) {
		id, idLen, err := readID(b[p:])
		if err == errShort && eof {
			return 0, fmt.Errorf("ebml: truncated child at %d", p)
		}
		if err != nil {
			return 0, err
		}
		if endsCluster[id] {
			return p, nil
		}
		size, szLen, unknown, err := readVint(b[p+idLen:])
		if err == errShort && eof {
			return 0, fmt.Errorf("ebml: truncated child at %d", p)
		}
		if err != nil {
			return 0, err
		}
		if unknown {
			return 0, fmt.Errorf("ebml: nested unknown-size element %#x at %d", id, p)
		}
		n := p + idLen + szLen
		if size > uint64(len(b)-n) {
			if eof {
				return 0, fmt.Errorf("ebml: child %#x at %d runs past the end", id, p)
			}
			return 0, errShort
		}
		p = n + int(size)
	}
	if !eof {
		return 0, errShort
	}
	return p, nil
}

// Walk lists the top-level elements of a whole buffer (Segments
// transparent). On an error it returns the elements before it.
func Walk(b []byte) ([]Element, error) {
	var out []Element
	for pos := 0; pos < len(b); {
		e, err := next(b, pos, true)
		if err != nil {
			return out, err
		}
		out = append(out, e)
		pos = e.End
	}
	return out, nil
}

// Children lists the children of a master element's payload, with offsets
// relative to data. Every child must have a known size.
func Children(data []byte) ([]Element, error) {
	var out []Element
	for pos := 0; pos < len(data); {
		id, idLen, err := readID(data[pos:])
		if err != nil {
			return out, fmt.Errorf("child at %d: %w", pos, err)
		}
		size, szLen, unknown, err := readVint(data[pos+idLen:])
		if err != nil {
			return out, fmt.Errorf("child at %d: %w", pos, err)
		}
		if unknown {
			return out, fmt.Errorf("unknown-size child %#x at %d", id, pos)
		}
		e := Element{ID: id, Off: pos, DataOff: pos + idLen + szLen, Size: int64(size)}
		if size > uint64(len(data)-e.DataOff) {
			return out, fmt.Errorf("child %#x at %d runs past its parent", id, pos)
		}
		e.End = e.DataOff + int(size)
		out = append(out, e)
		pos = e.End
	}
	return out, nil
}

// Uint decodes a big-endian unsigned integer payload.
func Uint(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// EncodeID returns an element ID as written on the wire.
func EncodeID(id uint32) []byte {
	switch {
	case id >= 1<<24:
		return []byte{byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
	case id >= 1<<16:
		return []byte{byte(id >> 16), byte(id >> 8), byte(id)}
	case id >= 1<<8:
		return []byte{byte(id >> 8), byte(id)}
	}
	return []byte{byte(id)}
}

// Size8 encodes n as an 8-byte size vint.
func Size8(n int) []byte {
	b := []byte{0x01, 0, 0, 0, 0, 0, 0, 0}
	for i := 7; i >= 1; i-- {
		b[i] = byte(n)
		n >>= 8
	}
	return b
}

// Elem builds an element of the concatenated data, with an 8-byte size.
func Elem(id uint32, data ...[]byte) []byte {
	var body []byte
	for _, d := range data {
		body = append(body, d...)
	}
	out := append(EncodeID(id), Size8(len(body))...)
	return append(out, body...)
}
