package lsm

import (
	"encoding/binary"
	"fmt"

	"github.com/kvsedge/kvsedge/internal/fragment"
)

// Key prefixes: the first byte of every key names its table. Retired prefixes
// are never reused. See FORMAT.md for the full layouts.
const (
	prefixMeta        byte = 0x01 // 0x01 <name>                       → meta value
	prefixStream      byte = 0x02 // 0x02 <sid u32>                    → stream record
	prefixTerm        byte = 0x03 // 0x03 <sid u32>                    → ingest term
	prefixReplay      byte = 0x04 // 0x04 <sid u32>                    → replay checkpoint
	prefixVoid        byte = 0x05 // 0x05 <sid u32> <fragnum> <seq u64> <off u64> → void record (failed put)
	prefixFragment    byte = 0x10 // 0x10 <sid u32> <fragnum 14 B>      → fragment meta + media
	prefixProducerIdx byte = 0x11 // 0x11 <sid u32> <ms u64> <fragnum>  → fragment meta
	prefixServerIdx   byte = 0x12 // 0x12 <sid u32> <ms u64> <fragnum>  → fragment meta
	prefixHeader      byte = 0x13 // 0x13 <sid u32> <hid u64>           → session header
)

// Meta key names (after prefixMeta).
const (
	metaSchemaVersion = "schema"
	metaSessionKey    = "session-key"
	metaNextStreamID  = "next-stream-id"
)

// StreamIDLen is the width of an encoded StreamID in keys.
const StreamIDLen = 4

// StreamID is the compact internal id of a stream. Ids start at 1, are
// allocated in increasing order and never reused, even after DeleteStream, so
// keys of a deleted stream cannot be mistaken for a new stream's.
type StreamID uint32

func metaKey(name string) []byte {
	k := make([]byte, 0, 1+len(name))
	k = append(k, prefixMeta)
	return append(k, name...)
}

func streamKey(id StreamID) []byte {
	var k [1 + StreamIDLen]byte
	k[0] = prefixStream
	binary.BigEndian.PutUint32(k[1:], uint32(id))
	return k[:]
}

func parseStreamKey(k []byte) (StreamID, error) {
	if len(k) != 1+StreamIDLen || k[0] != prefixStream {
		return 0, fmt.Errorf("lsm: malformed stream key %x", k)
	}
	return StreamID(binary.BigEndian.Uint32(k[1:])), nil
}

// streamSpan returns [start, end) covering every key of one table that
// belongs to stream id: <prefix> <sid> …
func streamSpan(prefix byte, id StreamID) (start, end []byte) {
	start = make([]byte, 1+StreamIDLen)
	start[0] = prefix
	binary.BigEndian.PutUint32(start[1:], uint32(id))
	end = make([]byte, 1+StreamIDLen)
	end[0] = prefix
	if id == ^StreamID(0) {
		end[0] = prefix + 1
	} else {
		binary.BigEndian.PutUint32(end[1:], uint32(id)+1)
	}
	return start, end
}

// streamTables lists every table keyed by <prefix> <sid>, which DeleteStream
// clears with range deletions.
var streamTables = []byte{prefixTerm, prefixReplay, prefixVoid, prefixFragment, prefixProducerIdx, prefixServerIdx, prefixHeader}

func termKey(id StreamID) []byte {
	k := make([]byte, 1+StreamIDLen)
	k[0] = prefixTerm
	binary.BigEndian.PutUint32(k[1:], uint32(id))
	return k
}

func replayKey(id StreamID) []byte {
	k := make([]byte, 1+StreamIDLen)
	k[0] = prefixReplay
	binary.BigEndian.PutUint32(k[1:], uint32(id))
	return k
}

// voidKeyLen is the length of a 0x05 key.
const voidKeyLen = 1 + StreamIDLen + fragment.NumberLen + refLen

// voidKey appends 0x05 <sid> <fragnum> <seq> <offset>: the record of
// fragment n that begins at r.
func voidKey(dst []byte, id StreamID, n fragment.Number, r segmentRef) []byte {
	dst = append(dst, prefixVoid)
	dst = binary.BigEndian.AppendUint32(dst, uint32(id))
	dst = append(dst, n[:]...)
	return appendRef(dst, r)
}

// fragmentKey appends 0x10 <sid> <fragnum>.
func fragmentKey(dst []byte, id StreamID, n fragment.Number) []byte {
	dst = append(dst, prefixFragment)
	dst = binary.BigEndian.AppendUint32(dst, uint32(id))
	return append(dst, n[:]...)
}

// timeKey appends 0x11|0x12 <sid> <ms> <fragnum>. Negative times (a
// producer clock before 1970) sort first: the sign bit is flipped.
func timeKey(dst []byte, prefix byte, id StreamID, ms int64, n fragment.Number) []byte {
	dst = timePrefix(dst, prefix, id, ms)
	return append(dst, n[:]...)
}

func timePrefix(dst []byte, prefix byte, id StreamID, ms int64) []byte {
	dst = append(dst, prefix)
	dst = binary.BigEndian.AppendUint32(dst, uint32(id))
	return binary.BigEndian.AppendUint64(dst, uint64(ms)^(1<<63))
}

func headerKey(id StreamID, hid uint64) []byte {
	k := make([]byte, 0, 1+StreamIDLen+8)
	k = append(k, prefixHeader)
	k = binary.BigEndian.AppendUint32(k, uint32(id))
	return binary.BigEndian.AppendUint64(k, hid)
}

// indexPrefix is the table prefix of a time index.
func indexPrefix(idx fragment.TimeIndex) byte {
	if idx == fragment.ByServerTime {
		return prefixServerIdx
	}
	return prefixProducerIdx
}
