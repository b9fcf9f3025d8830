package mkv

import (
	"errors"
	"fmt"
)

// ParseHeader parses a stored session header (Header.Raw: EBML header,
// Segment start, Info, Tracks) back into a Header.
func ParseHeader(raw []byte) (*Header, error) {
	r := &Reader{opts: Options{MaxTracks: 3}}
	b := raw
	next := func() (uint32, []byte, int64, error) {
		if len(b) == 0 {
			return 0, nil, 0, errors.New("mkv: header ends early")
		}
		n := vintLen(b[0])
		if n == 0 || n > 4 || len(b) < n+1 {
			return 0, nil, 0, errors.New("mkv: malformed header element")
		}
		id := uint32(readUint(b[:n]))
		m := vintLen(b[n])
		if m == 0 || len(b) < n+m {
			return 0, nil, 0, errors.New("mkv: malformed header size")
		}
		size := decodeSize(b[n : n+m])
		elem := b[:n+m]
		b = b[n+m:]
		return id, elem, size, nil
	}
	for len(b) > 0 {
		id, head, size, err := next()
		if err != nil {
			return nil, err
		}
		if id == IDSegment {
			continue // its children follow
		}
		if size == unknownSize || size > int64(len(b)) {
			return nil, fmt.Errorf("mkv: header element %X of bad size", id)
		}
		whole := append(append([]byte(nil), head...), b[:size]...)
		switch id {
		case IDEBML:
			r.ebml = whole
		case IDInfo:
			r.info = whole
		case IDTracks:
			r.tracks = whole
		}
		b = b[size:]
	}
	h, err := r.buildHeader()
	if err != nil {
		return nil, err
	}
	h.Raw = raw
	return h, nil
}

// Block is one block of a stored cluster.
type Block struct {
	Track uint64
	// TimeMs is the block's presentation time in milliseconds (cluster
	// timecode plus block offset, scaled).
	TimeMs int64
	// ClusterMs is the cluster's timecode in milliseconds: TimeMs minus
	// ClusterMs is the block's offset in its fragment.
	ClusterMs int64
	Key       bool
	Payload   []byte
}

// ForEachBlock calls fn for every SimpleBlock and BlockGroup block of a
// stored cluster (media[:clusterLen]), in stored (decode) order. Laced
// blocks are passed as stored (KVS producers do not lace).
func ForEachBlock(h *Header, cluster []byte, fn func(Block) error) error {
	if len(cluster) < 5 || uint32(readUint(cluster[:4])) != IDCluster {
		return errors.New("mkv: media does not start with a Cluster")
	}
	m := vintLen(cluster[4])
	if m == 0 || len(cluster) < 4+m {
		return errors.New("mkv: malformed cluster size")
	}
	body := cluster[4+m:]
	var tc uint64
	var fnErr error
	scaleMs := func(v int64) int64 { return v * int64(h.TimecodeScale) / 1_000_000 }
	ok := walk(body, func(id uint32, p []byte) bool {
		switch id {
		case IDTimecode:
			tc = readUint(p)
		case IDSimpleBlock, IDBlockGroup:
			blk, key := p, false
			if id == IDBlockGroup {
				var inner []byte
				key = true
				walk(p, func(id uint32, v []byte) bool {
					switch id {
					case IDBlock:
						inner = v
					case IDReferenceBlk:
						key = false
					}
					return true
				})
				blk = inner
			}
			if len(blk) < 4 {
				return false
			}
			n := vintLen(blk[0])
			if n == 0 || len(blk) < n+3 {
				return false
			}
			track := uint64(blk[0] & (0xFF >> n))
			for _, c := range blk[1:n] {
				track = track<<8 | uint64(c)
			}
			off := int16(uint16(blk[n])<<8 | uint16(blk[n+1]))
			if id == IDSimpleBlock {
				key = blk[n+2]&0x80 != 0
			}
			if fnErr = fn(Block{Track: track, TimeMs: scaleMs(int64(tc) + int64(off)), ClusterMs: scaleMs(int64(tc)), Key: key, Payload: blk[n+3:]}); fnErr != nil {
				return false
			}
		}
		return true
	})
	if fnErr != nil {
		return fnErr
	}
	if !ok {
		return errors.New("mkv: malformed cluster")
	}
	return nil
}
