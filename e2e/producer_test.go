package e2e

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/fixture"
	fragnum "github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/producer"
	"github.com/kvsedge/kvsedge/serve"
)

const (
	akid   = "AKIDPRODUCERTEST"
	secret = "producer-test-secret"
)

// startKVS runs a real kvsedge server (engine over Pebble, SigV4 on) and
// returns its address and engine.
func startKVS(t *testing.T) (string, *engine.Engine) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	eng, err := engine.Open(engine.Options{Store: engine.StoreOptions{Dir: t.TempDir(), CacheBytes: 1 << 20, MemTableBytes: 1 << 20}, Logger: log,
		Media: engine.MediaOptions{Debug: true}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := serve.New(eng, serve.Options{DataEndpoint: "http://" + ln.Addr().String(), Logger: log,
		Auth: serve.NewSigV4Auth(map[string]string{akid: secret}, 0)})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		eng.Close()
	})
	if _, err := eng.CreateStream(engine.CreateStreamInput{Name: "cam", DataRetentionInHours: 1}); err != nil {
		t.Fatal(err)
	}
	return ln.Addr().String(), eng
}

// cutProxy forwards to target, cutting the first connection after limit
// bytes from the client (a network failure mid-upload).
type cutProxy struct {
	ln     net.Listener
	target string
	limit  int64
	conns  atomic.Int32
	wg     sync.WaitGroup
}

func newCutProxy(t *testing.T, target string, limit int64) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, limit: limit}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		n := p.conns.Add(1)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer c.Close()
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				return
			}
			defer s.Close()
			go io.Copy(c, s)
			if n == 1 {
				io.CopyN(s, c, p.limit)
				return // cut
			}
			io.Copy(s, c)
		}()
	}
}

func TestPutReconnectsAndResendsWithoutDuplicates(t *testing.T) {
	addr, eng := startKVS(t)
	data, err := os.ReadFile(fixture.Path(fixture.RelativeH264AAC + ".mkv"))
	if err != nil {
		t.Fatal(err)
	}
	// Cut the first connection in the middle of the upload: some fragments
	// were PERSISTED, some not.
	proxy := newCutProxy(t, addr, int64(len(data))*2/3)
	p, err := producer.New(producer.Config{
		Endpoint:    "http://" + proxy.ln.Addr().String(),
		StreamName:  "cam",
		Region:      "eu-west-1",
		Credentials: credentials.NewStaticCredentialsProvider(akid, secret, ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	persisted := map[uint64]string{}
	st, err := p.Put(context.Background(), slowReader{bytes.NewReader(data)}, producer.Options{OnAck: func(a producer.Ack) {
		if a.EventType == "PERSISTED" {
			mu.Lock()
			if prev, ok := persisted[a.FragmentTimecode]; ok && prev != a.FragmentNumber {
				t.Errorf("fragment %d persisted as %s and %s", a.FragmentTimecode, prev, a.FragmentNumber)
			}
			persisted[a.FragmentTimecode] = a.FragmentNumber
			mu.Unlock()
		}
	}})
	if err != nil {
		t.Fatalf("Put: %v (stats %+v)", err, st)
	}
	if st.Fragments != 6 || st.Persisted != 6 || st.Reconnects < 1 || proxy.conns.Load() < 2 {
		t.Fatalf("stats %+v over %d connections, want 6 fragments persisted after a reconnect", st, proxy.conns.Load())
	}
	got, _, err := eng.ListFragments(engine.StreamRef{Name: "cam"}, fragnum.ByServerTime, 0, 1<<50, nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 {
		t.Fatalf("%d fragments stored, want 6 (re-sent ones must not be stored twice)", len(got))
	}
}

// slowReader hands out the input in small pieces so fragments are acked
// while the upload is still running.
type slowReader struct{ r io.Reader }

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(2 * time.Millisecond)
	return s.r.Read(p[:min(len(p), 64<<10)])
}

func TestPutRefusedStream(t *testing.T) {
	addr, _ := startKVS(t)
	p, _ := producer.New(producer.Config{Endpoint: "http://" + addr, StreamName: "missing", Credentials: credentials.NewStaticCredentialsProvider(akid, secret, "")})
	data, _ := os.ReadFile(fixture.Path(fixture.RelativeH264AAC + ".mkv"))
	_, err := p.Put(context.Background(), bytes.NewReader(data), producer.Options{})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("ResourceNotFoundException")) {
		t.Fatalf("Put to a missing stream: %v", err)
	}
}
