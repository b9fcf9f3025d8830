package mkvcheck

import (
	"bytes"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fixture"
)

// scanTimecodes finds each Cluster ID and the 8-byte Timecode after it by
// byte search, independently of the walker.
func scanTimecodes(b []byte) []uint64 {
	var out []uint64
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte{0x1F, 0x43, 0xB6, 0x75})
		if j < 0 {
			return out
		}
		k := i + j + bytes.Index(b[i+j:], []byte{0xE7, 0x88}) + 2
		out = append(out, Uint(b[k:k+8]))
		i += j + 4
	}
}

func TestParseBodyCaptures(t *testing.T) {
	cases := []struct {
		name          string
		frags, blocks int // blocks: all fragments'
		codecs        []string
		tags          bool // producer tags after each cluster
	}{
		// Frame counts as testdata/README.md gives them (ffprobe).
		{fixture.AbsoluteH264, 11, 493, []string{"V_MPEG4/ISO/AVC"}, true},
		{fixture.RelativeH264AAC, 6, 248 + 495, []string{"V_MPEG4/ISO/AVC", "A_AAC"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := fixture.Read(t, tc.name+".mkv")
			pb := MustParseBody(t, raw)
			if len(pb.Frags) != tc.frags || !slices.Equal(pb.Timecodes(), scanTimecodes(raw)) {
				t.Fatalf("%d fragments at %v, a byte scan finds %v", len(pb.Frags), pb.Timecodes(), scanTimecodes(raw))
			}
			if !slices.Equal(pb.TrackCodecs, tc.codecs) || pb.TimecodeScale != 1_000_000 {
				t.Errorf("codecs %v, scale %d", pb.TrackCodecs, pb.TimecodeScale)
			}
			blocks := 0
			for i, f := range pb.Frags {
				fr, err := pb.Frames(i)
				if err != nil {
					t.Fatal(err)
				}
				if len(fr) != len(f.Cluster.Blocks) || !fr[0].Key || !f.Cluster.Blocks[0].Key {
					t.Fatalf("fragment %d: %d frames, %d blocks, first key %v/%v", i, len(fr), len(f.Cluster.Blocks), fr[0].Key, f.Cluster.Blocks[0].Key)
				}
				for k, bl := range f.Cluster.Blocks {
					want := int64(f.Cluster.Timecode) + int64(bl.RelTC)
					if fr[k].Track != bl.Track || fr[k].TimeMs != want || fr[k].Key != bl.Key || !bytes.HasSuffix(bl.Data, fr[k].Payload) {
						t.Fatalf("fragment %d block %d: frame %+v, block track %d at %d key %v", i, k, fr[k], bl.Track, want, bl.Key)
					}
				}
				blocks += len(fr)
				user := 0
				for _, tg := range f.Tags {
					if !strings.HasPrefix(tg.Name, "AWS_KINESISVIDEO_") {
						user++
					}
				}
				if (user > 0) != tc.tags {
					t.Errorf("fragment %d: %d producer tags in %v", i, user, f.Tags)
				}
			}
			if blocks != tc.blocks {
				t.Errorf("%d frames, want %d", blocks, tc.blocks)
			}
		})
	}
}

// response builds a GetMedia body of pb's fragments idxs with engine/mkv's
// chunk writer, as the server does.
func response(pb *Body, idxs []int, startMs int64) ([]byte, []string) {
	var out, scratch []byte
	var nums []string
	for _, i := range idxs {
		f := pb.Frags[i]
		num := fmt.Sprintf("9%031d", i)
		nums = append(nums, num)
		out, scratch = mkv.AppendChunkPrefix(out, f.Header.Raw, []byte(num), 1795600000123+int64(i), startMs+int64(f.Cluster.Timecode), scratch)
		out = append(out, pb.Raw[f.Off:f.End]...)
		out, scratch = mkv.AppendChunkSuffix(out, 42, []byte(num), scratch)
	}
	return out, nums
}

func TestParseMediaRoundTrip(t *testing.T) {
	for _, name := range []string{fixture.AbsoluteH264, fixture.RelativeH264AAC} {
		t.Run(name, func(t *testing.T) {
			pb, err := ParseBody(fixture.Read(t, name+".mkv"))
			if err != nil {
				t.Fatal(err)
			}
			idxs := []int{3, 0, 1} // GetMediaForFragmentList order, not timecode order
			body, nums := response(pb, idxs, 0)
			chunks := MustParseMedia(t, body)
			if len(chunks) != len(idxs) {
				t.Fatalf("%d chunks, want %d", len(chunks), len(idxs))
			}
			for k, c := range chunks {
				f := pb.Frags[idxs[k]]
				if err := c.CheckLayout(); err != nil {
					t.Errorf("chunk %d: %v", k, err)
				}
				if c.FragmentNumber() != nums[k] || c.Tag(mkv.TagContinuationToken) != nums[k] || c.Tag(mkv.TagMillisBehindNow) != "42" {
					t.Errorf("chunk %d: tags %v %v", k, c.PreTags, c.PostTags)
				}
				if ms, ok := ParseSeconds(c.PreTags[mkv.TagProducerTimestamp]); !ok || ms != int64(f.Cluster.Timecode) {
					t.Errorf("chunk %d: producer timestamp %q, want %d ms", k, c.PreTags[mkv.TagProducerTimestamp], f.Cluster.Timecode)
				}
				if !slices.Equal(c.Codecs, pb.TrackCodecs) || c.Clusters[0].Timecode != f.Cluster.Timecode || c.Clusters[0].Digest() != f.Cluster.Digest() {
					t.Errorf("chunk %d: codecs %v, timecode %d: not fragment %d", k, c.Codecs, c.Clusters[0].Timecode, idxs[k])
				}
				for _, tg := range f.Tags {
					if tg.Name != "AWS_KINESISVIDEO_END_OF_FRAGMENT" && c.PostTags[tg.Name] != tg.Value {
						t.Errorf("chunk %d: producer tag %s=%q missing", k, tg.Name, tg.Value)
					}
				}
				got, err := c.Frames()
				want, _ := pb.Frames(idxs[k])
				if err != nil || len(got) != len(want) {
					t.Fatalf("chunk %d: %d frames (%v), want %d", k, len(got), err, len(want))
				}
				for j := range got {
					if got[j].Track != want[j].Track || got[j].TimeMs != want[j].TimeMs || got[j].Key != want[j].Key || !bytes.Equal(got[j].Payload, want[j].Payload) {
						t.Fatalf("chunk %d frame %d differs", k, j)
					}
				}
			}

			// The same body fed in random pieces: chunks complete one by
			// one, and end up the same.
			p := &Parser{}
			rng := rand.New(rand.NewSource(1))
			seen := 0
			for rest := body; len(rest) > 0; {
				n := min(len(rest), 1+rng.Intn(70000))
				if _, err := p.Write(rest[:n]); err != nil {
					t.Fatal(err)
				}
				rest = rest[n:]
				done := p.Complete()
				if len(done) < seen {
					t.Fatal("a complete chunk went back to incomplete")
				}
				seen = len(done)
				for _, c := range done {
					if c.ReceivedAt.IsZero() {
						t.Fatal("complete chunk without ReceivedAt")
					}
				}
			}
			if err := p.Close(); err != nil || len(p.Complete()) != len(idxs) || !bytes.Equal(p.Bytes(), body) {
				t.Fatalf("streamed: %v, %d complete chunks", err, len(p.Complete()))
			}
			for k, c := range p.Chunks() {
				if c.Clusters[0].Digest() != chunks[k].Clusters[0].Digest() || c.FragmentNumber() != chunks[k].FragmentNumber() {
					t.Errorf("streamed chunk %d differs", k)
				}
			}
		})
	}
}

func TestParseMediaErrorAndTruncated(t *testing.T) {
	pb, err := ParseBody(fixture.Read(t, fixture.RelativeH264AAC+".mkv"))
	if err != nil {
		t.Fatal(err)
	}
	body, nums := response(pb, []int{0, 1}, 0)
	body = mkv.AppendErrorChunk(body, nums[1], 4000, "FRAGMENT_NOT_FOUND")
	chunks := MustParseMedia(t, body)
	if len(chunks) != 3 {
		t.Fatalf("%d chunks", len(chunks))
	}
	last := chunks[2]
	if id, ok := last.ErrorID(); !ok || id != 4000 || last.FragmentNumber() != nums[1] || last.Tag(mkv.TagErrorCode) != "FRAGMENT_NOT_FOUND" || last.Complete {
		t.Errorf("error chunk: %d %v %v", id, ok, last.PreTags)
	}
	if last.CheckLayout() == nil {
		t.Error("an error chunk passes CheckLayout")
	}
	if _, ok := chunks[0].ErrorID(); ok {
		t.Error("a fragment chunk has an error id")
	}

	// Cut inside the second chunk's cluster: a streaming reader holds one
	// complete chunk and one that is not; the whole-body parse fails.
	cut := chunks[1].Clusters[0].Elem.Off + 1000
	p := &Parser{}
	if _, err := p.Write(body[:cut]); err != nil {
		t.Fatal(err)
	}
	if len(p.Chunks()) != 2 || len(p.Complete()) != 1 {
		t.Fatalf("%d chunks, %d complete", len(p.Chunks()), len(p.Complete()))
	}
	if _, err := ParseMedia(body[:cut]); err == nil {
		t.Error("a truncated body parses")
	}
	// A body that does not start with an EBML header.
	if _, err := ParseMedia(body[4:]); err == nil {
		t.Error("a body without an EBML header parses")
	}
}

func TestElemBuilders(t *testing.T) {
	tags := Elem(mkv.IDTags, Elem(mkv.IDTag, Elem(mkv.IDSimpleTag, Elem(mkv.IDTagName, []byte("K")), Elem(mkv.IDTagString, []byte("V")))))
	els, err := Walk(tags)
	if err != nil || len(els) != 1 || els[0].ID != mkv.IDTags || els[0].End != len(tags) {
		t.Fatalf("%v %v", els, err)
	}
	got, err := ParseTags(els[0].Data(tags))
	if err != nil || len(got) != 1 || got[0] != (Tag{"K", "V"}) {
		t.Fatalf("%v %v", got, err)
	}
	for _, id := range []uint32{mkv.IDEBML, mkv.IDTimecodeScale, mkv.IDTagName, mkv.IDTimecode} {
		if v := Uint(EncodeID(id)); v != uint64(id) {
			t.Errorf("EncodeID(%#x) = %#x", id, v)
		}
	}
	if s := Size8(300); !bytes.Equal(s, []byte{1, 0, 0, 0, 0, 0, 1, 44}) {
		t.Errorf("Size8(300) = % x", s)
	}
	for s, want := range map[string]int64{"1795579974.135": 1795579974135, "0.000": 0, "12.050": 12050} {
		if ms, ok := ParseSeconds(s); !ok || ms != want {
			t.Errorf("ParseSeconds(%q) = %d %v, want %d", s, ms, ok, want)
		}
	}
	for _, s := range []string{"1795579974.13", "1795579974", "17955x.123", "1.-12"} {
		if _, ok := ParseSeconds(s); ok {
			t.Errorf("ParseSeconds(%q) accepted", s)
		}
	}
}
