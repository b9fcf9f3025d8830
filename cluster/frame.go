package cluster

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// The fragment stream of the tail and fetch routes (FORMAT.md, "Fragment
// stream"). Its encoding is cluster's own: it does not follow lsm's on-disk
// layout, so that either can change without the other, and boxes of
// different versions keep replicating during a rolling upgrade.
//
// A frame is one type byte, then for a fragment frame:
//
//	0x01 | version u8 | fields length u16 | fields | header | media
//
// Fields, version 1 (fieldsLenV1 = 90 bytes, big-endian; offsets within
// the fields):
//
//	 0  14 fragment number (term u64 | node u16 | seq u32)
//	14   8 producer timestamp, epoch ms (i64)
//	22   8 server timestamp, epoch ms (i64)
//	30   4 duration ms
//	34   8 cluster Timecode as the producer sent it
//	42   8 header id (xxHash64 of the session header)
//	50   4 cluster length
//	54   4 media length
//	58   4 frame count
//	62  16 content digest
//	78   8 received ms (i64): when the sender had the whole fragment
//	86   4 header length (0: the previous fragment frame's header)
//
// Invariants a later version must keep (FORMAT.md, "Versions"): the type
// bytes 0x00, 0x01, 0x02 and the version byte's place never change; within
// version 1, new fields may only be appended to the fields (the length says
// how many bytes to skip) and no field moves or changes meaning; any other
// change is a new version, which a node writes only to a peer that asked
// for it (the frames query parameter).

// Frame types of a fragment stream.
const (
	frameKeepalive = 0
	frameFragment  = 1
	frameEnd       = 2
)

// frameVersion is the fragment frame version this node writes, and the
// newest it reads.
const frameVersion = 1

// fieldsLenV1 is the length of version 1's fields; a longer fields
// section carries fields appended later, which this node skips.
const fieldsLenV1 = 90

// maxFrameHeader bounds a session header on the wire (KVS's track data
// is far smaller); maxFrameMedia bounds a fragment's media.
const (
	maxFrameHeader = 1 << 20
	maxFrameMedia  = 64 << 20
)

// ErrFrameVersion reports a frame this node cannot read because the peer
// speaks a newer node-to-node protocol (a frame version above
// frameVersion, or a frame type this node does not know). The replicator
// skips such a peer instead of retrying it (replicator.go, noteNewer).
var ErrFrameVersion = errors.New("cluster: the peer speaks a newer node-to-node protocol")

// errNoEndFrame reports a fragment stream that stopped between frames
// without its end frame (a peer that went away).
var errNoEndFrame = fmt.Errorf("cluster: fragment stream ended without an end frame: %w", io.ErrUnexpectedEOF)

// appendFragmentFrame appends a fragment frame up to its header: type,
// version, fields length and version 1's fields. The session header
// (hdrLen bytes, 0 to reuse the previous one) and the media
// (m.MediaLen bytes) follow it on the wire.
func appendFragmentFrame(dst []byte, m *fragment.Meta, receivedMs int64, hdrLen uint32) []byte {
	dst = append(dst, frameFragment, frameVersion)
	dst = binary.BigEndian.AppendUint16(dst, fieldsLenV1)
	dst = append(dst, m.Number[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.ProducerMs))
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.ServerMs))
	dst = binary.BigEndian.AppendUint32(dst, m.DurationMs)
	dst = binary.BigEndian.AppendUint64(dst, m.Timecode)
	dst = binary.BigEndian.AppendUint64(dst, m.HeaderID)
	dst = binary.BigEndian.AppendUint32(dst, m.ClusterLen)
	dst = binary.BigEndian.AppendUint32(dst, m.MediaLen)
	dst = binary.BigEndian.AppendUint32(dst, m.Frames)
	dst = append(dst, m.Digest[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(receivedMs))
	return binary.BigEndian.AppendUint32(dst, hdrLen)
}

// decodeFieldsV1 decodes version 1's fields; b holds at least fieldsLenV1
// bytes (the caller checked).
func decodeFieldsV1(b []byte) (m fragment.Meta, receivedMs int64, hdrLen uint32) {
	copy(m.Number[:], b[0:14])
	m.ProducerMs = int64(binary.BigEndian.Uint64(b[14:]))
	m.ServerMs = int64(binary.BigEndian.Uint64(b[22:]))
	m.DurationMs = binary.BigEndian.Uint32(b[30:])
	m.Timecode = binary.BigEndian.Uint64(b[34:])
	m.HeaderID = binary.BigEndian.Uint64(b[42:])
	m.ClusterLen = binary.BigEndian.Uint32(b[50:])
	m.MediaLen = binary.BigEndian.Uint32(b[54:])
	m.Frames = binary.BigEndian.Uint32(b[58:])
	copy(m.Digest[:], b[62:78])
	receivedMs = int64(binary.BigEndian.Uint64(b[78:]))
	hdrLen = binary.BigEndian.Uint32(b[86:])
	return m, receivedMs, hdrLen
}

// frameWriter writes fragment frames, sending each session header once
// per connection until it changes.
type frameWriter struct {
	w       *bufio.Writer
	lastHdr uint64
	sent    bool
	buf     []byte
}

func (fw *frameWriter) fragment(f *engine.Fragment) error {
	received := f.ReceivedMs
	if received == 0 {
		received = time.Now().UnixMilli()
	}
	hdr := f.Header.Raw
	if fw.sent && fw.lastHdr == f.Meta.HeaderID {
		hdr = nil
	}
	fw.buf = appendFragmentFrame(fw.buf[:0], &f.Meta, received, uint32(len(hdr)))
	if _, err := fw.w.Write(fw.buf); err != nil {
		return err
	}
	if _, err := fw.w.Write(hdr); err != nil {
		return err
	}
	if _, err := fw.w.Write(f.Media); err != nil {
		return err
	}
	fw.lastHdr, fw.sent = f.Meta.HeaderID, true
	return nil
}

func (fw *frameWriter) control(t byte) error {
	if err := fw.w.WriteByte(t); err != nil {
		return err
	}
	return fw.w.Flush()
}

// frameReader reads what frameWriter wrote, of any version up to
// frameVersion. Nothing it reads can make it panic: every length is
// checked before it is used.
type frameReader struct {
	r *bufio.Reader
	// mem holds the fragments' media (the engine's media memory, as
	// replicas: engine.MediaUpload, which a full budget refuses first);
	// nil: the Go heap.
	mem    *engine.MediaMemory
	hdr    []byte
	fields [fieldsLenV1]byte
	// receivedMs is the sender's ReceivedMs of the last fragment read.
	receivedMs int64
}

// next returns the next fragment (media in a buffer of mem the caller
// passes to ImportFragment, which frees it), or io.EOF at an end frame. A stream that
// stops without an end frame is an error wrapping io.ErrUnexpectedEOF; a
// frame of a newer protocol is an error wrapping ErrFrameVersion.
func (fr *frameReader) next() (fragment.Meta, []byte, []byte, error) {
	for {
		t, err := fr.r.ReadByte()
		if err == io.EOF {
			return fragment.Meta{}, nil, nil, errNoEndFrame
		}
		if err != nil {
			return fragment.Meta{}, nil, nil, fmt.Errorf("cluster: reading a fragment stream: %w", err)
		}
		switch t {
		case frameKeepalive:
			continue
		case frameEnd:
			return fragment.Meta{}, nil, nil, io.EOF
		case frameFragment:
		default:
			return fragment.Meta{}, nil, nil, fmt.Errorf("%w: frame of unknown type 0x%02x", ErrFrameVersion, t)
		}
		return fr.fragment()
	}
}

// fragment reads a fragment frame after its type byte.
func (fr *frameReader) fragment() (fragment.Meta, []byte, []byte, error) {
	var pre [3]byte
	if _, err := io.ReadFull(fr.r, pre[:]); err != nil {
		return fragment.Meta{}, nil, nil, truncated(err)
	}
	switch v := pre[0]; {
	case v == 0:
		return fragment.Meta{}, nil, nil, errors.New("cluster: fragment frame of version 0")
	case v > frameVersion:
		return fragment.Meta{}, nil, nil, fmt.Errorf("%w: fragment frame of version %d, this node reads up to %d", ErrFrameVersion, v, frameVersion)
	}
	fl := int(binary.BigEndian.Uint16(pre[1:]))
	if fl < fieldsLenV1 {
		return fragment.Meta{}, nil, nil, fmt.Errorf("cluster: fragment frame fields of %d bytes, version %d has %d", fl, frameVersion, fieldsLenV1)
	}
	if _, err := io.ReadFull(fr.r, fr.fields[:]); err != nil {
		return fragment.Meta{}, nil, nil, truncated(err)
	}
	// Fields a later revision of version 1 appended: not ours to read.
	if _, err := fr.r.Discard(fl - fieldsLenV1); err != nil {
		return fragment.Meta{}, nil, nil, truncated(err)
	}
	m, received, hl := decodeFieldsV1(fr.fields[:])
	fr.receivedMs = received
	if hl > maxFrameHeader || m.MediaLen > maxFrameMedia {
		return m, nil, nil, fmt.Errorf("cluster: frame of %s too large (header %d bytes, media %d)", m.Number, hl, m.MediaLen)
	}
	if hl > 0 {
		fr.hdr = make([]byte, hl)
		if _, err := io.ReadFull(fr.r, fr.hdr); err != nil {
			fr.hdr = nil
			return m, nil, nil, truncated(err)
		}
	} else if fr.hdr == nil {
		return m, nil, nil, fmt.Errorf("cluster: fragment frame of %s without a session header", m.Number)
	}
	var media []byte
	if fr.mem != nil {
		b, err := fr.mem.Alloc(int(m.MediaLen), engine.MediaUpload)
		if err != nil {
			return m, nil, nil, fmt.Errorf("cluster: fragment %s: %w", m.Number, err)
		}
		media = b[:m.MediaLen]
	} else {
		media = make([]byte, m.MediaLen)
	}
	if _, err := io.ReadFull(fr.r, media); err != nil {
		if fr.mem != nil {
			fr.mem.Free(media)
		}
		return m, nil, nil, truncated(err)
	}
	return m, fr.hdr, media, nil
}

// truncated wraps an error met inside a frame; an EOF there becomes
// io.ErrUnexpectedEOF (never io.EOF, which next reserves for the end
// frame).
func truncated(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("cluster: truncated fragment frame: %w", io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("cluster: reading a fragment frame: %w", err)
}
