package mkvcheck

import (
	"errors"
	"fmt"
	"testing"

	"github.com/kvsedge/kvsedge/engine/mkv"
)

// Fragment is one cluster of a PutMedia body with the Tags that follow it
// up to the next cluster or EBML header.
type Fragment struct {
	Cluster Cluster
	Off     int // cluster start
	End     int // next cluster (or EBML header) start, or the end of the body
	Tags    []Tag
	// Header is the session header in effect for the cluster (its
	// document's EBML header, Info and Tracks), read by engine/mkv.
	Header *mkv.Header
}

// Body is a parsed PutMedia body.
type Body struct {
	Raw       []byte
	HeaderEnd int // offset of the first Cluster
	// Header is the first document's header; TimecodeScale, TrackNumbers
	// and TrackCodecs are read from it.
	Header        *mkv.Header
	TimecodeScale uint64
	TrackNumbers  []uint64
	TrackCodecs   []string
	Tracks        Element // the first Tracks element
	Frags         []Fragment
}

// ParseBody parses a whole PutMedia body (one or more documents).
func ParseBody(b []byte) (*Body, error) {
	els, err := Walk(b)
	if err != nil {
		return nil, err
	}
	pb := &Body{Raw: b, HeaderEnd: -1, Tracks: Element{Off: -1}}
	docStart := 0
	var hdr *mkv.Header
	for _, e := range els {
		switch e.ID {
		case mkv.IDEBML:
			if n := len(pb.Frags); n > 0 {
				pb.Frags[n-1].End = e.Off
			}
			docStart, hdr = e.Off, nil
		case mkv.IDInfo, mkv.IDTracks:
			hdr = nil
			if e.ID == mkv.IDTracks && pb.Tracks.Off < 0 {
				pb.Tracks = e
			}
		case mkv.IDCluster:
			if hdr == nil {
				if hdr, err = mkv.ParseHeader(b[docStart:e.Off]); err != nil {
					return nil, fmt.Errorf("header before the cluster at %d: %w", e.Off, err)
				}
			}
			if pb.HeaderEnd < 0 {
				pb.HeaderEnd = e.Off
				pb.Header = hdr
			}
			c, err := ParseCluster(b, e)
			if err != nil {
				return nil, err
			}
			if n := len(pb.Frags); n > 0 && pb.Frags[n-1].End > e.Off {
				pb.Frags[n-1].End = e.Off
			}
			pb.Frags = append(pb.Frags, Fragment{Cluster: c, Off: e.Off, End: len(b), Header: hdr})
		case mkv.IDTags:
			if n := len(pb.Frags); n > 0 {
				tags, err := ParseTags(e.Data(b))
				if err != nil {
					return nil, fmt.Errorf("tags at %d: %w", e.Off, err)
				}
				pb.Frags[n-1].Tags = append(pb.Frags[n-1].Tags, tags...)
			}
		}
	}
	if pb.HeaderEnd < 0 {
		return nil, errors.New("no cluster in the body")
	}
	pb.TimecodeScale = pb.Header.TimecodeScale
	for _, tr := range pb.Header.Tracks {
		pb.TrackNumbers = append(pb.TrackNumbers, tr.Number)
		pb.TrackCodecs = append(pb.TrackCodecs, tr.CodecID)
	}
	return pb, nil
}

// MustParseBody is ParseBody that fails the test on an error.
func MustParseBody(tb testing.TB, b []byte) *Body {
	tb.Helper()
	pb, err := ParseBody(b)
	if err != nil {
		tb.Fatalf("parsing a %d-byte PutMedia body: %v", len(b), err)
	}
	return pb
}

// HeaderBytes returns a copy of the bytes before the first cluster.
func (pb *Body) HeaderBytes() []byte { return append([]byte(nil), pb.Raw[:pb.HeaderEnd]...) }

// FragBytes returns a copy of fragment i (cluster and trailing Tags).
func (pb *Body) FragBytes(i int) []byte {
	f := pb.Frags[i]
	return append([]byte(nil), pb.Raw[f.Off:f.End]...)
}

// Timecodes lists the cluster Timecodes as sent.
func (pb *Body) Timecodes() []uint64 {
	out := make([]uint64, len(pb.Frags))
	for i, f := range pb.Frags {
		out[i] = f.Cluster.Timecode
	}
	return out
}

// Frames lists fragment i's frames (see Frames).
func (pb *Body) Frames(i int) ([]mkv.Block, error) {
	f := pb.Frags[i]
	return Frames(f.Header, pb.Raw[f.Cluster.Elem.Off:f.Cluster.Elem.End])
}
