package producer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"
)

// Recluster reads any Matroska or WebM stream (a file written by ffmpeg or
// mkvmerge with default settings, or ffmpeg's `-f matroska -` on a pipe)
// and returns it shaped as KVS producers send it (shared/kvs-api.md §10):
// one EBML header and Segment of unknown size, Info and Tracks, then one
// unknown-size Cluster per fragment, each beginning with a key frame of
// the video track, at least fragment long (the next key frame after that
// starts the next one), with an 8-byte Timecode and SimpleBlocks.
//
// General Matroska places clusters by size or time, not at key frames, and
// may hold Cues, Tags, Chapters, BlockGroups and laced blocks; the Segment
// and Clusters may have known sizes. Reading is ebml-go's (streaming: each
// input cluster is decoded as it completes, so memory holds about one input
// cluster and one fragment). Blocks keep their order within a cluster
// (SimpleBlocks, then BlockGroups by time: only mkvmerge's end-of-track
// frames use BlockGroups) and their times. Laced blocks (mkvmerge laces
// audio) become one block per frame, timed by the track's frame duration.
// Frames of other tracks stored before the first video key frame join the
// first fragment when timed at most 1 s before it (audio that leads the
// video) and are dropped otherwise: no KVS fragment may begin without a
// key frame. Without a video track every block may begin a fragment.
// Input whose key frames are more than 30 s apart cannot be fragmented
// (block offsets are 16-bit): Recluster fails and says so.
func Recluster(r io.Reader, fragment time.Duration) io.Reader {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(recluster(r, pw, fragment)) }()
	return pr
}

// inputFile is what ebml-go decodes of the input: clusters are delivered
// on the channel as each completes.
type inputFile struct {
	Header  webm.EBMLHeader `ebml:"EBML"`
	Segment inputSegment    `ebml:"Segment"`
}

type inputSegment struct {
	Info    webm.Info         `ebml:"Info"`
	Tracks  webm.Tracks       `ebml:"Tracks"`
	Cluster chan webm.Cluster `ebml:"Cluster"`
}

// ErrNoTracks: the input declared no tracks before its first cluster.
var ErrNoTracks = errors.New("producer: the input has no Tracks before its first cluster")

func recluster(r io.Reader, w io.Writer, fragment time.Duration) error {
	in := inputFile{Segment: inputSegment{Cluster: make(chan webm.Cluster, 1)}}
	parsed := make(chan error, 1)
	go func() {
		err := ebml.Unmarshal(r, &in, ebml.WithIgnoreUnknown(true))
		if errors.Is(err, io.EOF) {
			err = nil
		}
		close(in.Segment.Cluster)
		parsed <- err
	}()
	var out *fragmenter
	var werr error
	for c := range in.Segment.Cluster {
		if werr != nil {
			continue // drain, so the parser can finish
		}
		if out == nil {
			// Info and Tracks precede the first cluster; the channel send
			// orders their decoding before this read.
			if out, werr = newFragmenter(w, in.Segment.Info, in.Segment.Tracks, fragment); werr != nil {
				continue
			}
		}
		werr = out.cluster(&c)
	}
	perr := <-parsed
	if werr != nil {
		return werr
	}
	if perr != nil {
		return fmt.Errorf("producer: reading the input as Matroska: %w", perr)
	}
	if out == nil {
		return errors.New("producer: the input holds no cluster")
	}
	return out.flush()
}

// fragmenter writes KVS-shaped fragments.
type fragmenter struct {
	w        io.Writer
	scale    uint64 // ns per timecode unit
	fragment int64  // minimum fragment length, in timecode units
	video    uint64 // the video track's number, 0 without one
	started  bool
	start    int64 // the current fragment's timecode
	blocks   []outBlock
	dropped  int
	early    []outBlock // blocks before the first key frame
	buf      bytes.Buffer
	// frameNs is each track's frame duration (DefaultDuration, or AAC's
	// 1024 samples), to time the frames of a laced block one by one.
	frameNs map[uint64]uint64
}

type outBlock struct {
	at    int64 // absolute, in timecode units
	block ebml.Block
}

func newFragmenter(w io.Writer, info webm.Info, tracks webm.Tracks, fragment time.Duration) (*fragmenter, error) {
	if len(tracks.TrackEntry) == 0 {
		return nil, ErrNoTracks
	}
	scale := info.TimecodeScale
	if scale == 0 {
		scale = 1_000_000
	}
	f := &fragmenter{w: w, scale: scale, fragment: max(int64(fragment)/int64(scale), 1), frameNs: map[uint64]uint64{}}
	for _, t := range tracks.TrackEntry {
		if t.TrackType == 1 && f.video == 0 {
			f.video = t.TrackNumber
		}
		d := t.DefaultDuration
		if d == 0 && t.CodecID == "A_AAC" && t.Audio != nil && t.Audio.SamplingFrequency > 0 {
			d = uint64(1024 * 1e9 / t.Audio.SamplingFrequency)
		}
		f.frameNs[t.TrackNumber] = d
	}
	var hdr bytes.Buffer
	if err := ebml.Marshal(&struct {
		Header webm.EBMLHeader `ebml:"EBML"`
	}{webm.EBMLHeader{EBMLVersion: 1, EBMLReadVersion: 1, EBMLMaxIDLength: 4, EBMLMaxSizeLength: 8,
		DocType: "matroska", DocTypeVersion: 2, DocTypeReadVersion: 2}}, &hdr); err != nil {
		return nil, err
	}
	hdr.Write([]byte{0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}) // Segment, unknown size
	if err := ebml.Marshal(&struct {
		Info   webm.Info   `ebml:"Info"`
		Tracks webm.Tracks `ebml:"Tracks"`
	}{webm.Info{TimecodeScale: scale, MuxingApp: "kvsedge", WritingApp: "kvsedge put-media"}, tracks}, &hdr); err != nil {
		return nil, err
	}
	if _, err := w.Write(hdr.Bytes()); err != nil {
		return nil, err
	}
	return f, nil
}

// cluster takes one input cluster's blocks in order.
func (f *fragmenter) cluster(c *webm.Cluster) error {
	blocks := make([]outBlock, 0, len(c.SimpleBlock)+len(c.BlockGroup))
	for _, b := range c.SimpleBlock {
		blocks = append(blocks, outBlock{at: int64(c.Timecode) + int64(b.Timecode), block: b})
	}
	for _, g := range c.BlockGroup {
		b := g.Block
		b.Keyframe = g.ReferenceBlock == 0
		ob := outBlock{at: int64(c.Timecode) + int64(b.Timecode), block: b}
		// After the last block of its track that is not later than it.
		i := len(blocks)
		for i > 0 && (blocks[i-1].block.TrackNumber != b.TrackNumber || blocks[i-1].at > ob.at) {
			i--
		}
		if i == 0 {
			i = len(blocks)
		}
		blocks = slices.Insert(blocks, i, ob)
	}
	for _, b := range blocks {
		if err := f.addUnlaced(b); err != nil {
			return err
		}
	}
	return nil
}

// addUnlaced adds a block, splitting a laced one into one block per frame
// when its track's frame duration is known (KVS producers never lace, and
// players of what the box serves need each frame's time).
func (f *fragmenter) addUnlaced(b outBlock) error {
	d := f.frameNs[b.block.TrackNumber]
	if len(b.block.Data) < 2 || d == 0 {
		return f.add(b)
	}
	for i, frame := range b.block.Data {
		one := b
		one.block.Data = [][]byte{frame}
		one.block.Lacing = ebml.LacingNo
		one.at = b.at + int64((uint64(i)*d+f.scale/2)/f.scale)
		if i > 0 {
			one.block.Keyframe = b.block.Keyframe
		}
		if err := f.add(one); err != nil {
			return err
		}
	}
	return nil
}

func (f *fragmenter) add(b outBlock) error {
	startsFragment := b.block.Keyframe && (f.video == 0 || b.block.TrackNumber == f.video)
	if !f.started {
		if !startsFragment {
			// Held until the first key frame: frames of other tracks
			// stored before it, timed at most 1 s before it, belong to the
			// first fragment (mkvmerge puts audio first).
			f.early = append(f.early, b)
			return nil
		}
		f.started, f.start = true, b.at
		lead := int64(time.Second) / int64(f.scale)
		for _, e := range f.early {
			if e.at >= b.at-lead {
				f.blocks = append(f.blocks, e)
			} else {
				f.dropped++
			}
		}
		f.early = nil
	} else if startsFragment && b.at-f.start >= f.fragment {
		if err := f.flush(); err != nil {
			return err
		}
		f.start = b.at
	}
	if rel := b.at - f.start; rel > 32767 || rel < -32768 {
		return fmt.Errorf("producer: a frame %v after its fragment's key frame: key frames are too far apart to fragment (re-encode with key frames at most every 30 s)",
			time.Duration(rel)*time.Duration(f.scale))
	}
	f.blocks = append(f.blocks, b)
	return nil
}

// flush writes the current fragment as one unknown-size cluster.
func (f *fragmenter) flush() error {
	if len(f.blocks) == 0 {
		return nil
	}
	f.buf.Reset()
	f.buf.Write([]byte{0x1F, 0x43, 0xB6, 0x75, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})
	f.buf.Write([]byte{0xE7, 0x88})
	_ = binary.Write(&f.buf, binary.BigEndian, uint64(f.start))
	var blk bytes.Buffer
	for i := range f.blocks {
		b := &f.blocks[i]
		b.block.Timecode = int16(b.at - f.start)
		blk.Reset()
		if err := ebml.MarshalBlock(&b.block, &blk); err != nil {
			return fmt.Errorf("producer: writing a block: %w", err)
		}
		f.buf.WriteByte(0xA3) // SimpleBlock, 8-byte size
		var size [8]byte
		binary.BigEndian.PutUint64(size[:], uint64(blk.Len())|1<<56)
		f.buf.Write(size[:])
		f.buf.Write(blk.Bytes())
	}
	f.blocks = f.blocks[:0]
	_, err := f.w.Write(f.buf.Bytes())
	return err
}
