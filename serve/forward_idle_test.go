package serve

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestForwardedStreamFromASilentHolderIsCut: a holder that stops sending
// part-way through a streamed answer without closing it (a paused or hung
// peer) does not hold the relay forever: after relayIdle without a byte
// the relay cuts its own transfer and lets the holder's answer go.
func TestForwardedStreamFromASilentHolderIsCut(t *testing.T) {
	defer func(d time.Duration) { relayIdle = d }(relayIdle)
	relayIdle = 300 * time.Millisecond
	pr, pw := io.Pipe()
	defer pw.Close()
	view := &pipeView{body: pr, size: -1}
	ts := startServerWith(t, "", func(o *Options) { o.Cluster = view; o.Auth = nil })
	go func() { _, _ = pw.Write([]byte(strings.Repeat("x", 1000))) }() // then silence
	resp, err := http.Post(ts.URL+"/getMedia", "application/json", strings.NewReader(`{"StreamName":"cam"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	done := make(chan error, 1)
	var got []byte
	go func() {
		var err error
		got, err = io.ReadAll(resp.Body)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, io.ErrUnexpectedEOF) || len(got) != 1000 {
			t.Fatalf("relay from a silent holder: %d bytes, %v; want the 1000 sent, then a cut transfer", len(got), err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the relay still waits for a holder silent for 20 s")
	}
	// The holder's answer was let go: its writer sees the pipe closed.
	if _, err := pw.Write([]byte("late")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("writing to the holder's answer after the cut: %v, want io.ErrClosedPipe (the relay closed it)", err)
	}
}
