package serve

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/status"
	"github.com/valyala/fasthttp"
)

// pipeView is a ClusterView whose every stream lives on another node, and
// whose Forward answers with body (ContentLength size) as the holder
// writes it.
type pipeView struct {
	body io.ReadCloser
	size int64
}

func (v *pipeView) Home(string) string                              { return "http://holder.invalid" }
func (v *pipeView) Members() []status.Member                        { return nil }
func (v *pipeView) Replication() []status.StreamReplication         { return nil }
func (v *pipeView) Locate(string) string                            { return "http://holder.invalid" }
func (v *pipeView) VerifyPeer(string, string, string, []byte) error { return nil }
func (v *pipeView) ServePeer(ctx *fasthttp.RequestCtx, _ context.Context) {
	ctx.SetStatusCode(http.StatusNotFound)
}
func (v *pipeView) Forward(context.Context, string, string, []byte) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, ContentLength: v.size, Body: v.body,
		Header: http.Header{"Content-Type": {"video/mp4"}}}, nil
}

// TestForwardedAnswerIsRelayedAsItComes: a forwarded answer of known
// length (an HLS or DASH fragment, relayed by a box with none of the
// stream) reaches the client as the holder sends it, with its length: the
// relay does not hold the media (megabytes, outside the box's media
// budget) in memory first. The holder here sends its first half and waits
// until the client has it (but for a write buffer's worth).
func TestForwardedAnswerIsRelayedAsItComes(t *testing.T) {
	const size = 4 << 20
	pr, pw := io.Pipe()
	view := &pipeView{body: pr, size: size}
	ts := startServerWith(t, "", func(o *Options) { o.Cluster = view; o.Auth = nil })
	half := bytes.Repeat([]byte{7}, size/2)
	clientHasHalf := make(chan struct{})
	go func() {
		if _, err := pw.Write(half); err != nil {
			return
		}
		select {
		case <-clientHasHalf:
		case <-time.After(20 * time.Second):
			pw.CloseWithError(io.ErrUnexpectedEOF)
			return
		}
		_, _ = pw.Write(half)
		pw.Close()
	}()
	resp, err := http.Post(ts.URL+"/listFragments", "application/json", strings.NewReader(`{"StreamName":"cam"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Length") != strconv.Itoa(size) {
		t.Fatalf("status %d, Content-Length %q", resp.StatusCode, resp.Header.Get("Content-Length"))
	}
	got := make([]byte, size/2-64<<10) // what the relay's write buffer may still hold aside
	if _, err := io.ReadFull(resp.Body, got); err != nil {
		t.Fatalf("the first half did not arrive before the holder sent the rest (the relay waited for all of it): %v", err)
	}
	close(clientHasHalf)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || len(got)+len(rest) != size {
		t.Fatalf("the rest: %d bytes, %v", len(rest), err)
	}
}

// TestForwardedStreamCutByTheHolderIsCutHere: a streamed answer (no
// length: GetMedia, GetClip) that the holder cuts part-way (its transfer
// ends without the last chunk: Go's client reads io.ErrUnexpectedEOF)
// reaches the client cut too, never as a short answer ending normally.
// A holder that ends its answer normally is relayed whole.
func TestForwardedStreamCutByTheHolderIsCutHere(t *testing.T) {
	for _, cut := range []bool{true, false} {
		pr, pw := io.Pipe()
		view := &pipeView{body: pr, size: -1}
		ts := startServerWith(t, "", func(o *Options) { o.Cluster = view; o.Auth = nil })
		part := bytes.Repeat([]byte{7}, 300<<10)
		go func() {
			if _, err := pw.Write(part); err != nil {
				return
			}
			if cut {
				pw.CloseWithError(io.ErrUnexpectedEOF)
			} else {
				pw.Close()
			}
		}()
		resp, err := http.Post(ts.URL+"/getClip", "application/json", strings.NewReader(`{"StreamName":"cam"}`))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(got) != len(part) {
			t.Fatalf("cut %v: status %d, %d bytes relayed of %d", cut, resp.StatusCode, len(got), len(part))
		}
		if cut && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("the holder cut its answer; the relay ended with %v, want a cut transfer (unexpected EOF)", err)
		}
		if !cut && err != nil {
			t.Fatalf("the holder ended its answer normally; the relay: %v", err)
		}
		ts.stop()
	}
}

// ctxPipeView is a pipeView that keeps the context of its Forward.
type ctxPipeView struct {
	pipeView
	ctx chan context.Context
}

func (v *ctxPipeView) Forward(ctx context.Context, base, path string, body []byte) (*http.Response, error) {
	v.ctx <- ctx
	return v.pipeView.Forward(ctx, base, path, body)
}

// TestForwardedStreamClientGoneEndsTheForward: a client that goes away
// while a streamed answer is relayed ends the forward: the holder's
// answer is closed (its writes fail) and the forward's context is
// cancelled, so neither the relay nor its connection to the holder
// lingers.
func TestForwardedStreamClientGoneEndsTheForward(t *testing.T) {
	pr, pw := io.Pipe()
	view := &ctxPipeView{pipeView: pipeView{body: pr, size: -1}, ctx: make(chan context.Context, 1)}
	ts := startServerWith(t, "", func(o *Options) { o.Cluster = view; o.Auth = nil })
	holderDone := make(chan error, 1)
	go func() {
		part := bytes.Repeat([]byte{7}, 16<<10)
		for {
			if _, err := pw.Write(part); err != nil {
				holderDone <- err
				return
			}
		}
	}()
	resp, err := http.Post(ts.URL+"/getMedia", "application/json", strings.NewReader(`{"StreamName":"cam"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 256<<10)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // the client goes away mid-stream
	select {
	case err := <-holderDone:
		if !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("the holder's answer ended with %v, want it closed by the relay", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the client went away, yet the relay still reads the holder's answer")
	}
	select {
	case <-(<-view.ctx).Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the relay ended without cancelling the forward's context")
	}
}
