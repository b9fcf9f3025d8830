package serve

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"
)

// streamedBody is a chunked answer written by its write function while
// fasthttp sends it (Response.SetBodyStream with size -1). fasthttp calls
// WriteTo on its own connection goroutine (BodyWriterTo); each flush of
// the buffer handed to write is one chunk on the wire.
//
// An answer that fails part-way must not look whole: when write returns
// an error, WriteTo returns it, fasthttp leaves out the last (zero-length)
// chunk and closes the connection, and the client sees a cut transfer
// (curl: "transfer closed with outstanding read data remaining"; a
// browser's download: failed), never a short body ending in a normal 200.
//
// fasthttp closes the body once the answer is written, or instead of
// writing it (a HEAD request, a connection already gone): close, when
// set, releases what write would have read from.
type streamedBody struct {
	write func(w *bufio.Writer) error
	close func()
}

// streamedChunk is the buffer between write and the wire: one chunk per
// flush, so a chunk's header is amortised over up to this many bytes.
// The buffers are pooled: only answers being written hold one (Go heap,
// outside the media budget: 16 KiB per download at a time).
const streamedChunk = 16 << 10

var streamedBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, streamedChunk) }}

// errClientGone wraps a failure to write to the client (it went away, or
// its connection broke): the answer ends, but nothing on this side failed.
var errClientGone = errors.New("serve: the client went away")

func (b *streamedBody) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	bw := streamedBufs.Get().(*bufio.Writer)
	bw.Reset(cw)
	defer func() {
		bw.Reset(nil)
		streamedBufs.Put(bw)
	}()
	if err := b.write(bw); err != nil {
		return cw.n, err
	}
	err := bw.Flush()
	return cw.n, err
}

// SupportsBodyWriteTo tells fasthttp to use WriteTo, never Read.
func (b *streamedBody) SupportsBodyWriteTo() bool { return true }

// errStreamedRead: fasthttp writes a streamedBody with WriteTo; nothing
// reads it.
var errStreamedRead = errors.New("serve: a streamed answer is written, not read")

func (b *streamedBody) Read([]byte) (int, error) { return 0, errStreamedRead }

// Close runs close once.
func (b *streamedBody) Close() error {
	if c := b.close; c != nil {
		b.close = nil
		c()
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

// Write writes to the client; its error wraps errClientGone.
func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil {
		err = fmt.Errorf("%w: %w", errClientGone, err)
	}
	return n, err
}
