package serve

import (
	"bufio"
	"errors"
	"io"
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
const streamedChunk = 64 << 10

func (b *streamedBody) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, streamedChunk)
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

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
