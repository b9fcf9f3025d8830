package mkv

// Element IDs, with their length-marker bits, as they appear on the wire.
const (
	IDEBML          = 0x1A45DFA3
	IDSegment       = 0x18538067
	IDSeekHead      = 0x114D9B74
	IDInfo          = 0x1549A966
	IDTimecodeScale = 0x2AD7B1
	IDTracks        = 0x1654AE6B
	IDTrackEntry    = 0xAE
	IDTrackNumber   = 0xD7
	IDTrackType     = 0x83
	IDCodecID       = 0x86
	IDCodecPrivate  = 0x63A2
	IDCluster       = 0x1F43B675
	IDTimecode      = 0xE7
	IDPosition      = 0xA7
	IDPrevSize      = 0xAB
	IDSimpleBlock   = 0xA3
	IDBlockGroup    = 0xA0
	IDBlock         = 0xA1
	IDReferenceBlk  = 0xFB
	IDSilentTracks  = 0x5854
	IDTags          = 0x1254C367
	IDTag           = 0x7373
	IDTargets       = 0x63C0
	IDSimpleTag     = 0x67C8
	IDTagName       = 0x45A3
	IDTagString     = 0x4487
	IDTagBinary     = 0x4485
	IDCues          = 0x1C53BB6B
	IDChapters      = 0x1043A770
	IDAttachments   = 0x1941A469
	IDVoid          = 0xEC
	IDCRC32         = 0xBF
)

// unknownSize marks an element whose size field is all ones.
const unknownSize = -1

// idLen is the encoded length of an element ID (its marker bit).
func idLen(id uint32) int {
	switch {
	case id >= 1<<24:
		return 4
	case id >= 1<<16:
		return 3
	case id >= 1<<8:
		return 2
	}
	return 1
}

// vintLen returns the length of a variable-size integer from its first
// byte, or 0 if the byte is 0 (longer than 8 bytes: invalid).
func vintLen(b byte) int {
	for n := 1; n <= 8; n++ {
		if b&(0x80>>(n-1)) != 0 {
			return n
		}
	}
	return 0
}

// decodeSize decodes an EBML size field of len(b) bytes; all-ones is
// unknownSize.
func decodeSize(b []byte) int64 {
	n := len(b)
	v := uint64(b[0] & (0xFF >> n))
	allOnes := v == uint64(0xFF>>n)
	for _, c := range b[1:] {
		v = v<<8 | uint64(c)
		allOnes = allOnes && c == 0xFF
	}
	if allOnes {
		return unknownSize
	}
	if v > 1<<62 {
		return 1 << 62
	}
	return int64(v)
}

// appendID appends an element ID.
func appendID(dst []byte, id uint32) []byte {
	for i := idLen(id) - 1; i >= 0; i-- {
		dst = append(dst, byte(id>>(8*i)))
	}
	return dst
}

// appendSize4 appends size as a 4-byte vint (what KVS writes in its tags).
func appendSize4(dst []byte, size int) []byte {
	return append(dst, 0x10|byte(size>>24), byte(size>>16), byte(size>>8), byte(size))
}

// putSize4 overwrites a 4-byte vint at b[0:4].
func putSize4(b []byte, size int) {
	b[0], b[1], b[2], b[3] = 0x10|byte(size>>24), byte(size>>16), byte(size>>8), byte(size)
}

// appendUintElem appends an unsigned-integer element with an 8-byte body.
func appendUintElem(dst []byte, id uint32, v uint64) []byte {
	dst = appendID(dst, id)
	dst = append(dst, 0x88)
	for i := 7; i >= 0; i-- {
		dst = append(dst, byte(v>>(8*i)))
	}
	return dst
}

// readUint decodes a big-endian unsigned integer of up to 8 bytes.
func readUint(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// walk calls fn for each child element of body (which holds complete
// children of known size), with the child's id and payload. It stops at the
// first malformed child and reports false.
func walk(body []byte, fn func(id uint32, payload []byte) bool) bool {
	for len(body) > 0 {
		n := vintLen(body[0])
		if n == 0 || n > 4 || len(body) < n {
			return false
		}
		id := uint32(readUint(body[:n]))
		body = body[n:]
		if len(body) == 0 {
			return false
		}
		m := vintLen(body[0])
		if m == 0 || len(body) < m {
			return false
		}
		size := decodeSize(body[:m])
		body = body[m:]
		if size == unknownSize || size > int64(len(body)) {
			return false
		}
		if !fn(id, body[:size]) {
			return false
		}
		body = body[size:]
	}
	return true
}
