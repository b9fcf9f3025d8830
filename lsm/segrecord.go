package lsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"

	"github.com/kvsedge/kvsedge/internal/fragment"
)

// Segment records (FORMAT.md, "Segment records"): every byte written to a
// segment is inside a record that says what it is, so the index can be
// rebuilt from the segments alone (repair.go).
//
//	offset size field
//	     0    4 magic "kvsR"
//	     4    1 record version = 1
//	     5    1 kind: 1 segment start, 2 session header, 3 fragment
//	     6    4 payload length (u32)
//	    10    4 CRC-32C (Castagnoli) of the payload
//	    14    4 CRC-32C of bytes 0..13
//	    18    … payload
//
// Payloads:
//
//	segment start: sid u32 | segment seq u64 | the stream record (0x02 value) when the segment began
//	header:        header id u64 | the session header's bytes (0x13)
//	fragment:      fragment meta (79 B, as 0x10) | replaced count u16 | replaced fragment numbers (14 B each) | media
//
// The index's segment reference points at the fragment's media inside its
// record, so reads do not see the framing. A segment's first record is its
// start record; a header record precedes the first fragment of the segment
// that uses it.

const (
	recordMagic   = "kvsR"
	recordVersion = 1
	recordHdrLen  = 18

	kindSegmentStart byte = 1
	kindHeader       byte = 2
	kindFragment     byte = 3

	// maxRecordPayload bounds a payload a scan will believe (a fragment is
	// at most 50 MB; a damaged length must not make repair allocate GBs).
	maxRecordPayload = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendRecordHeader appends a record header for a payload whose CRC the
// caller computed.
func appendRecordHeader(dst []byte, kind byte, payloadLen int, payloadCRC uint32) []byte {
	start := len(dst)
	dst = append(dst, recordMagic...)
	dst = append(dst, recordVersion, kind)
	dst = binary.BigEndian.AppendUint32(dst, uint32(payloadLen))
	dst = binary.BigEndian.AppendUint32(dst, payloadCRC)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// fragmentRecordPrefix is a fragment record's header and payload up to its
// media; the media follows it in the file. The payload is built in dst
// after room for the header, which is written once the payload's CRC is
// known (no buffer of its own: one would escape to the heap through the
// CRC call, an allocation per fragment).
func fragmentRecordPrefix(dst []byte, m *fragment.Meta, replaces []fragment.Meta, media []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, recordHdrLen)...)
	dst = appendMeta(dst, m)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(replaces)))
	for i := range replaces {
		dst = append(dst, replaces[i].Number[:]...)
	}
	p := dst[start+recordHdrLen:]
	crc := crc32.Update(crc32.Checksum(p, castagnoli), castagnoli, media)
	appendRecordHeader(dst[start:start], kindFragment, len(p)+len(media), crc) // into the room left
	return dst
}

// simpleRecord encodes a whole record (segment start, header).
func simpleRecord(kind byte, fixed []byte, rest []byte) []byte {
	crc := crc32.Update(crc32.Checksum(fixed, castagnoli), castagnoli, rest)
	b := appendRecordHeader(make([]byte, 0, recordHdrLen+len(fixed)+len(rest)), kind, len(fixed)+len(rest), crc)
	return append(append(b, fixed...), rest...)
}

func segmentStartRecord(id StreamID, seq uint64, streamRecord []byte) []byte {
	var fixed [12]byte
	binary.BigEndian.PutUint32(fixed[:], uint32(id))
	binary.BigEndian.PutUint64(fixed[4:], seq)
	return simpleRecord(kindSegmentStart, fixed[:], streamRecord)
}

func headerRecord(hid uint64, header []byte) []byte {
	var fixed [8]byte
	binary.BigEndian.PutUint64(fixed[:], hid)
	return simpleRecord(kindHeader, fixed[:], header)
}

// scannedRecord is one record a scan found intact.
type scannedRecord struct {
	kind    byte
	offset  int64 // of the record header
	payload []byte
}

// errBadRecord: no intact record at this offset.
var errBadRecord = errors.New("lsm: no intact segment record here")

// parseRecord decodes the record at b[0:], whose payload must be whole
// inside b. It returns the record and its total length.
func parseRecord(b []byte) (kind byte, payload []byte, n int, err error) {
	if len(b) < recordHdrLen || string(b[:4]) != recordMagic || b[4] != recordVersion {
		return 0, nil, 0, errBadRecord
	}
	if crc32.Checksum(b[:14], castagnoli) != binary.BigEndian.Uint32(b[14:]) {
		return 0, nil, 0, errBadRecord
	}
	plen := int(binary.BigEndian.Uint32(b[6:]))
	if plen > maxRecordPayload || len(b) < recordHdrLen+plen {
		return 0, nil, 0, errBadRecord
	}
	payload = b[recordHdrLen : recordHdrLen+plen]
	if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(b[10:]) {
		return 0, nil, 0, errBadRecord
	}
	return b[5], payload, recordHdrLen + plen, nil
}

// segmentScan is what scanSegment found in one segment file.
type segmentScan struct {
	records []scannedRecord
	// bad are the byte ranges [start, end) that hold no intact record.
	bad [][2]int64
	// framed: the segment starts with a record (written by a kvsedge
	// that frames its segments); unframed segments cannot be scanned.
	framed bool
	// padding counts the zero bytes (fewer than directAlign) after the
	// last record that a direct write left (segdirect.go).
	padding int64
}

// scanSegment walks a segment's records. After damage it searches for the
// next magic whose record is intact, so one bad record costs only itself.
func scanSegment(b []byte) segmentScan {
	var sc segmentScan
	off := 0
	badStart := -1
	for off < len(b) {
		kind, payload, n, err := parseRecord(b[off:])
		if err == nil {
			if badStart >= 0 {
				sc.bad = append(sc.bad, [2]int64{int64(badStart), int64(off)})
				badStart = -1
			}
			if off == 0 {
				sc.framed = true
			}
			sc.records = append(sc.records, scannedRecord{kind: kind, offset: int64(off), payload: payload})
			off += n
			continue
		}
		if badStart < 0 {
			badStart = off
		}
		next := bytes.Index(b[off+1:], []byte(recordMagic))
		if next < 0 {
			break // the rest is damaged: badStart..len(b)
		}
		off += 1 + next
	}
	if badStart >= 0 {
		if tail := b[badStart:]; badStart > 0 && len(tail) < directAlign && allZero(tail) {
			// A direct write's padding after the last record
			// (segdirect.go): no data, no damage.
			sc.padding = int64(len(tail))
		} else {
			sc.bad = append(sc.bad, [2]int64{int64(badStart), int64(len(b))})
		}
	}
	return sc
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// decodeFragmentRecord splits a fragment record's payload.
func decodeFragmentRecord(payload []byte) (m fragment.Meta, replaced []fragment.Number, mediaOff int, err error) {
	if len(payload) < metaLen+2 {
		return m, nil, 0, errBadRecord
	}
	m, err = decodeMeta(nil, payload[:metaLen])
	if err != nil {
		return m, nil, 0, err
	}
	k := int(binary.BigEndian.Uint16(payload[metaLen:]))
	off := metaLen + 2 + k*fragment.NumberLen
	if len(payload) < off || len(payload)-off != int(m.MediaLen) {
		return m, nil, 0, errBadRecord
	}
	for i := 0; i < k; i++ {
		var n fragment.Number
		copy(n[:], payload[metaLen+2+i*fragment.NumberLen:])
		replaced = append(replaced, n)
	}
	return m, replaced, off, nil
}
