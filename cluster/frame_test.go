package cluster

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

var update = flag.Bool("update", false, "rewrite cluster/testdata/frame-v1.golden from the encoder (a wire-format change: see FORMAT.md, \"Versions\")")

// goldenPath holds a version 1 fragment stream as this node writes it:
// keepalive, a fragment frame with its session header, a fragment frame
// that reuses it, end. Annotated hex: '#' starts a comment.
var goldenPath = filepath.Join("testdata", "frame-v1.golden")

// goldenHeader stands for a session header (EBML magic, then filler).
var goldenHeader = []byte("\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01kvsedge golden session header")

// goldenFrag is one fragment of the golden stream.
type goldenFrag struct {
	meta       fragment.Meta
	receivedMs int64
	media      []byte
}

// goldenFrags are the two fragments of the golden stream: every meta field
// set, and set to a value whose bytes differ from its neighbours', so that
// a field written in the wrong place or width shows.
func goldenFrags() []goldenFrag {
	mk := func(num fragment.Number, producerMs, serverMs int64, durMs uint32, timecode uint64, frames uint32, clusterLen int, media []byte, receivedMs int64) goldenFrag {
		m := fragment.Meta{
			Number: num, ProducerMs: producerMs, ServerMs: serverMs, DurationMs: durMs, Timecode: timecode,
			HeaderID: xxhash.Sum64(goldenHeader), ClusterLen: uint32(clusterLen), MediaLen: uint32(len(media)), Frames: frames,
		}
		binary.BigEndian.PutUint64(m.Digest[0:], xxhash.Sum64(media[:clusterLen]))
		binary.BigEndian.PutUint32(m.Digest[8:], m.ClusterLen)
		binary.BigEndian.PutUint32(m.Digest[12:], frames)
		return goldenFrag{meta: m, receivedMs: receivedMs, media: media}
	}
	return []goldenFrag{
		mk(fragment.MakeNumber(1733390000123, 0xbeef, 0x01020304), 1733390001500, 1733390001517, 2002, 0x0000_0193_9a2b_c3d4, 61, 20,
			[]byte("\x1f\x43\xb6\x75\x01\xff\xff\xff\xff\xff\xff\xff\xe7\x81\x00clus\x12\x54\xc3\x67tags"), 1733390003519),
		// A server timestamp before the epoch: signed fields are two's
		// complement on the wire.
		mk(fragment.MakeNumber(1733390000123, 0xbeef, 0x01020305), 1733390003502, -2, 1968, 0x0000_0193_9a2b_cb74, 59, 12,
			[]byte("\x1f\x43\xb6\x75\x01\xff\xff\xff\xff\xff\xff\xffnext"), 1733390005488),
	}
}

// encodeGolden writes the golden stream with frameWriter, the encoder the
// tail and fetch routes use.
func encodeGolden(t testing.TB) []byte {
	t.Helper()
	var out bytes.Buffer
	fw := &frameWriter{w: bufio.NewWriter(&out)}
	hdr := &engine.Header{ID: xxhash.Sum64(goldenHeader), Raw: goldenHeader}
	if err := fw.control(frameKeepalive); err != nil {
		t.Fatal(err)
	}
	for _, g := range goldenFrags() {
		if err := fw.fragment(&engine.Fragment{Meta: g.meta, Header: hdr, Media: g.media, ReceivedMs: g.receivedMs}); err != nil {
			t.Fatal(err)
		}
	}
	if err := fw.control(frameEnd); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// v1FieldNames names version 1's fields in order, with their widths
// (FORMAT.md), to annotate the golden file.
var v1FieldNames = []struct {
	size int
	name string
}{
	{14, "fragment number: term u64 | node u16 | seq u32"}, {8, "producer ms"}, {8, "server ms"}, {4, "duration ms"},
	{8, "cluster timecode"}, {8, "header id"}, {4, "cluster length"}, {4, "media length"}, {4, "frame count"},
	{16, "content digest"}, {8, "received ms"}, {4, "header length"},
}

// annotate renders a fragment stream as commented hex, one field a line.
func annotate(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	out.WriteString(`# A version 1 fragment stream as cluster's encoder writes it
# (cluster/FORMAT.md, "Fragment stream"): keepalive, a fragment frame with
# its session header, a fragment frame reusing it, end. Hex; '#' starts a
# comment. TestFrameV1Golden checks that the encoder still writes exactly
# these bytes and that the decoder reads every field of them.
# Regenerate only for a deliberate wire-format change:
#   go test ./cluster/ -run TestFrameV1Golden -update
`)
	line := func(p []byte, what string) {
		for len(p) > 32 {
			fmt.Fprintf(&out, "%x\n", p[:32])
			p = p[32:]
		}
		fmt.Fprintf(&out, "%-66x # %s\n", p, what)
	}
	sum := 0
	for _, f := range v1FieldNames {
		sum += f.size
	}
	if sum != fieldsLenV1 {
		t.Fatalf("the annotation's fields add up to %d bytes, version 1 has %d", sum, fieldsLenV1)
	}
	for len(b) > 0 {
		switch b[0] {
		case frameKeepalive:
			line(b[:1], "keepalive")
			b = b[1:]
			continue
		case frameEnd:
			out.WriteString("\n")
			line(b[:1], "end")
			b = b[1:]
			continue
		}
		out.WriteString("\n")
		line(b[:1], "fragment frame")
		line(b[1:2], "version")
		line(b[2:4], "fields length")
		fields := b[4 : 4+fieldsLenV1]
		_, _, hl := decodeFieldsV1(b[4:])
		for _, f := range v1FieldNames {
			name := f.name
			if f.name == "header length" && hl == 0 {
				name += " (0: the previous frame's header)"
			}
			line(fields[:f.size], name)
			fields = fields[f.size:]
		}
		media := int(binary.BigEndian.Uint32(b[4+54:]))
		b = b[4+fieldsLenV1:]
		if hl > 0 {
			line(b[:hl], "session header")
		}
		line(b[hl:int(hl)+media], "media")
		b = b[int(hl)+media:]
	}
	return out.Bytes()
}

// parseGolden reads annotated hex.
func parseGolden(t *testing.T, text []byte) []byte {
	t.Helper()
	var h strings.Builder
	for _, l := range strings.Split(string(text), "\n") {
		if i := strings.IndexByte(l, '#'); i >= 0 {
			l = l[:i]
		}
		h.WriteString(strings.Join(strings.Fields(l), ""))
	}
	b, err := hex.DecodeString(h.String())
	if err != nil {
		t.Fatalf("%s: %v", goldenPath, err)
	}
	return b
}

// TestFrameV1Golden: a version 1 stream written by the encoder of the
// release that defined version 1 (the golden file) is read back field by
// field, and today's encoder still writes exactly those bytes. A failure
// here is a change of the wire format: old boxes would misread new ones.
func TestFrameV1Golden(t *testing.T) {
	enc := encodeGolden(t)
	if *update {
		if err := os.WriteFile(goldenPath, annotate(t, enc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	golden := parseGolden(t, text)

	// (a) The decoder reads every field of the golden bytes.
	frags := goldenFrags()
	for _, g := range frags {
		assertFullyPopulated(t, g.meta)
	}
	fr := &frameReader{r: bufio.NewReader(bytes.NewReader(golden))}
	for i, want := range frags {
		m, hdr, media, err := fr.next()
		if err != nil {
			t.Fatalf("fragment %d: %v", i, err)
		}
		if m != want.meta {
			t.Errorf("fragment %d meta:\n got  %+v\n want %+v", i, m, want.meta)
		}
		if fr.receivedMs != want.receivedMs {
			t.Errorf("fragment %d received ms %d, want %d", i, fr.receivedMs, want.receivedMs)
		}
		if !bytes.Equal(hdr, goldenHeader) {
			t.Errorf("fragment %d header %q, want %q", i, hdr, goldenHeader)
		}
		if !bytes.Equal(media, want.media) {
			t.Errorf("fragment %d media %q, want %q", i, media, want.media)
		}
	}
	if _, _, _, err := fr.next(); err != io.EOF {
		t.Fatalf("after the fragments: %v, want the end frame (io.EOF)", err)
	}
	// The second frame reuses the header: its header length is 0.
	second := bytes.LastIndex(golden, []byte{frameFragment, frameVersion, 0, fieldsLenV1})
	if second <= 1 || binary.BigEndian.Uint32(golden[second+4+fieldsLenV1-4:]) != 0 {
		t.Fatal("the golden stream's second frame does not reuse the session header")
	}

	// (b) Today's encoder writes exactly the golden bytes.
	if !bytes.Equal(enc, golden) {
		i := 0
		for i < len(enc) && i < len(golden) && enc[i] == golden[i] {
			i++
		}
		t.Fatalf("the encoder no longer writes %s (first difference at byte %d of %d/%d): the node-to-node "+
			"wire format changed; see cluster/FORMAT.md, \"Versions\", and run with -update only if that is deliberate",
			goldenPath, i, len(enc), len(golden))
	}
}

// assertFullyPopulated fails when a field of m is zero, so that a field
// added to fragment.Meta shows here until the wire carries it (and the
// fixture sets it).
func assertFullyPopulated(t *testing.T, m fragment.Meta) {
	t.Helper()
	v := reflect.ValueOf(m)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Errorf("golden meta field %s is zero: set it, and carry it on the wire (an appended field, FORMAT.md)", v.Type().Field(i).Name)
		}
	}
}

// goldenFrame is the first fragment frame of the golden stream, alone,
// with its header and media.
func goldenFrame(t *testing.T) []byte {
	t.Helper()
	enc := encodeGolden(t)
	g := goldenFrags()[0]
	start := 1 // after the keepalive
	end := start + 4 + fieldsLenV1 + len(goldenHeader) + len(g.media)
	if enc[0] != frameKeepalive || enc[start] != frameFragment {
		t.Fatalf("golden stream starts % x", enc[:2])
	}
	return enc[start:end:end]
}

func readOne(b []byte) (fragment.Meta, []byte, []byte, error) {
	fr := &frameReader{r: bufio.NewReader(bytes.NewReader(b))}
	return fr.next()
}

// TestFrameUnknownVersionRefused: a frame of a version above 1, or of an
// unknown type, is refused as a newer protocol; version 0 is malformed.
func TestFrameUnknownVersionRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func([]byte)
		newer  bool
		substr string
	}{
		{"version 2", func(b []byte) { b[1] = 2 }, true, "fragment frame of version 2, this node reads up to 1"},
		{"version 255", func(b []byte) { b[1] = 255 }, true, "version 255"},
		{"unknown type", func(b []byte) { b[0] = 0x07 }, true, "frame of unknown type 0x07"},
		{"version 0", func(b []byte) { b[1] = 0 }, false, "fragment frame of version 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := goldenFrame(t)
			tc.edit(b)
			_, _, _, err := readOne(b)
			if err == nil {
				t.Fatal("accepted")
			}
			if errors.Is(err, ErrFrameVersion) != tc.newer || !strings.Contains(err.Error(), tc.substr) {
				t.Fatalf("error %q: want newer-protocol %v and %q", err, tc.newer, tc.substr)
			}
			if tc.newer && !strings.Contains(err.Error(), "newer node-to-node protocol") {
				t.Fatalf("error %q does not say the peer is newer", err)
			}
		})
	}
}

// TestFrameAppendedFieldsSkipped: fields a later revision of version 1
// appends (a longer fields section) are skipped; the frame reads the same.
func TestFrameAppendedFieldsSkipped(t *testing.T) {
	b := goldenFrame(t)
	extra := []byte("future fields")
	var longer []byte
	longer = append(longer, b[:4+fieldsLenV1]...)
	binary.BigEndian.PutUint16(longer[2:], uint16(fieldsLenV1+len(extra)))
	longer = append(longer, extra...)
	longer = append(longer, b[4+fieldsLenV1:]...)
	longer = append(longer, frameEnd)
	fr := &frameReader{r: bufio.NewReader(bytes.NewReader(longer))}
	m, hdr, media, err := fr.next()
	g := goldenFrags()[0]
	if err != nil || m != g.meta || fr.receivedMs != g.receivedMs || !bytes.Equal(hdr, goldenHeader) || !bytes.Equal(media, g.media) {
		t.Fatalf("with appended fields: %+v %q %q %v", m, hdr, media, err)
	}
	if _, _, _, err := fr.next(); err != io.EOF {
		t.Fatalf("after it: %v", err)
	}
}

// TestFrameTruncated: a stream cut anywhere, or a frame whose lengths are
// wrong, is an error, never a panic and never a complete answer.
func TestFrameTruncated(t *testing.T) {
	golden := encodeGolden(t)
	for n := range len(golden) {
		fr := &frameReader{r: bufio.NewReader(bytes.NewReader(golden[:n]))}
		var err error
		for range 4 {
			if _, _, _, err = fr.next(); err != nil {
				break
			}
		}
		if err == nil || err == io.EOF || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("stream cut after %d of %d bytes: %v, want an unexpected EOF", n, len(golden), err)
		}
	}

	setU16 := func(off int, v uint16) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint16(b[off:], v); return b }
	}
	setU32 := func(off int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint32(b[off:], v); return b }
	}
	const fields = 4 // offset of the fields in a frame
	for _, tc := range []struct {
		name   string
		edit   func([]byte) []byte
		substr string
	}{
		{"fields length 0", setU16(2, 0), "fields of 0 bytes"},
		{"fields length 89", setU16(2, fieldsLenV1-1), "fields of 89 bytes"},
		{"fields length beyond the stream", setU16(2, 0xffff), "truncated"},
		{"header length over 1 MiB", setU32(fields+86, maxFrameHeader+1), "too large"},
		{"header length 4 GiB", setU32(fields+86, 0xffffffff), "too large"},
		{"header length beyond the stream", setU32(fields+86, 1000), "truncated"},
		{"media length over 64 MiB", setU32(fields+54, maxFrameMedia+1), "too large"},
		{"media length beyond the stream", setU32(fields+54, 1<<20), "truncated"},
		{"no header on the first frame", func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[fields+86:], 0)
			return append(b[:fields+fieldsLenV1:fields+fieldsLenV1], b[fields+fieldsLenV1+len(goldenHeader):]...)
		}, "without a session header"},
		{"type byte only", func(b []byte) []byte { return b[:1] }, "truncated"},
		{"empty", func(b []byte) []byte { return b[:0] }, "without an end frame"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.edit(goldenFrame(t))
			_, _, _, err := readOne(b)
			if err == nil || err == io.EOF || errors.Is(err, ErrFrameVersion) || !strings.Contains(err.Error(), tc.substr) {
				t.Fatalf("error %v, want one saying %q", err, tc.substr)
			}
		})
	}
}

// TestFramesParam: the frames parameter a puller sends is checked.
func TestFramesParam(t *testing.T) {
	for v, ok := range map[string]bool{"": true, "1": true, "2": true, "255": true, "0": false, "256": false, "-1": false, "x": false} {
		if err := checkFramesParam([]byte(v)); (err == nil) != ok {
			t.Errorf("frames=%q: %v", v, err)
		}
	}
}

// FuzzFrameReader: whatever a peer sends, the reader returns fragments
// consistent with their meta or an error, and never panics.
func FuzzFrameReader(f *testing.F) {
	enc := encodeGolden(f)
	f.Add(enc)
	f.Add(enc[:len(enc)/2])
	v2 := bytes.Clone(enc)
	v2[2] = 2
	f.Add(v2)
	f.Add([]byte{frameFragment, 1, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := &frameReader{r: bufio.NewReader(bytes.NewReader(data))}
		for range len(data) + 1 {
			m, hdr, media, err := fr.next()
			if err != nil {
				return
			}
			if len(media) != int(m.MediaLen) || hdr == nil {
				t.Fatalf("fragment of media length %d read with %d bytes of media, header %v", m.MediaLen, len(media), hdr != nil)
			}
		}
		t.Fatal("more frames than bytes")
	})
}
