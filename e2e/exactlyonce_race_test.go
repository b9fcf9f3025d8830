package e2e

// Concurrent re-sends of one fragment. The scenarios of exactlyonce_test.go
// meet them by chance: a frozen network path that releases at once the
// connections a producer opened and dropped while it was frozen, a stopped
// server that resumes with a re-send queued behind the upload it was
// receiving, a slow server whose producer re-sends after 5 s without acks.

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/fixture"
)

// TestExactlyOnceConcurrentResends: several uploads of one stream, opened
// 20 ms apart, each carrying the same fragment (a producer's re-sends on
// new connections while the server still reads the older ones). Each
// upload sends all of the fragment but its last bytes before the next one
// opens, so each has begun it and may complete it (serve/FORMAT.md: "the
// older upload completes the fragment it is receiving"); then the last
// bytes go out on every connection at once. The fragment must be stored
// once; with a partial copy of it stored first (an upload that went silent
// mid-fragment until the server's idle close), once too, replacing that
// copy.
func TestExactlyOnceConcurrentResends(t *testing.T) {
	t.Parallel()
	srv := eoServer(t, append(mediaEnv(t.TempDir()), "KVSEDGE_MEDIA__PUT_MEDIA_IDLE_CLOSE=1s"), "127.0.0.1:0")
	addr := eoHostPort(t, srv.endpoint)
	pb := loadCapture(t, fixture.AbsoluteH264)
	src := eoCaptureSource(t, fixture.AbsoluteH264, 3, int64(pb.Frags[0].Cluster.Timecode))
	const rounds, uploads = 16, 8
	for _, partial := range []bool{false, true} {
		var subs []eoSub
		// The rounds run at once, each on a stream of its own.
		for round := 0; round < rounds; round++ {
			name := fmt.Sprintf("Whole/%d", round)
			if partial {
				name = fmt.Sprintf("AfterPartialCopy/%d", round)
			}
			subs = append(subs, eoSub{strings.ReplaceAll(name, "/", "_"), func(t *testing.T) {
				stream := fmt.Sprintf("concurrent-%v-%d", partial, round)
				createStream(t, srv.endpoint, stream)
				res := &eoResult{Src: src, Frags: make([]eoFragState, 3)}
				res.Frags[1].starts, res.Frags[2].starts = 1, 1
				if partial {
					// Fragment 0 whole and the first 5 frames of fragment 1;
					// the body then ends there, so the server stores fragment 1
					// as far as it got. (An upload that went silent instead
					// would see it dropped at the idle close: this producer
					// ends its fragments with the tag, so a fragment without
					// it is unfinished.)
					full := pb.buildBody(t, nil, []int{0, 1}, nil)
					cut := len(pb.HeaderBytes()) + (pb.Frags[0].End - pb.Frags[0].Off) + (pb.Frags[1].Cluster.Blocks[4].End - pb.Frags[1].Off)
					up := putMedia(t, srv.endpoint, putMediaReq{Stream: stream, TimecodeType: "ABSOLUTE", Start: "1795579974.135",
						Body: full[:cut], Until: persistedAll(2), AckWait: 10 * time.Second})
					if n := len(up.events("PERSISTED")); n != 2 {
						t.Fatalf("partial upload: %d PERSISTED, want 2\n%s", n, up.ackLog())
					}
					res.Frags[0].starts = 1
				}
				body := pb.buildBody(t, nil, []int{1, 2}, nil)
				hold := len(pb.HeaderBytes()) + pb.Frags[1].End - pb.Frags[1].Off - 8
				persisted := eoReleaseTogether(t, addr, stream, body, hold, uploads)
				got, problems, listed := eoReadListed(t, srv.endpoint, stream)
				for _, p := range problems {
					t.Errorf("GetMediaForFragmentList: %s", p)
				}
				if d := eoCompare(res.Expected(), got); !d.Empty() {
					t.Errorf("%s: %d uploads, a partial copy stored first: %v; fragment numbers PERSISTED on the uploads: %s; GetMediaForFragmentList of the %d listed fragments: %s",
						stream, uploads, partial, persisted, listed, d)
				}
			}})
		}
		eoConcurrently(t, subs)
	}
}

// eoReleaseTogether opens n uploads of body, 20 ms apart, each sending all
// but body[hold:] at once; then writes the rest and the final chunk on
// every one back to back, and waits (up to 10 s) for their acks. It
// returns the PERSISTED fragment numbers per upload.
func eoReleaseTogether(t *testing.T, addr, stream string, body []byte, hold, n int) string {
	t.Helper()
	chunk := func(b []byte) []byte {
		out := strconv.AppendInt(nil, int64(len(b)), 16)
		out = append(out, "\r\n"...)
		out = append(out, b...)
		return append(out, "\r\n"...)
	}
	type upload struct {
		c       net.Conn
		mu      sync.Mutex
		persist []string
		done    chan struct{}
	}
	var ups []*upload
	defer func() {
		for _, u := range ups {
			_ = u.c.Close()
		}
	}()
	for k := 0; k < n; k++ {
		head, req, err := eoPutMediaHead(addr, stream, "ABSOLUTE", 1795579974135)
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		u := &upload{c: c, done: make(chan struct{})}
		ups = append(ups, u)
		go func() {
			defer close(u.done)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, req)
			if err != nil || resp.StatusCode != 200 {
				return
			}
			for {
				data, err := readChunk(br)
				if err != nil {
					return
				}
				for _, line := range strings.Split(string(data), "\n") {
					if strings.Contains(line, `"PERSISTED"`) {
						if _, num, ok := strings.Cut(line, `"FragmentNumber":"`); ok {
							num, _, _ = strings.Cut(num, `"`)
							u.mu.Lock()
							u.persist = append(u.persist, num)
							u.mu.Unlock()
						}
					}
				}
			}
		}()
		if _, err := c.Write(append(head, chunk(body[:hold])...)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rest := append(chunk(body[hold:]), "0\r\n\r\n"...)
	for _, u := range ups {
		_, _ = u.c.Write(rest)
	}
	deadline := time.After(10 * time.Second)
	var parts []string
	for k, u := range ups {
		select {
		case <-u.done:
		case <-deadline:
		}
		u.mu.Lock()
		parts = append(parts, fmt.Sprintf("upload %d: %v", k+1, u.persist))
		u.mu.Unlock()
	}
	return strings.Join(parts, ", ")
}
