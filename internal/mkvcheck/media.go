package mkvcheck

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine/mkv"
)

// Chunk is one standalone Matroska document of a GetMedia or
// GetMediaForFragmentList response (shared/kvs-api.md §10.3): a fragment's
// chunk, or an error chunk (§5).
type Chunk struct {
	Off, End int    // in the response body
	Raw      []byte // the chunk's bytes so far
	// Header is the chunk's EBML header, Info and Tracks as engine/mkv
	// reads them; set when its first Cluster arrives.
	Header    *mkv.Header
	HasInfo   bool
	HasTracks bool
	Codecs    []string          // CodecIDs of the chunk's Tracks
	PreTags   map[string]string // SimpleTags of the Tags before the cluster
	PostTags  map[string]string // SimpleTags of the Tags after it
	Clusters  []Cluster         // offsets are in the response body
	// Complete: the trailing AWS_KINESISVIDEO_CONTINUATION_TOKEN arrived,
	// so a consumer deems the fragment whole.
	Complete bool
	// ReceivedAt is when the chunk's latest element was complete (a
	// Parser fed as the body arrives; zero for ParseMedia).
	ReceivedAt time.Time
}

// FragmentNumber is the chunk's AWS_KINESISVIDEO_FRAGMENT_NUMBER.
func (c *Chunk) FragmentNumber() string { return c.PreTags[mkv.TagFragmentNumber] }

// Tag returns a SimpleTag's value from the Tags after the cluster, else
// from those before it ("" when neither has it).
func (c *Chunk) Tag(name string) string {
	if v, ok := c.PostTags[name]; ok {
		return v
	}
	return c.PreTags[name]
}

// ErrorID is the AWS_KINESISVIDEO_ERROR_ID of an error chunk (ok false
// when the chunk has none).
func (c *Chunk) ErrorID() (id int, ok bool) {
	v, ok := c.PreTags[mkv.TagErrorID]
	if !ok {
		v, ok = c.PostTags[mkv.TagErrorID]
	}
	if !ok {
		return 0, false
	}
	id, err := strconv.Atoi(v)
	return id, err == nil
}

// Frames lists the frames of the chunk's clusters (see Frames).
func (c *Chunk) Frames() ([]mkv.Block, error) {
	if c.Header == nil {
		return nil, errors.New("chunk without a header")
	}
	var out []mkv.Block
	for _, cl := range c.Clusters {
		f, err := Frames(c.Header, c.Raw[cl.Elem.Off-c.Off:cl.Elem.End-c.Off])
		if err != nil {
			return out, err
		}
		out = append(out, f...)
	}
	return out, nil
}

// continuationToken is the model's pattern for ContinuationToken.
var continuationToken = regexp.MustCompile(`^[a-zA-Z0-9_.\-]{1,128}$`)

// CheckLayout reports every way the chunk departs from a GetMedia fragment
// chunk (§5, §10.3): a standalone document (Info and Tracks), one Cluster,
// FRAGMENT_NUMBER, SERVER_TIMESTAMP and PRODUCER_TIMESTAMP before it (the
// timestamps in seconds with three decimals), MILLIS_BEHIND_NOW (an integer
// ≥ 0) and CONTINUATION_TOKEN (the model's pattern) after it. Nil when it
// is one.
func (c *Chunk) CheckLayout() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !c.HasInfo || !c.HasTracks {
		bad("not a standalone document: Info %v, Tracks %v", c.HasInfo, c.HasTracks)
	}
	if len(c.Clusters) != 1 {
		bad("%d clusters, want 1", len(c.Clusters))
	}
	if !c.Complete {
		bad("no trailing %s", mkv.TagContinuationToken)
	}
	if n := c.PreTags[mkv.TagFragmentNumber]; n == "" || strings.Trim(n, "0123456789") != "" {
		bad("%s %q is not a decimal number", mkv.TagFragmentNumber, n)
	}
	for _, name := range []string{mkv.TagServerTimestamp, mkv.TagProducerTimestamp} {
		if _, ok := ParseSeconds(c.PreTags[name]); !ok {
			bad("%s %q before the cluster is not seconds with three decimals", name, c.PreTags[name])
		}
	}
	if c.Complete {
		if mb, err := strconv.ParseInt(c.PostTags[mkv.TagMillisBehindNow], 10, 64); err != nil || mb < 0 {
			bad("%s %q is not a non-negative integer", mkv.TagMillisBehindNow, c.PostTags[mkv.TagMillisBehindNow])
		}
		if tok := c.PostTags[mkv.TagContinuationToken]; !continuationToken.MatchString(tok) {
			bad("%s %q does not match the model's pattern", mkv.TagContinuationToken, tok)
		}
	}
	if id, ok := c.ErrorID(); ok {
		bad("error chunk: %s %d %s", mkv.TagErrorID, id, c.Tag(mkv.TagErrorCode))
	}
	return errors.Join(errs...)
}

// ParseSeconds parses a chunk timestamp ("1511852109.126": epoch seconds
// with exactly three decimals) into milliseconds.
func ParseSeconds(s string) (ms int64, ok bool) {
	sec, frac, ok := strings.Cut(s, ".")
	if !ok || len(frac) != 3 || strings.HasPrefix(frac, "-") || strings.HasPrefix(frac, "+") {
		return 0, false
	}
	a, err1 := strconv.ParseInt(sec, 10, 64)
	b, err2 := strconv.ParseInt(frac, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return a*1000 + b, true
}

// Parser splits a GetMedia response into chunks as its bytes arrive. Write
// the body as it is read; Close at its clean end. The zero Parser is ready.
type Parser struct {
	buf    []byte
	pos    int // next element to parse
	chunks []*Chunk
	err    error
}

// Write appends body bytes and parses every element they complete. It
// returns the first parse error, after which the bytes are only kept.
func (p *Parser) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	return len(b), p.parse(false, time.Now())
}

// Close parses what is left at the clean end of the body: an unknown-size
// Cluster ends there. Do not call it for a body that broke off.
func (p *Parser) Close() error { return p.parse(true, time.Now()) }

func (p *Parser) parse(eof bool, now time.Time) error {
	for p.err == nil && p.pos < len(p.buf) {
		e, err := next(p.buf, p.pos, eof)
		if err == errShort {
			break
		}
		if err == nil {
			err = p.add(e, now)
		}
		if err != nil {
			p.err = err
			break
		}
		p.pos = e.End
	}
	return p.err
}

// Bytes is the body so far.
func (p *Parser) Bytes() []byte { return p.buf }

// Err is the first parse error.
func (p *Parser) Err() error { return p.err }

// Chunks are the chunks so far; the last may still be growing.
func (p *Parser) Chunks() []*Chunk { return p.chunks }

// Complete are the chunks whose trailing tags have arrived.
func (p *Parser) Complete() []*Chunk { return Complete(p.chunks) }

// Complete filters the complete chunks.
func Complete(chunks []*Chunk) []*Chunk {
	var out []*Chunk
	for _, c := range chunks {
		if c.Complete {
			out = append(out, c)
		}
	}
	return out
}

// add files a top-level element into its chunk.
func (p *Parser) add(e Element, now time.Time) error {
	b := p.buf
	if e.ID == mkv.IDEBML || len(p.chunks) == 0 {
		if e.ID != mkv.IDEBML {
			return fmt.Errorf("media output: element %#x at %d before any EBML header", e.ID, e.Off)
		}
		p.chunks = append(p.chunks, &Chunk{Off: e.Off, PreTags: map[string]string{}, PostTags: map[string]string{}})
	}
	c := p.chunks[len(p.chunks)-1]
	c.End, c.Raw, c.ReceivedAt = e.End, b[c.Off:e.End], now
	switch e.ID {
	case mkv.IDInfo:
		c.HasInfo = true
	case mkv.IDTracks:
		c.HasTracks = true
	case mkv.IDCluster:
		if c.Header == nil {
			h, err := mkv.ParseHeader(b[c.Off:e.Off])
			if err != nil {
				return fmt.Errorf("chunk at %d: header: %w", c.Off, err)
			}
			c.Header = h
			for _, tr := range h.Tracks {
				c.Codecs = append(c.Codecs, tr.CodecID)
			}
		}
		cl, err := ParseCluster(b, e)
		if err != nil {
			return err
		}
		c.Clusters = append(c.Clusters, cl)
	case mkv.IDTags:
		tags, err := ParseTags(e.Data(b))
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
		if _, ok := c.PostTags[mkv.TagContinuationToken]; ok {
			c.Complete = true
		}
	}
	return nil
}

// ParseMedia parses a whole GetMedia or GetMediaForFragmentList body. On an
// error it returns the chunks before it too.
func ParseMedia(b []byte) ([]*Chunk, error) {
	p := &Parser{buf: b}
	err := p.parse(true, time.Time{})
	return p.chunks, err
}

// MustParseMedia is ParseMedia that fails the test on an error.
func MustParseMedia(tb testing.TB, b []byte) []*Chunk {
	tb.Helper()
	chunks, err := ParseMedia(b)
	if err != nil {
		tb.Fatalf("parsing a %d-byte media body: %v", len(b), err)
	}
	return chunks
}
