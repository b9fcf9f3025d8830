package mkv

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"unsafe"

	"github.com/kvsedge/kvsedge/internal/fixture"
)

// chunkedReader returns data in the sizes recorded in a .chunks.tsv, so
// elements straddle reads exactly as they did on the wire.
type chunkedReader struct {
	data  []byte
	sizes []int
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.sizes) > 0 {
		n = c.sizes[0]
		c.sizes = c.sizes[1:]
	}
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func loadCapture(t testing.TB, name string) ([]byte, []int) {
	t.Helper()
	c := fixture.LoadCapture(t, name)
	return c.Body, c.Sizes()
}

type parsed struct {
	starts, ends []uint64
	frags        []*Fragment
}

func parseAll(t testing.TB, r io.Reader) (parsed, error) {
	return parseWith(NewReader(r, Options{}))
}

// parseWith reads every fragment from rd.
func parseWith(rd *Reader) (parsed, error) {
	var p parsed
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return p, nil
		}
		if err != nil {
			return p, err
		}
		switch ev {
		case EventFragmentStart:
			p.starts = append(p.starts, rd.Fragment().Timecode)
		case EventFragmentEnd:
			f := rd.TakeFragment()
			p.ends = append(p.ends, f.Timecode)
			p.frags = append(p.frags, f)
		}
	}
}

func TestReaderRealProducerCaptures(t *testing.T) {
	cases := []struct {
		name       string
		n          int
		first      uint64
		tracks     int
		metaPerFrg int
	}{
		{"real-producer-h264-absolute", 11, 1795579974135, 1, 9},
		{"real-producer-h264-aac-relative", 6, 0, 2, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data, sizes := loadCapture(t, tc.name)
			p, err := parseAll(t, &chunkedReader{data: data, sizes: sizes})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.frags) != tc.n || len(p.starts) != tc.n {
				t.Fatalf("%d fragments (%d starts), want %d", len(p.frags), len(p.starts), tc.n)
			}
			// Expected timecodes, found independently: each Cluster ID is
			// followed by its 8-byte Timecode (E7 88).
			var wantTC []uint64
			for i := 0; ; {
				j := bytes.Index(data[i:], []byte{0x1F, 0x43, 0xB6, 0x75})
				if j < 0 {
					break
				}
				k := i + j + bytes.Index(data[i+j:], []byte{0xE7, 0x88}) + 2
				wantTC = append(wantTC, readUint(data[k:k+8]))
				i += j + 4
			}
			if len(wantTC) != tc.n || wantTC[0] != tc.first {
				t.Fatalf("scan found %d clusters from %v", len(wantTC), wantTC)
			}
			total := 0
			for i, f := range p.frags {
				want := wantTC[i]
				if f.Timecode != want || p.starts[i] != want {
					t.Errorf("fragment %d timecode %d, want %d", i, f.Timecode, want)
				}
				if len(f.Header.Tracks) != tc.tracks {
					t.Errorf("fragment %d: %d tracks", i, len(f.Header.Tracks))
				}
				if f.KeyFrames < 1 || f.Frames < 10 {
					t.Errorf("fragment %d: %d frames, %d key", i, f.Frames, f.KeyFrames)
				}
				if tc.metaPerFrg >= 0 && f.MetaTags != tc.metaPerFrg {
					t.Errorf("fragment %d: %d metadata tags, want %d", i, f.MetaTags, tc.metaPerFrg)
				}
				if d := f.Duration().Milliseconds(); i < tc.n-1 && (d < 1700 || d > 1900) {
					t.Errorf("fragment %d: duration %d ms", i, d)
				}
				if !bytes.HasPrefix(f.Buf, []byte{0x1F, 0x43, 0xB6, 0x75}) {
					t.Errorf("fragment %d does not start with a Cluster", i)
				}
				total += f.ClusterLen
			}
			if tc.metaPerFrg >= 0 && !p.frags[tc.n-1].EndOfFragment {
				t.Error("last fragment not closed by its END_OF_FRAGMENT tag")
			}
			// Every cluster byte of the body is kept.
			if total > len(data) || total < len(data)*9/10 {
				t.Errorf("kept %d cluster bytes of a %d-byte body", total, len(data))
			}
			v := p.frags[0].Header.Tracks[0]
			if v.CodecID != "V_MPEG4/ISO/AVC" || len(v.CodecPrivate) != 45 {
				t.Errorf("video track %q with %d bytes of CodecPrivate", v.CodecID, len(v.CodecPrivate))
			}
		})
	}
}

// idleReader hands out data, then ErrIdle forever.
type idleReader struct {
	data  []byte
	idles int
}

func (r *idleReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		r.idles++
		if r.idles > 3 {
			return 0, io.EOF
		}
		return 0, ErrIdle
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReaderIdleClosesFragment(t *testing.T) {
	data, _ := loadCapture(t, "real-producer-h264-aac-relative")
	// Cut the body right after the second cluster's last block: no next
	// cluster and no end tag arrive, only silence.
	idx := bytes.Index(data[100:], []byte{0x1F, 0x43, 0xB6, 0x75})
	second := bytes.Index(data[100+idx+4:], []byte{0x1F, 0x43, 0xB6, 0x75})
	cut := 100 + idx + 4 + second
	rd := NewReader(&idleReader{data: data[:cut]}, Options{})
	var ends int
	var idle bool
	for {
		ev, err := rd.Next()
		if err != nil {
			if err != io.EOF {
				t.Fatal(err)
			}
			break
		}
		if ev == EventFragmentEnd {
			f := rd.TakeFragment()
			ends++
			idle = f.ClosedByIdle
		}
	}
	if ends != 1 || !idle {
		t.Fatalf("%d fragments, last closed by idle: %v", ends, idle)
	}
}

func wantErrorID(t *testing.T, err error, id int) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.ID != id {
		t.Fatalf("error %v, want ErrorId %d", err, id)
	}
}

// mutate returns the absolute capture with f applied to a copy.
func mutate(t *testing.T, f func(b []byte) []byte) []byte {
	data, _ := loadCapture(t, "real-producer-h264-absolute")
	return f(append([]byte(nil), data...))
}

// firstSimpleBlock returns the offset of the first SimpleBlock's payload
// in the first cluster.
func firstSimpleBlock(t *testing.T, b []byte) int {
	c := bytes.Index(b, []byte{0x1F, 0x43, 0xB6, 0x75})
	i := bytes.IndexByte(b[c:], IDSimpleBlock)
	if i < 0 {
		t.Fatal("no SimpleBlock")
	}
	p := c + i + 1
	return p + vintLen(b[p])
}

func TestReaderErrors(t *testing.T) {
	t.Run("not-key-frame", func(t *testing.T) {
		b := mutate(t, func(b []byte) []byte {
			p := firstSimpleBlock(t, b)
			b[p+3] &^= 0x80
			return b
		})
		_, err := parseAll(t, bytes.NewReader(b))
		wantErrorID(t, err, ErrIDInvalidMKV)
	})
	t.Run("unknown-track", func(t *testing.T) {
		b := mutate(t, func(b []byte) []byte {
			p := firstSimpleBlock(t, b)
			b[p] = 0x85 // track 5
			return b
		})
		_, err := parseAll(t, bytes.NewReader(b))
		wantErrorID(t, err, ErrIDTrackMismatch)
	})
	t.Run("timecode-backwards", func(t *testing.T) {
		b := mutate(t, func(b []byte) []byte {
			c1 := bytes.Index(b, []byte{0x1F, 0x43, 0xB6, 0x75})
			c2 := c1 + 4 + bytes.Index(b[c1+4:], []byte{0x1F, 0x43, 0xB6, 0x75})
			t2 := c2 + bytes.Index(b[c2:], []byte{0xE7, 0x88}) + 2
			t1 := c1 + bytes.Index(b[c1:], []byte{0xE7, 0x88}) + 2
			copy(b[t2:t2+8], b[t1:t1+8])
			return b
		})
		p, err := parseAll(t, bytes.NewReader(b))
		wantErrorID(t, err, ErrIDTimecodeLesser)
		if len(p.frags) != 1 {
			t.Fatalf("%d fragments before the error, want 1", len(p.frags))
		}
	})
	t.Run("random-bytes", func(t *testing.T) {
		_, err := parseAll(t, bytes.NewReader([]byte("this is not matroska at all, just text")))
		wantErrorID(t, err, ErrIDInvalidMKV)
	})
	t.Run("truncated", func(t *testing.T) {
		data, _ := loadCapture(t, "real-producer-h264-absolute")
		_, err := parseAll(t, bytes.NewReader(data[:300]))
		wantErrorID(t, err, ErrIDInvalidMKV)
	})
	t.Run("absurd-size", func(t *testing.T) {
		// EBML header claiming 2^56 bytes.
		_, err := parseAll(t, bytes.NewReader([]byte{0x1A, 0x45, 0xDF, 0xA3, 0x01, 0, 0, 0, 0, 0, 0, 1}))
		wantErrorID(t, err, ErrIDInvalidMKV)
	})
	t.Run("fragment-too-big", func(t *testing.T) {
		data, _ := loadCapture(t, "real-producer-h264-absolute")
		rd := NewReader(bytes.NewReader(data), Options{MaxFragmentBytes: 100 << 10})
		var err error
		for err == nil {
			var ev Event
			ev, err = rd.Next()
			if ev == EventFragmentEnd {
				rd.TakeFragment()
			}
		}
		wantErrorID(t, err, ErrIDMaxFragmentSize)
	})
	t.Run("cluster-shorter-than-declared", func(t *testing.T) {
		// A known-size cluster whose declared size is 1000 bytes more than
		// what arrives before the body ends is not stored with a false
		// size: 4006.
		_, err := parseAll(t, bytes.NewReader(knownSizeCluster(t, 1000)))
		wantErrorID(t, err, ErrIDInvalidMKV)
		// The same cluster with its true size is one fragment.
		p, err := parseAll(t, bytes.NewReader(knownSizeCluster(t, 0)))
		if err != nil || len(p.frags) != 1 {
			t.Fatalf("true size: %v, %d fragments", err, len(p.frags))
		}
	})
	t.Run("cluster-declares-more-than-a-fragment", func(t *testing.T) {
		b := knownSizeCluster(t, 0)
		i := bytes.Index(b, []byte{0x1F, 0x43, 0xB6, 0x75}) + 4
		copy(b[i:i+8], []byte{0x01, 0x80, 0, 0, 0, 0, 0, 0}) // 2^55 bytes
		_, err := parseAll(t, bytes.NewReader(b))
		wantErrorID(t, err, ErrIDMaxFragmentSize)
	})
	t.Run("timecode-after-2262", func(t *testing.T) {
		b := mutate(t, func(b []byte) []byte {
			c := bytes.Index(b, []byte{0x1F, 0x43, 0xB6, 0x75})
			tc := c + bytes.Index(b[c:], []byte{0xE7, 0x88}) + 2
			copy(b[tc:tc+8], []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00})
			return b
		})
		_, err := parseAll(t, bytes.NewReader(b))
		wantErrorID(t, err, ErrIDInvalidTimestamp)
	})
	t.Run("negative-block-timecode-span", func(t *testing.T) {
		// A block 32.8 s before its cluster's timecode makes the fragment
		// span more than 20 s: 4002, not a 49 s fragment.
		b := mutate(t, func(b []byte) []byte {
			first := firstSimpleBlock(t, b)
			next := first + bytes.Index(b[first:], []byte{IDSimpleBlock, 0x01, 0, 0, 0})
			p := next + 9 // after the ID and the 8-byte size
			p += vintLen(b[p])
			b[p], b[p+1] = 0x80, 0x00 // int16 -32768
			return b
		})
		_, err := parseAll(t, bytes.NewReader(b))
		wantErrorID(t, err, ErrIDMaxFragmentDuration)
	})
	t.Run("leftover-tags-only", func(t *testing.T) {
		data, _ := loadCapture(t, "real-producer-h264-absolute")
		i := bytes.LastIndex(data, []byte{0x12, 0x54, 0xC3, 0x67})
		p, err := parseAll(t, bytes.NewReader(data[i:]))
		if err != nil || len(p.frags) != 0 {
			t.Fatalf("leftover tags: %v, %d fragments", err, len(p.frags))
		}
	})
	t.Run("new-ebml-mid-body", func(t *testing.T) {
		data, _ := loadCapture(t, "real-producer-h264-absolute")
		rel, _ := loadCapture(t, "real-producer-h264-aac-relative")
		// A second document whose timecodes are absolute and later.
		body := append(append([]byte(nil), rel...), data...)
		p, err := parseAll(t, bytes.NewReader(body))
		if err != nil || len(p.frags) != 17 {
			t.Fatalf("%v, %d fragments, want 17", err, len(p.frags))
		}
		if len(p.frags[5].Header.Tracks) != 2 || len(p.frags[6].Header.Tracks) != 1 {
			t.Fatal("fragments after the new EBML header do not use its Tracks")
		}
	})
}

func FuzzReader(f *testing.F) {
	data, err := os.ReadFile(fixture.Path(fixture.RelativeH264AAC + ".mkv"))
	if err == nil {
		f.Add(data[:min(len(data), 20000)])
	}
	f.Add([]byte{0x1A, 0x45, 0xDF, 0xA3, 0x01, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		rd := NewReader(bytes.NewReader(b), Options{MaxFragmentBytes: 1 << 20})
		for i := 0; i < 10000; i++ {
			ev, err := rd.Next()
			if err != nil {
				var e *Error
				if err != io.EOF && !errors.As(err, &e) {
					t.Fatalf("error of type %T: %v", err, err)
				}
				return
			}
			if ev == EventFragmentEnd {
				f := rd.TakeFragment()
				if f.ClusterLen > len(f.Buf) {
					t.Fatal("cluster length beyond buffer")
				}
			}
		}
	})
}

// TestReaderHostileElements: an empty Block inside a BlockGroup, and a
// fragment grown past the limit with Tags, are refused, not crashed on or
// buffered.
func TestReaderHostileElements(t *testing.T) {
	data, _ := loadCapture(t, "real-producer-h264-absolute")
	c := bytes.Index(data, []byte{0x1F, 0x43, 0xB6, 0x75})
	tc := c + bytes.Index(data[c:], []byte{0xE7, 0x88}) + 10 // after the cluster Timecode
	body := append(append([]byte(nil), data[:tc]...), 0xA0, 0x82, 0xA1, 0x80)
	_, err := parseAll(t, bytes.NewReader(body))
	wantErrorID(t, err, ErrIDInvalidMKV)

	// The first cluster, then Tags holding only a Void (no metadata tag
	// to count), about 1 MiB each, past the size limit.
	end := bytes.Index(data[c+4:], []byte{0x1F, 0x43, 0xB6, 0x75}) + c + 4
	end = bytes.LastIndex(data[:end], []byte{0x12, 0x54, 0xC3, 0x67}) // before the end-of-fragment tag
	var b bytes.Buffer
	b.Write(data[:end])
	void := make([]byte, 0x0FFFF3)
	for b.Len() < 8<<20 {
		b.Write([]byte{0x12, 0x54, 0xC3, 0x67, 0x10, 0x0F, 0xFF, 0xF8}) // Tags, 1 MiB - 8
		b.Write([]byte{0xEC, 0x10, 0x0F, 0xFF, 0xF3})                   // Void
		b.Write(void)
	}
	rd := NewReader(bytes.NewReader(b.Bytes()), Options{MaxFragmentBytes: 4 << 20})
	for {
		ev, err := rd.Next()
		if err != nil {
			wantErrorID(t, err, ErrIDMaxFragmentSize)
			break
		}
		if ev == EventFragmentEnd {
			t.Fatal("a fragment padded past the size limit was accepted")
		}
	}
}

// knownSizeCluster is the absolute capture's header and first cluster,
// rewritten with the cluster's size declared (extra bytes more than it
// holds), and nothing after it.
func knownSizeCluster(t *testing.T, extra int) []byte {
	t.Helper()
	data, _ := loadCapture(t, "real-producer-h264-absolute")
	c := bytes.Index(data, []byte{0x1F, 0x43, 0xB6, 0x75})
	if data[c+4] != 0xFF {
		t.Fatalf("capture's cluster size byte %x, want unknown (FF)", data[c+4])
	}
	end := c + 5 + bytes.Index(data[c+5:], []byte{0x12, 0x54, 0xC3, 0x67}) // its Tags
	content := data[c+5 : end]
	out := append([]byte(nil), data[:c+4]...)
	size := uint64(len(content) + extra)
	out = append(out, 0x01, byte(size>>48), byte(size>>40), byte(size>>32), byte(size>>24), byte(size>>16), byte(size>>8), byte(size))
	return append(out, content...)
}

// bufferCountingReader serves data in reads of at most chunk bytes (as
// PutMedia's body pump hands them on) and counts the bytes it delivered
// into the Reader's own buffer (rd.src.buf) rather than straight into a
// fragment.
type bufferCountingReader struct {
	data     []byte
	chunk    int
	rd       *Reader
	buffered int
}

func (c *bufferCountingReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), c.chunk, len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	if buf := c.rd.src.buf; len(buf) > 0 {
		at, lo := uintptr(unsafe.Pointer(&p[0])), uintptr(unsafe.Pointer(&buf[0]))
		if at >= lo && at < lo+uintptr(len(buf)) {
			c.buffered += n
		}
	}
	return n, nil
}

// A block's payload is read straight into its fragment's buffer, not
// first into the Reader's buffer and copied from there: every media byte
// of an upload is copied once in the parse, not twice.
func TestReaderReadsPayloadsStraightIntoFragments(t *testing.T) {
	for _, name := range []string{"real-producer-h264-absolute", "real-producer-h264-aac-relative"} {
		t.Run(name, func(t *testing.T) {
			data, _ := loadCapture(t, name)
			cr := &bufferCountingReader{data: data, chunk: 32 << 10}
			rd := NewReader(cr, Options{})
			cr.rd = rd
			p, err := parseWith(rd)
			if err != nil {
				t.Fatal(err)
			}
			media := 0
			for _, f := range p.frags {
				media += len(f.Buf)
			}
			if media < len(data)/2 {
				t.Fatalf("parsed %d bytes of fragments from a %d-byte body", media, len(data))
			}
			// Through the buffer go the headers, the block headers and
			// at most fillAhead bytes after each.
			if cr.buffered > len(data)/10 {
				t.Errorf("%d of the body's %d bytes were read into the Reader's buffer (then copied again), want ≤ 10%%", cr.buffered, len(data))
			}
			t.Logf("%d of %d body bytes through the Reader's buffer", cr.buffered, len(data))
		})
	}
}
