package mkvcheck

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/kvsedge/kvsedge/engine/mkv"
)

// Block is one SimpleBlock (or BlockGroup) of a cluster. Offsets are
// absolute in the buffer the cluster was parsed from.
type Block struct {
	ElemOff  int // start of the SimpleBlock or BlockGroup element
	End      int // its end
	TrackOff int // start of the track-number vint
	FlagsOff int // the flags byte
	Track    uint64
	RelTC    int16 // timecode relative to the cluster's, in TimecodeScale units
	Flags    byte
	Key      bool   // SimpleBlock: flag 0x80; BlockGroup: no ReferenceBlock
	Data     []byte // the block: track vint, relative timecode, flags, frame
}

// Cluster is a parsed Cluster element.
type Cluster struct {
	Elem        Element
	TimecodeOff int // start of the Timecode element's payload
	TimecodeLen int
	Timecode    uint64 // as sent, in TimecodeScale units
	Blocks      []Block
}

// ParseCluster parses the Cluster e found in b (by Walk or a Parser).
func ParseCluster(b []byte, e Element) (Cluster, error) {
	c := Cluster{Elem: e, TimecodeOff: -1}
	kids, err := Children(e.Data(b))
	if err != nil {
		return c, fmt.Errorf("cluster at %d: %w", e.Off, err)
	}
	abs := e.DataOff
	for _, k := range kids {
		switch k.ID {
		case mkv.IDTimecode:
			if c.TimecodeOff >= 0 {
				return c, fmt.Errorf("cluster at %d: second Timecode at %d", e.Off, abs+k.Off)
			}
			c.TimecodeOff, c.TimecodeLen = abs+k.DataOff, k.End-k.DataOff
			c.Timecode = Uint(b[abs+k.DataOff : abs+k.End])
		case mkv.IDSimpleBlock:
			bl, err := parseBlock(b, abs+k.DataOff, abs+k.End)
			if err != nil {
				return c, fmt.Errorf("cluster at %d: SimpleBlock at %d: %w", e.Off, abs+k.Off, err)
			}
			bl.ElemOff, bl.End, bl.Key = abs+k.Off, abs+k.End, bl.Flags&0x80 != 0
			c.Blocks = append(c.Blocks, bl)
		case mkv.IDBlockGroup:
			g := abs + k.DataOff
			fields, err := Children(b[g : abs+k.End])
			if err != nil {
				return c, fmt.Errorf("cluster at %d: BlockGroup at %d: %w", e.Off, abs+k.Off, err)
			}
			var bl Block
			found, key := false, true
			for _, f := range fields {
				switch f.ID {
				case mkv.IDBlock:
					if bl, err = parseBlock(b, g+f.DataOff, g+f.End); err != nil {
						return c, fmt.Errorf("cluster at %d: Block at %d: %w", e.Off, g+f.Off, err)
					}
					found = true
				case mkv.IDReferenceBlk:
					key = false
				}
			}
			if !found {
				return c, fmt.Errorf("cluster at %d: BlockGroup at %d without a Block", e.Off, abs+k.Off)
			}
			bl.ElemOff, bl.End, bl.Key = abs+k.Off, abs+k.End, key
			c.Blocks = append(c.Blocks, bl)
		}
	}
	if c.TimecodeOff < 0 {
		return c, fmt.Errorf("cluster at %d has no Timecode", e.Off)
	}
	return c, nil
}

// parseBlock reads the block header of b[off:end].
func parseBlock(b []byte, off, end int) (Block, error) {
	d := b[off:end]
	tr, n, _, err := readVint(d)
	if err != nil || len(d) < n+3 {
		return Block{}, errors.New("malformed block header")
	}
	return Block{TrackOff: off, FlagsOff: off + n + 2, Track: tr,
		RelTC: int16(binary.BigEndian.Uint16(d[n:])), Flags: d[n+2], Data: d}, nil
}

// Digest hashes every block of the cluster, in order: two clusters carry the
// same media (tracks, timecodes, flags and frames) when their digests match.
func (c Cluster) Digest() string {
	h := sha256.New()
	for _, bl := range c.Blocks {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(bl.Data)))
		h.Write(n[:])
		h.Write(bl.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Frames lists the frames of a cluster (the bytes of one whole Cluster
// element) as engine/mkv reads them: track, presentation time in ms, key
// flag and frame bytes, in stored order.
func Frames(h *mkv.Header, cluster []byte) ([]mkv.Block, error) {
	var out []mkv.Block
	err := mkv.ForEachBlock(h, cluster, func(b mkv.Block) error {
		out = append(out, b)
		return nil
	})
	return out, err
}

// Tag is one SimpleTag's name and string value.
type Tag struct{ Name, Value string }

// ParseTags flattens every SimpleTag (nested ones too, after their parent's
// children) of a Tags element's payload. Trailing NULs are dropped.
func ParseTags(data []byte) ([]Tag, error) {
	var out []Tag
	var walk func(d []byte, depth int) error
	walk = func(d []byte, depth int) error {
		if depth > 8 {
			return errors.New("tags nested too deep")
		}
		kids, err := Children(d)
		if err != nil {
			return err
		}
		var st Tag
		isSimple := false
		for _, k := range kids {
			switch k.ID {
			case mkv.IDTag, mkv.IDSimpleTag:
				if err := walk(k.Data(d), depth+1); err != nil {
					return err
				}
			case mkv.IDTagName:
				st.Name, isSimple = strings.TrimRight(string(k.Data(d)), "\x00"), true
			case mkv.IDTagString:
				st.Value = strings.TrimRight(string(k.Data(d)), "\x00")
			}
		}
		if isSimple {
			out = append(out, st)
		}
		return nil
	}
	return out, walk(data, 0)
}
