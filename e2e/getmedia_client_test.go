package e2e

// GetMedia client of the media end-to-end tests: a signed request whose
// body is split into chunks (internal/mkvcheck) as it streams in.

import (
	"context"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/mkvcheck"
)

// mediaOpt tunes getMediaStream.
type mediaOpt struct {
	RcvBuf int             // SO_RCVBUF of the connection (0: default)
	Gate   <-chan struct{} // start reading the body only once this is closed
	// Answered is closed once the response head has arrived (or the
	// request failed). The server opens a GetMedia's cursor before it
	// answers, so from then on a NOW reader gets every new fragment.
	Answered chan<- struct{}
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

func (m *mediaStream) complete() []*mediaChunk { return mkvcheck.Complete(m.Chunks) }

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
	if o.Answered != nil {
		close(o.Answered)
	}
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
	var p mkvcheck.Parser
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			_, _ = p.Write(buf[:n])
			ms.Body, ms.Chunks, ms.ParsErr = p.Bytes(), p.Chunks(), p.Err()
			if stop != nil && ms.ParsErr == nil && stop(p.Complete()) {
				return ms
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
	if ms.ParsErr == nil && ms.EndErr == nil {
		ms.ParsErr = p.Close()
		ms.Chunks = p.Chunks()
	}
	return ms
}
