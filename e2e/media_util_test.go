package e2e

// Helpers for the media end-to-end tests in e2e_media_test.go: a small
// EBML/Matroska walker written from the Matroska spec (independent of the
// server's own parser), a PutMedia client that writes its own chunked framing
// on a raw TCP connection while it reads acks on the same connection, and a
// signed GetMedia reader that parses chunks as they arrive.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/kvsedge/kvsedge/internal/fixture"
)

// ---------------------------------------------------------------------------
// EBML walker

// Matroska element IDs (with their marker bits, as written on the wire).
const (
	idEBML          = 0x1A45DFA3
	idSegment       = 0x18538067
	idSeekHead      = 0x114D9B74
	idInfo          = 0x1549A966
	idTimecodeScale = 0x2AD7B1
	idTracks        = 0x1654AE6B
	idTrackEntry    = 0xAE
	idTrackNumber   = 0xD7
	idTrackUID      = 0x73C5
	idTrackType     = 0x83
	idCodecID       = 0x86
	idCluster       = 0x1F43B675
	idTimecode      = 0xE7
	idSimpleBlock   = 0xA3
	idBlockGroup    = 0xA0
	idBlock         = 0xA1
	idTags          = 0x1254C367
	idTag           = 0x7373
	idSimpleTag     = 0x67C8
	idTagName       = 0x45A3
	idTagString     = 0x4487
	idCues          = 0x1C53BB6B
	idChapters      = 0x1043A770
	idAttachments   = 0x1941A469
)

// topLevel are the IDs that end an unknown-size Cluster: Segment children
// and the start of a new document.
var topLevel = map[uint32]bool{
	idEBML: true, idSegment: true, idSeekHead: true, idInfo: true, idTracks: true,
	idCluster: true, idCues: true, idTags: true, idChapters: true, idAttachments: true,
}

var errShort = errors.New("ebml: need more data")

// mkvElem is one element found by the walker. Size is -1 for unknown size.
// A Segment is transparent: End == DataOff and its children follow it as
// siblings in the walk.
type mkvElem struct {
	ID                uint32
	Off, DataOff, End int
	Size              int64
}

func (e mkvElem) data(b []byte) []byte { return b[e.DataOff:e.End] }

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

// readVint reads a data size / track number vint (marker removed). unknown
// is true for the all-ones value.
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

// mkvNext parses the element at pos. Unknown-size elements (only Cluster is
// expected) end at the next top-level ID, or at len(b) when eof is true.
// Without eof, an element that is not complete yet gives errShort.
func mkvNext(b []byte, pos int, eof bool) (mkvElem, error) {
	id, idLen, err := readID(b[pos:])
	if err != nil {
		return mkvElem{}, err
	}
	size, szLen, unknown, err := readVint(b[pos+idLen:])
	if err != nil {
		return mkvElem{}, err
	}
	e := mkvElem{ID: id, Off: pos, DataOff: pos + idLen + szLen, Size: int64(size)}
	switch {
	case id == idSegment:
		if unknown {
			e.Size = -1
		}
		e.End = e.DataOff
	case unknown:
		e.Size = -1
		end, err := scanUnknown(b, e.DataOff, eof)
		if err != nil {
			return mkvElem{}, err
		}
		e.End = end
	default:
		if size > uint64(len(b)-e.DataOff) {
			if eof {
				return mkvElem{}, fmt.Errorf("ebml: element %#x at %d: size %d past end %d", id, pos, size, len(b))
			}
			return mkvElem{}, errShort
		}
		e.End = e.DataOff + int(size)
	}
	return e, nil
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
		if topLevel[id] {
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
		next := p + idLen + szLen
		if size > uint64(len(b)-next) {
			if eof {
				return 0, fmt.Errorf("ebml: child %#x at %d runs past the end", id, p)
			}
			return 0, errShort
		}
		p = next + int(size)
	}
	if !eof {
		return 0, errShort
	}
	return p, nil
}

// mkvWalk walks a whole buffer at the top level (Segments transparent).
func mkvWalk(b []byte) ([]mkvElem, error) {
	var out []mkvElem
	for pos := 0; pos < len(b); {
		e, err := mkvNext(b, pos, true)
		if err != nil {
			return out, err
		}
		out = append(out, e)
		pos = e.End
	}
	return out, nil
}

// mkvChildren lists the children of a master element's data.
func mkvChildren(data []byte) ([]mkvElem, error) {
	var out []mkvElem
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
			return out, fmt.Errorf("unknown-size child %#x", id)
		}
		e := mkvElem{ID: id, Off: pos, DataOff: pos + idLen + szLen, Size: int64(size)}
		if size > uint64(len(data)-e.DataOff) {
			return out, fmt.Errorf("child %#x at %d runs past its parent", id, pos)
		}
		e.End = e.DataOff + int(size)
		out = append(out, e)
		pos = e.End
	}
	return out, nil
}

func beUint(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// mkvBlock is one SimpleBlock of a cluster; offsets are absolute in the
// buffer the cluster was parsed from.
type mkvBlock struct {
	ElemOff  int // start of the SimpleBlock element
	End      int // end of the SimpleBlock element
	TrackOff int // start of the track-number vint
	FlagsOff int // the flags byte
	Track    uint64
	RelTC    int16
	Flags    byte
	Data     []byte // the whole SimpleBlock payload (track, timecode, flags, frame)
}

// mkvCluster is a parsed cluster.
type mkvCluster struct {
	Elem        mkvElem
	TimecodeOff int // start of the Timecode element's data
	TimecodeLen int
	Timecode    uint64
	Blocks      []mkvBlock
}

func parseCluster(b []byte, e mkvElem) (mkvCluster, error) {
	c := mkvCluster{Elem: e, TimecodeOff: -1}
	kids, err := mkvChildren(e.data(b))
	if err != nil {
		return c, fmt.Errorf("cluster at %d: %w", e.Off, err)
	}
	for _, k := range kids {
		abs := e.DataOff
		switch k.ID {
		case idTimecode:
			c.TimecodeOff, c.TimecodeLen = abs+k.DataOff, k.End-k.DataOff
			c.Timecode = beUint(b[abs+k.DataOff : abs+k.End])
		case idSimpleBlock:
			d := b[abs+k.DataOff : abs+k.End]
			tr, n, _, err := readVint(d)
			if err != nil || len(d) < n+3 {
				return c, fmt.Errorf("cluster at %d: bad SimpleBlock at %d", e.Off, abs+k.Off)
			}
			c.Blocks = append(c.Blocks, mkvBlock{
				ElemOff: abs + k.Off, End: abs + k.End, TrackOff: abs + k.DataOff, FlagsOff: abs + k.DataOff + n + 2,
				Track: tr, RelTC: int16(binary.BigEndian.Uint16(d[n:])), Flags: d[n+2], Data: d,
			})
		}
	}
	if c.TimecodeOff < 0 {
		return c, fmt.Errorf("cluster at %d has no Timecode", e.Off)
	}
	return c, nil
}

// simpleTag is one name/value pair of a Tags element.
type simpleTag struct{ Name, Value string }

// parseTags flattens every SimpleTag (nested ones too) of a Tags element.
func parseTags(data []byte) ([]simpleTag, error) {
	var out []simpleTag
	var walk func(d []byte, depth int) error
	walk = func(d []byte, depth int) error {
		if depth > 8 {
			return errors.New("tags nested too deep")
		}
		kids, err := mkvChildren(d)
		if err != nil {
			return err
		}
		var st simpleTag
		isSimple := false
		for _, k := range kids {
			switch k.ID {
			case idTag:
				if err := walk(k.data(d), depth+1); err != nil {
					return err
				}
			case idSimpleTag:
				if err := walk(k.data(d), depth+1); err != nil {
					return err
				}
			case idTagName:
				st.Name, isSimple = strings.TrimRight(string(k.data(d)), "\x00"), true
			case idTagString:
				st.Value = strings.TrimRight(string(k.data(d)), "\x00")
			}
		}
		if isSimple {
			// Nested SimpleTags were appended by the recursion first;
			// the tests look tags up by name, so order does not matter.
			out = append(out, st)
		}
		return nil
	}
	return out, walk(data, 0)
}

// producerFragment is one cluster of a producer's PutMedia body, with the
// Tags that follow it up to the next cluster.
type producerFragment struct {
	Cluster mkvCluster
	Off     int // cluster start
	End     int // next cluster (or EBML header) start, or len(body)
	Tags    []simpleTag
}

// producerBody is a parsed PutMedia body.
type producerBody struct {
	Raw           []byte
	HeaderEnd     int // offset of the first Cluster
	TimecodeScale uint64
	Tracks        mkvElem
	TrackNumbers  []uint64
	TrackCodecs   []string
	Frags         []producerFragment
}

func parseProducerBody(b []byte) (*producerBody, error) {
	els, err := mkvWalk(b)
	if err != nil {
		return nil, err
	}
	pb := &producerBody{Raw: b, HeaderEnd: -1, TimecodeScale: 1000000}
	for _, e := range els {
		switch e.ID {
		case idInfo:
			kids, err := mkvChildren(e.data(b))
			if err != nil {
				return nil, err
			}
			for _, k := range kids {
				if k.ID == idTimecodeScale {
					pb.TimecodeScale = beUint(k.data(e.data(b)))
				}
			}
		case idTracks:
			pb.Tracks = e
			kids, err := mkvChildren(e.data(b))
			if err != nil {
				return nil, err
			}
			for _, k := range kids {
				if k.ID != idTrackEntry {
					continue
				}
				te := k.data(e.data(b))
				fields, err := mkvChildren(te)
				if err != nil {
					return nil, err
				}
				for _, f := range fields {
					switch f.ID {
					case idTrackNumber:
						pb.TrackNumbers = append(pb.TrackNumbers, beUint(f.data(te)))
					case idCodecID:
						pb.TrackCodecs = append(pb.TrackCodecs, strings.TrimRight(string(f.data(te)), "\x00"))
					}
				}
			}
		case idCluster:
			if pb.HeaderEnd < 0 {
				pb.HeaderEnd = e.Off
			}
			c, err := parseCluster(b, e)
			if err != nil {
				return nil, err
			}
			if n := len(pb.Frags); n > 0 {
				pb.Frags[n-1].End = e.Off
			}
			pb.Frags = append(pb.Frags, producerFragment{Cluster: c, Off: e.Off, End: len(b)})
		case idTags:
			if n := len(pb.Frags); n > 0 {
				tags, err := parseTags(e.data(b))
				if err != nil {
					return nil, err
				}
				pb.Frags[n-1].Tags = append(pb.Frags[n-1].Tags, tags...)
			}
		case idEBML:
			if n := len(pb.Frags); n > 0 {
				pb.Frags[n-1].End = e.Off
			}
		}
	}
	if pb.HeaderEnd < 0 {
		return nil, errors.New("no cluster in body")
	}
	return pb, nil
}

// Header returns a copy of the bytes before the first cluster.
func (pb *producerBody) Header() []byte { return append([]byte(nil), pb.Raw[:pb.HeaderEnd]...) }

// FragBytes returns a copy of fragment i (cluster plus trailing tags).
func (pb *producerBody) FragBytes(i int) []byte {
	f := pb.Frags[i]
	return append([]byte(nil), pb.Raw[f.Off:f.End]...)
}

// blockDigest hashes every SimpleBlock payload of a cluster, in order: two
// clusters carry the same media when their digests match.
func blockDigest(blocks []mkvBlock) string {
	h := sha256.New()
	for _, bl := range blocks {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(bl.Data)))
		h.Write(n[:])
		h.Write(bl.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ebmlSize encodes n as an 8-byte data size vint.
func ebmlSize8(n int) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(n))
	b[0] = 0x01
	return b
}

func ebmlID(id uint32) []byte {
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

// ebmlElem builds an element with an 8-byte size.
func ebmlElem(id uint32, data ...[]byte) []byte {
	var body []byte
	for _, d := range data {
		body = append(body, d...)
	}
	out := append(ebmlID(id), ebmlSize8(len(body))...)
	return append(out, body...)
}

// ---------------------------------------------------------------------------
// GetMedia output

// mediaChunk is one standalone Matroska document of a GetMedia /
// GetMediaForFragmentList response.
type mediaChunk struct {
	Off, End   int
	PreTags    map[string]string // Tags before the cluster
	PostTags   map[string]string // Tags after the cluster
	Clusters   []mkvCluster
	HasInfo    bool
	HasTracks  bool
	Codecs     []string  // CodecIDs of the chunk's Tracks
	Complete   bool      // the trailing CONTINUATION_TOKEN has been seen
	ReceivedAt time.Time // when the last byte of the chunk was read (streaming reads only)
}

func (c *mediaChunk) FragmentNumber() string { return c.PreTags["AWS_KINESISVIDEO_FRAGMENT_NUMBER"] }

// chunkBuilder turns top-level elements into chunks.
type chunkBuilder struct {
	b      []byte
	chunks []*mediaChunk
}

func (cb *chunkBuilder) add(e mkvElem, now time.Time) error {
	if e.ID == idEBML || len(cb.chunks) == 0 {
		if e.ID != idEBML {
			return fmt.Errorf("media output: element %#x at %d before any EBML header", e.ID, e.Off)
		}
		cb.chunks = append(cb.chunks, &mediaChunk{Off: e.Off, PreTags: map[string]string{}, PostTags: map[string]string{}})
	}
	c := cb.chunks[len(cb.chunks)-1]
	c.End = e.End
	c.ReceivedAt = now
	switch e.ID {
	case idInfo:
		c.HasInfo = true
	case idTracks:
		c.HasTracks = true
		entries, err := mkvChildren(e.data(cb.b))
		if err != nil {
			return fmt.Errorf("tracks at %d: %w", e.Off, err)
		}
		for _, en := range entries {
			if en.ID != idTrackEntry {
				continue
			}
			d := en.data(e.data(cb.b))
			fields, err := mkvChildren(d)
			if err != nil {
				return fmt.Errorf("track entry at %d: %w", e.Off, err)
			}
			for _, f := range fields {
				if f.ID == idCodecID {
					c.Codecs = append(c.Codecs, strings.TrimRight(string(f.data(d)), "\x00"))
				}
			}
		}
	case idCluster:
		cl, err := parseCluster(cb.b, e)
		if err != nil {
			return err
		}
		c.Clusters = append(c.Clusters, cl)
	case idTags:
		tags, err := parseTags(e.data(cb.b))
		if err != nil {
			return fmt.Errorf("tags at %d: %w", e.Off, err)
		}
		dst := c.PreTags
		if len(c.Clusters) > 0 {
			dst = c.PostTags
		}
		for _, tg := range tags {
			if _, dup := dst[tg.Name]; dup && strings.HasPrefix(tg.Name, "AWS_KINESISVIDEO_") {
				return fmt.Errorf("chunk at %d: tag %s repeated", c.Off, tg.Name)
			}
			dst[tg.Name] = tg.Value
		}
		if _, ok := c.PostTags["AWS_KINESISVIDEO_CONTINUATION_TOKEN"]; ok {
			c.Complete = true
		}
	}
	return nil
}

// parseMediaOutput parses a whole GetMedia/GMFFL body.
func parseMediaOutput(b []byte) ([]*mediaChunk, error) {
	cb := &chunkBuilder{b: b}
	els, err := mkvWalk(b)
	for _, e := range els {
		if err := cb.add(e, time.Time{}); err != nil {
			return cb.chunks, err
		}
	}
	return cb.chunks, err
}

// ---------------------------------------------------------------------------
// Signed requests

var e2eCreds = aws.Credentials{AccessKeyID: e2eAKID, SecretAccessKey: e2eSecret}

const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// signedJSONRequest builds a SigV4-signed JSON POST like the SDKs send.
func signedJSONRequest(ctx context.Context, t testing.TB, endpoint, path string, body any) *http.Request {
	t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+path, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(raw)
	if err := v4.NewSigner().SignHTTP(ctx, e2eCreds, req, hex.EncodeToString(sum[:]), "kinesisvideo", "us-west-2", time.Now()); err != nil {
		t.Fatal(err)
	}
	return req
}

// callJSON does a signed JSON call and decodes a 200 answer into out.
func callJSON(t testing.TB, endpoint, path string, in, out any) (int, []byte) {
	t.Helper()
	status, raw, _ := callJSONH(t, endpoint, path, in, out)
	return status, raw
}

// callJSONH is callJSON that also returns the response headers.
func callJSONH(t testing.TB, endpoint, path string, in, out any) (int, []byte, http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(signedJSONRequest(ctx, t, endpoint, path, in))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading body: %v", path, err)
	}
	if resp.StatusCode == 200 && out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("POST %s: %q: %v", path, raw, err)
		}
	}
	return resp.StatusCode, raw, resp.Header
}

// ---------------------------------------------------------------------------
// PutMedia over a raw TCP connection

// ack is one PutMedia acknowledgement as received.
type ack struct {
	EventType        string
	FragmentTimecode json.RawMessage // must be a bare JSON number
	FragmentNumber   string
	ErrorId          int
	At               time.Time `json:"-"`
}

// timecode is FragmentTimecode as sent (quotes kept, so a string never
// compares equal to a number).
func (a ack) timecode() string { return string(a.FragmentTimecode) }

func (a ack) String() string {
	s := fmt.Sprintf("%s tc=%s fn=%s", a.EventType, a.timecode(), a.FragmentNumber)
	if a.ErrorId != 0 {
		s += fmt.Sprintf(" err=%d", a.ErrorId)
	}
	return s
}

// chunkSpec is one HTTP chunk to write: its size and the pause before it.
type chunkSpec struct {
	Size  int
	Delay time.Duration
}

// loadChunkPlan reads a *.chunks.tsv file. Delays are divided by speedup and
// capped at maxDelay.
func loadChunkPlan(t *testing.T, path string, speedup int, maxDelay time.Duration) []chunkSpec {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var plan []chunkSpec
	next := 0
	for _, line := range strings.Split(string(raw), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			t.Fatalf("%s: bad line %q", path, line)
		}
		off, err1 := strconv.Atoi(f[0])
		size, err2 := strconv.Atoi(f[1])
		ms, err3 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || err3 != nil || off != next {
			t.Fatalf("%s: bad line %q", path, line)
		}
		next = off + size
		d := time.Duration(ms) * time.Millisecond / time.Duration(speedup)
		if d > maxDelay {
			d = maxDelay
		}
		plan = append(plan, chunkSpec{Size: size, Delay: d})
	}
	return plan
}

// evenChunks splits n bytes into chunks of size with a fixed delay.
func evenChunks(n, size int, delay time.Duration) []chunkSpec {
	var plan []chunkSpec
	for n > 0 {
		s := min(size, n)
		plan = append(plan, chunkSpec{Size: s, Delay: delay})
		n -= s
	}
	return plan
}

// ackChunk is one HTTP chunk of the ack stream.
type ackChunk struct {
	Size  int
	Acks  int  // acks completed in this chunk
	Split bool // the chunk ended inside an ack
	Data  string
}

// writeRec is one write of body data: the body offset it reached and when.
type writeRec struct {
	End int
	At  time.Time
}

// writtenAt returns when the body byte at off was written (zero if never).
func (r *putMediaResult) writtenAt(off int) time.Time {
	for _, w := range r.Writes {
		if w.End > off {
			return w.At
		}
	}
	return time.Time{}
}

// readChunk reads one chunk of a chunked body; io.EOF after the last chunk
// and its trailer.
func readChunk(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("chunk size line: %w", err)
	}
	sizeStr, _, _ := strings.Cut(strings.TrimRight(line, "\r\n"), ";")
	size, err := strconv.ParseUint(strings.TrimSpace(sizeStr), 16, 31)
	if err != nil {
		return nil, fmt.Errorf("chunk size %q: %w", line, err)
	}
	if size == 0 {
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return nil, fmt.Errorf("chunked trailer: %w", err)
			}
			if l == "\r\n" || l == "\n" {
				return nil, io.EOF
			}
		}
	}
	data := make([]byte, size+2)
	if _, err := io.ReadFull(br, data); err != nil {
		return nil, fmt.Errorf("chunk data: %w", err)
	}
	if string(data[size:]) != "\r\n" {
		return nil, fmt.Errorf("chunk of %d bytes not followed by CRLF", size)
	}
	return data[:size], nil
}

// putMediaReq describes one PutMedia upload.
type putMediaReq struct {
	Stream       string
	TimecodeType string // ABSOLUTE or RELATIVE
	Start        string // x-amzn-producer-start-timestamp
	Body         []byte
	Plan         []chunkSpec // nil: 32 KiB chunks, no delay
	Expect100    bool        // send Expect: 100-continue and wait (≤ 2 s) for it
	Secret       string      // signing secret; default e2eSecret
	HostNoPort   bool        // send and sign Host without the port, as the C producer does
	ExtraHeaders map[string]string
	// TolerateDown: a box that cannot be reached is a result (ReadErr),
	// not a test failure (the crash suite kills it while producers run).
	TolerateDown bool
	// Until stops waiting for acks once it returns true (checked after
	// each ack and at the end of the upload). Nil: wait for the server
	// to end the response.
	Until func(acks []ack) bool
	// OnAck, when set, sees every ack as it arrives.
	OnAck func(a ack)
	// HoldOpen keeps the body open after the data (no terminating chunk)
	// until Until holds or AckWait passes, as a producer waiting for its
	// last PERSISTED does.
	HoldOpen bool
	// AbortAt > 0 drops the connection once the body reaches this offset,
	// in the middle of an HTTP chunk.
	AbortAt int
	// AckWait bounds the wait for acks after the body is sent; default 15 s.
	AckWait time.Duration
}

// putMediaResult is what happened.
type putMediaResult struct {
	Status      int
	Header      http.Header
	ErrBody     []byte // body of a non-200 answer
	Acks        []ack
	Got100      bool
	UploadStart time.Time
	DataEnd     time.Time // when the last data chunk was written
	UploadEnd   time.Time // when the terminating chunk was written (zero if never)
	// DoneWhileOpen: with HoldOpen, Until held before the body was ended.
	DoneWhileOpen bool
	WriteErr      error      // first write error (the server closed on us)
	ReadErr       error      // how the ack stream ended (nil: clean end of the response)
	RespEnded     bool       // the response ended (clean or not) before we stopped waiting
	EndedAt       time.Time  // when the response ended or the connection failed (zero: we closed it)
	AckChunks     []ackChunk // the HTTP chunks of a chunked 200 response
	Writes        []writeRec // every body write, in order
}

func (r *putMediaResult) ackLog() string {
	var sb strings.Builder
	for _, a := range r.Acks {
		fmt.Fprintf(&sb, "  +%v %s\n", a.At.Sub(r.UploadStart).Round(time.Millisecond), a)
	}
	return sb.String()
}

// events returns the acks of one EventType, in arrival order.
func (r *putMediaResult) events(typ string) []ack {
	var out []ack
	for _, a := range r.Acks {
		if a.EventType == typ {
			out = append(out, a)
		}
	}
	return out
}

// putMedia uploads req.Body on a raw TCP connection with our own chunked
// framing, reading the response concurrently.
func putMedia(t *testing.T, endpoint string, req putMediaReq) *putMediaResult {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		if req.TolerateDown {
			return &putMediaResult{ReadErr: err}
		}
		t.Fatalf("dial %s: %v", u.Host, err)
	}
	defer conn.Close()

	hreq, err := http.NewRequest(http.MethodPost, endpoint+"/putMedia", nil)
	if err != nil {
		t.Fatal(err)
	}
	hreq.ContentLength = -1
	host := u.Host
	if req.HostNoPort {
		host = u.Hostname()
		hreq.Host = host
	}
	h := hreq.Header
	h.Set("User-Agent", "AWS-PRODUCER-SDK-KVS/1.6.0 kvsedge-e2e")
	if req.Stream != "" {
		h.Set("X-Amzn-Stream-Name", req.Stream)
	}
	h.Set("X-Amzn-Fragment-Timecode-Type", req.TimecodeType)
	h.Set("X-Amzn-Producer-Start-Timestamp", req.Start)
	h.Set("X-Amzn-Fragment-Acknowledgment-Required", "1")
	h.Set("Content-Type", "application/json")
	h.Set("Connection", "keep-alive")
	for k, v := range req.ExtraHeaders {
		h.Set(k, v)
	}
	secret := e2eSecret
	if req.Secret != "" {
		secret = req.Secret
	}
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: e2eAKID, SecretAccessKey: secret},
		hreq, emptySHA256, "kinesisvideo", "us-west-2", time.Now()); err != nil {
		t.Fatal(err)
	}
	var head bytes.Buffer
	fmt.Fprintf(&head, "POST /putMedia HTTP/1.1\r\nHost: %s\r\n", host)
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			fmt.Fprintf(&head, "%s: %s\r\n", k, v)
		}
	}
	head.WriteString("Transfer-Encoding: chunked\r\n")
	if req.Expect100 {
		head.WriteString("Expect: 100-continue\r\n")
	}
	head.WriteString("\r\n")

	res := &putMediaResult{}
	var mu sync.Mutex // guards res.Acks, res.Status, res.Header, res.Got100 while the reader runs
	got100 := make(chan struct{})
	gotHeaders := make(chan struct{})
	ackSignal := make(chan struct{}, 1)
	readerDone := make(chan struct{})
	until := func() bool {
		if req.Until == nil {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		return req.Until(append([]ack(nil), res.Acks...))
	}

	closing := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer func() {
			select {
			case <-closing:
			default:
				mu.Lock()
				res.EndedAt = time.Now()
				mu.Unlock()
			}
		}()
		br := bufio.NewReader(conn)
		var resp *http.Response
		for {
			r, err := http.ReadResponse(br, hreq)
			if err != nil {
				mu.Lock()
				res.ReadErr = fmt.Errorf("reading response head: %w", err)
				mu.Unlock()
				return
			}
			if r.StatusCode == http.StatusContinue {
				mu.Lock()
				res.Got100 = true
				mu.Unlock()
				select {
				case <-got100:
				default:
					close(got100)
				}
				continue
			}
			resp = r
			break
		}
		mu.Lock()
		res.Status, res.Header = resp.StatusCode, resp.Header
		mu.Unlock()
		close(gotHeaders)
		if resp.StatusCode != 200 {
			b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			mu.Lock()
			res.ErrBody, res.ReadErr = b, err
			mu.Unlock()
			return
		}
		emit := func(a ack) {
			a.At = time.Now()
			mu.Lock()
			res.Acks = append(res.Acks, a)
			mu.Unlock()
			if req.OnAck != nil {
				req.OnAck(a)
			}
			select {
			case ackSignal <- struct{}{}:
			default:
			}
		}
		if !slices.Contains(resp.TransferEncoding, "chunked") {
			// Not chunked: no framing to check, decode the body as is.
			dec := json.NewDecoder(resp.Body)
			for {
				var a ack
				if err := dec.Decode(&a); err != nil {
					if err != io.EOF {
						mu.Lock()
						res.ReadErr = err
						mu.Unlock()
					}
					return
				}
				emit(a)
			}
		}
		// Chunked: read the framing ourselves from br (ReadResponse has
		// consumed only the head) to see how acks are split into chunks.
		var pending []byte
		for {
			data, err := readChunk(br)
			if err == io.EOF {
				if len(bytes.TrimSpace(pending)) > 0 {
					mu.Lock()
					res.ReadErr = fmt.Errorf("response ended inside an ack: %q", pending)
					mu.Unlock()
				}
				return
			}
			if err != nil {
				mu.Lock()
				res.ReadErr = err
				mu.Unlock()
				return
			}
			pending = append(pending, data...)
			dec := json.NewDecoder(bytes.NewReader(pending))
			consumed, n := 0, 0
			for {
				var a ack
				err := dec.Decode(&a)
				if err == nil {
					consumed = int(dec.InputOffset())
					n++
					emit(a)
					continue
				}
				if err == io.EOF || err == io.ErrUnexpectedEOF {
					break
				}
				mu.Lock()
				res.ReadErr = fmt.Errorf("bad ack %q: %w", pending, err)
				mu.Unlock()
				return
			}
			pending = append([]byte(nil), pending[consumed:]...)
			mu.Lock()
			res.AckChunks = append(res.AckChunks, ackChunk{Size: len(data), Acks: n,
				Split: len(bytes.TrimSpace(pending)) > 0, Data: string(data)})
			mu.Unlock()
		}
	}()

	_ = conn.SetWriteDeadline(time.Now().Add(60 * time.Second))
	res.UploadStart = time.Now()
	if _, err := conn.Write(head.Bytes()); err != nil {
		res.WriteErr = err
	}
	if req.Expect100 && res.WriteErr == nil {
		select {
		case <-got100:
		case <-gotHeaders:
		case <-readerDone:
		case <-time.After(2 * time.Second):
		}
	}
	plan := req.Plan
	if plan == nil {
		plan = evenChunks(len(req.Body), 32<<10, 0)
	}
	off := 0
	stopped := false
	for _, c := range plan {
		if res.WriteErr != nil || stopped {
			break
		}
		if c.Delay > 0 {
			time.Sleep(c.Delay)
		}
		select {
		case <-readerDone:
			// The server ended the response: stop writing, as curl would.
			stopped = true
			continue
		default:
		}
		end := min(off+c.Size, len(req.Body))
		if end <= off {
			break
		}
		if req.AbortAt > 0 && end > req.AbortAt {
			// Drop the connection in the middle of a chunk, as the C
			// producer does when it gives up on a session.
			frame := fmt.Appendf(nil, "%x\r\n", end-off)
			frame = append(frame, req.Body[off:req.AbortAt]...)
			_, _ = conn.Write(frame)
			res.Writes = append(res.Writes, writeRec{End: req.AbortAt, At: time.Now()})
			time.Sleep(100 * time.Millisecond)
			res.DataEnd = time.Now()
			close(closing)
			conn.Close()
			<-readerDone
			mu.Lock()
			defer mu.Unlock()
			out := *res
			out.Acks = append([]ack(nil), res.Acks...)
			return &out
		}
		frame := make([]byte, 0, end-off+16)
		frame = fmt.Appendf(frame, "%x\r\n", end-off)
		frame = append(frame, req.Body[off:end]...)
		frame = append(frame, "\r\n"...)
		if _, err := conn.Write(frame); err != nil {
			res.WriteErr = err
		}
		off = end
		res.Writes = append(res.Writes, writeRec{End: off, At: time.Now()})
	}
	if res.WriteErr == nil && !stopped && off < len(req.Body) {
		frame := fmt.Appendf(nil, "%x\r\n", len(req.Body)-off)
		frame = append(append(frame, req.Body[off:]...), "\r\n"...)
		if _, err := conn.Write(frame); err != nil {
			res.WriteErr = err
		}
		res.Writes = append(res.Writes, writeRec{End: len(req.Body), At: time.Now()})
	}
	res.DataEnd = time.Now()

	wait := req.AckWait
	if wait == 0 {
		wait = 15 * time.Second
	}
	deadline := time.After(wait)
	// waitAcks waits until Until holds, the response ends or the deadline.
	waitAcks := func() {
		for !until() {
			select {
			case <-readerDone:
				res.RespEnded = true
				return
			case <-ackSignal:
			case <-deadline:
				return
			}
		}
	}
	if req.HoldOpen && res.WriteErr == nil && !stopped {
		waitAcks()
		res.DoneWhileOpen = until()
	}
	if res.WriteErr == nil && !stopped && !res.RespEnded {
		if _, err := conn.Write([]byte("0\r\n\r\n")); err != nil {
			res.WriteErr = err
		} else {
			res.UploadEnd = time.Now()
		}
	}
	waitAcks()
	close(closing)
	conn.Close()
	<-readerDone
	mu.Lock()
	defer mu.Unlock()
	out := *res
	out.Acks = append([]ack(nil), res.Acks...)
	return &out
}

// persistedAll returns an Until that waits for n PERSISTED acks or any ERROR.
func persistedAll(n int) func([]ack) bool {
	return func(acks []ack) bool {
		p := 0
		for _, a := range acks {
			switch a.EventType {
			case "PERSISTED":
				p++
			case "ERROR":
				return true
			}
		}
		return p >= n
	}
}

// firstError is an Until that stops at the first ERROR ack.
func firstError(acks []ack) bool {
	for _, a := range acks {
		if a.EventType == "ERROR" {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------
// GetMedia over signed HTTP, parsed as it streams

// mediaOpt tunes getMediaStream.
type mediaOpt struct {
	RcvBuf int             // SO_RCVBUF of the connection (0: default)
	Gate   <-chan struct{} // start reading the body only once this is closed
}

// mediaStream is the result of reading a GetMedia response.
type mediaStream struct {
	Status  int
	Header  http.Header
	Body    []byte
	Chunks  []*mediaChunk
	EndErr  error // how the body ended (nil: clean EOF)
	ParsErr error
	Started time.Time // when the request was written
}

func (m *mediaStream) complete() []*mediaChunk {
	var out []*mediaChunk
	for _, c := range m.Chunks {
		if c.Complete {
			out = append(out, c)
		}
	}
	return out
}

func (m *mediaStream) fragmentNumbers() []string {
	var out []string
	for _, c := range m.complete() {
		out = append(out, c.FragmentNumber())
	}
	return out
}

// getMediaStream posts /getMedia (or another media path) and reads the body
// until EOF, until stop returns true for the complete chunks so far, or
// until ctx ends. written is closed once the request has been sent.
func getMediaStream(ctx context.Context, t *testing.T, endpoint, path string, in any, stop func([]*mediaChunk) bool, written chan<- struct{}, opts ...mediaOpt) *mediaStream {
	req := signedJSONRequest(ctx, t, endpoint, path, in)
	ms := &mediaStream{}
	var o mediaOpt
	for _, x := range opts {
		o = x
	}
	tr := &http.Transport{DisableCompression: true}
	if o.RcvBuf > 0 {
		d := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.RcvBuf)
			})
		}}
		tr.DialContext = d.DialContext
	}
	defer tr.CloseIdleConnections()
	ms.Started = time.Now()
	if written != nil {
		close(written)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		ms.EndErr = err
		return ms
	}
	defer resp.Body.Close()
	ms.Status, ms.Header = resp.StatusCode, resp.Header
	if resp.StatusCode != 200 {
		ms.Body, ms.EndErr = io.ReadAll(resp.Body)
		return ms
	}
	if o.Gate != nil {
		select {
		case <-o.Gate:
		case <-ctx.Done():
		}
	}
	cb := &chunkBuilder{}
	pos := 0
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		now := time.Now()
		if n > 0 {
			ms.Body = append(ms.Body, buf[:n]...)
			cb.b = ms.Body
			for pos < len(ms.Body) && ms.ParsErr == nil {
				e, perr := mkvNext(ms.Body, pos, false)
				if perr == errShort {
					break
				}
				if perr == nil {
					perr = cb.add(e, now)
				}
				if perr != nil {
					ms.ParsErr = perr
					break
				}
				pos = e.End
			}
			ms.Chunks = cb.chunks
			if stop != nil && ms.ParsErr == nil {
				var done []*mediaChunk
				for _, c := range cb.chunks {
					if c.Complete {
						done = append(done, c)
					}
				}
				if stop(done) {
					return ms
				}
			}
		}
		if err != nil {
			if err != io.EOF {
				ms.EndErr = err
			}
			break
		}
	}
	// Finish the last element (an unknown-size cluster ends at EOF) unless
	// the body broke off.
	if ms.ParsErr == nil && ms.EndErr == nil && pos < len(ms.Body) {
		cb.b = ms.Body
		for pos < len(ms.Body) {
			e, perr := mkvNext(ms.Body, pos, true)
			if perr == nil {
				perr = cb.add(e, time.Now())
			}
			if perr != nil {
				ms.ParsErr = perr
				break
			}
			pos = e.End
		}
		ms.Chunks = cb.chunks
	}
	return ms
}

// ---------------------------------------------------------------------------
// CLI and tool helpers

// fragment is one ListFragments entry as the CLI prints it.
type fragment struct {
	FragmentNumber               string
	FragmentSizeInBytes          int64
	ProducerTimestamp            float64
	ServerTimestamp              float64
	FragmentLengthInMilliseconds int64
}

type listFragmentsOut struct {
	Fragments []fragment
	NextToken string
}

// listFragmentsCLI runs `aws kinesis-video-archived-media list-fragments`.
func listFragmentsCLI(t *testing.T, endpoint, stream string, args ...string) listFragmentsOut {
	t.Helper()
	var out listFragmentsOut
	awsCLI(t, endpoint, nil, &out, append([]string{"kinesis-video-archived-media", "list-fragments", "--stream-name", stream}, args...)...)
	return out
}

func producerRange(fromSec, toSec int64) string {
	return fmt.Sprintf("FragmentSelectorType=PRODUCER_TIMESTAMP,TimestampRange={StartTimestamp=%d,EndTimestamp=%d}", fromSec, toSec)
}

func serverRange(fromSec, toSec int64) string {
	return fmt.Sprintf("FragmentSelectorType=SERVER_TIMESTAMP,TimestampRange={StartTimestamp=%d,EndTimestamp=%d}", fromSec, toSec)
}

func sortedNumbers(fs []fragment) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.FragmentNumber)
	}
	sort.Strings(out)
	return out
}

// listAllRaw lists a stream's fragments in a producer time range with signed
// HTTP (cheaper than the CLI for polling), following NextToken.
func listAllRaw(t *testing.T, endpoint, stream string, fromMs, toMs int64) []fragment {
	t.Helper()
	var all []fragment
	in := map[string]any{
		"StreamName": stream,
		"FragmentSelector": map[string]any{
			"FragmentSelectorType": "PRODUCER_TIMESTAMP",
			"TimestampRange": map[string]any{
				"StartTimestamp": float64(fromMs) / 1000, "EndTimestamp": float64(toMs) / 1000,
			},
		},
	}
	for range 1000 {
		var out listFragmentsOut
		status, raw := callJSON(t, endpoint, "/listFragments", in, &out)
		if status != 200 {
			t.Fatalf("listFragments: %d %s", status, raw)
		}
		all = append(all, out.Fragments...)
		if out.NextToken == "" {
			return all
		}
		in = map[string]any{"StreamName": stream, "NextToken": out.NextToken}
	}
	t.Fatal("listFragments: NextToken never ends")
	return nil
}

// ffprobeStreams runs ffprobe -count_frames on path.
type probeStream struct {
	CodecName    string `json:"codec_name"`
	CodecType    string `json:"codec_type"`
	NbReadFrames string `json:"nb_read_frames"`
}

func ffprobe(t *testing.T, path string) []probeStream {
	t.Helper()
	bin := needTool(t, "ffprobe")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-v", "error", "-count_frames", "-show_streams", "-of", "json", path).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("ffprobe %s: %v %s", path, err, stderr)
	}
	var parsed struct{ Streams []probeStream }
	if err := json.Unmarshal(out, &parsed); err != nil {
		t.Fatalf("ffprobe output %q: %v", out, err)
	}
	return parsed.Streams
}

// probeSummary maps codec → frame count.
func probeSummary(streams []probeStream) map[string]string {
	m := map[string]string{}
	for _, s := range streams {
		m[s.CodecName] = s.NbReadFrames
	}
	return m
}

// inputFrames counts a capture's frames per codec from its SimpleBlocks
// (for the captures, ffprobe -count_frames reports the same: 493 h264;
// 248 h264 + 495 aac).
func inputFrames(pb *producerBody) map[string]string {
	codec := map[uint64]string{}
	for k, n := range pb.TrackNumbers {
		switch pb.TrackCodecs[k] {
		case "V_MPEG4/ISO/AVC":
			codec[n] = "h264"
		case "A_AAC":
			codec[n] = "aac"
		}
	}
	count := map[string]int{}
	for _, f := range pb.Frags {
		for _, b := range f.Cluster.Blocks {
			count[codec[b.Track]]++
		}
	}
	out := map[string]string{}
	for k, v := range count {
		out[k] = strconv.Itoa(v)
	}
	return out
}

func mkvinfo(t *testing.T, path string) {
	t.Helper()
	bin := needTool(t, "mkvinfo")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, path).CombinedOutput()
	if err != nil {
		tail := string(out)
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		t.Fatalf("mkvinfo %s: %v\n%s", path, err, tail)
	}
}

var testdataDir = fixture.Dir()

func loadCapture(t *testing.T, name string) *producerBody {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testdataDir, name+".mkv"))
	if err != nil {
		t.Fatal(err)
	}
	pb, err := parseProducerBody(raw)
	if err != nil {
		t.Fatalf("parsing %s: %v", name, err)
	}
	return pb
}

// mediaEnv is streamEnv plus a short GetMedia idle end so that CLI get-media
// returns.
func mediaEnv(dir string) []string {
	return append(streamEnv(dir), "KVSEDGE_MEDIA__GET_MEDIA_IDLE_TIMEOUT=3s")
}

func createStream(t *testing.T, endpoint, name string) string {
	t.Helper()
	return createStreamRetention(t, endpoint, name, 24)
}

// createStreamRetention creates a stream and returns its ARN.
func createStreamRetention(t *testing.T, endpoint, name string, hours int) string {
	t.Helper()
	var out struct{ StreamARN string }
	status, raw := callJSON(t, endpoint, "/createStream", map[string]any{"StreamName": name, "DataRetentionInHours": hours}, &out)
	if status != 200 || out.StreamARN == "" {
		t.Fatalf("createStream %s: %d %s", name, status, raw)
	}
	return out.StreamARN
}

// isFragmentNumber checks the documented fixed-width form.
func isFragmentNumber(s string) bool {
	if len(s) != 32 || s[0] == '0' {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseMillis parses "1511852109.126" into milliseconds, requiring exactly
// three decimals.
func parseMillis(s string) (int64, bool) {
	sec, frac, ok := strings.Cut(s, ".")
	if !ok || len(frac) != 3 {
		return 0, false
	}
	a, err1 := strconv.ParseInt(sec, 10, 64)
	b, err2 := strconv.ParseInt(frac, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return a*1000 + b, true
}

// secondsToMillis rounds a JSON seconds timestamp to milliseconds.
func secondsToMillis(f float64) int64 {
	if f >= 0 {
		return int64(f*1000 + 0.5)
	}
	return int64(f*1000 - 0.5)
}

// requireRunning fails the test when the server process has exited.
func (p *proc) requireRunning(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("kvsedge exited:\n%s", p.logs.String())
	default:
	}
}

// buildBody returns the header plus the given fragments, each passed through
// edit (which gets a copy of the fragment's bytes and the fragment's offset
// in pb.Raw, so absolute offsets o map to f[o-base]).
func (pb *producerBody) buildBody(t *testing.T, header []byte, idxs []int, edit func(k, i int, f []byte, base int)) []byte {
	t.Helper()
	if header == nil {
		header = pb.Header()
	}
	body := append([]byte(nil), header...)
	for k, i := range idxs {
		f := pb.FragBytes(i)
		if edit != nil {
			edit(k, i, f, pb.Frags[i].Off)
		}
		body = append(body, f...)
	}
	return body
}

// setTimecode rewrites fragment i's 8-byte cluster Timecode inside its copy f.
func (pb *producerBody) setTimecode(t *testing.T, i int, f []byte, base int, tc uint64) {
	t.Helper()
	c := pb.Frags[i].Cluster
	if c.TimecodeLen != 8 {
		t.Fatalf("fragment %d: Timecode is %d bytes, want 8", i, c.TimecodeLen)
	}
	binary.BigEndian.PutUint64(f[c.TimecodeOff-base:], tc)
}

// retimed returns header + fragments idxs with every cluster Timecode moved by
// shift (timecode units).
func (pb *producerBody) retimed(t *testing.T, idxs []int, shift int64) []byte {
	t.Helper()
	return pb.buildBody(t, nil, idxs, func(_, i int, f []byte, base int) {
		pb.setTimecode(t, i, f, base, uint64(int64(pb.Frags[i].Cluster.Timecode)+shift))
	})
}
