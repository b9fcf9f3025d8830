package e2e

// PutMedia client of the media end-to-end tests: it writes its own chunked
// framing on a raw TCP connection, paced like the real C producer, while it
// reads the acks on the same connection and records how they were framed.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/kvsedge/kvsedge/internal/fixture"
)

// ack is one PutMedia acknowledgement as received.
type ack struct {
	EventType        string
	FragmentTimecode json.RawMessage // must be a bare JSON number
	FragmentNumber   string
	ErrorId          int
	At               time.Time `json:"-"`
}

// timecode is FragmentTimecode as sent (quotes kept, so a string never
// compares equal to a number).
func (a ack) timecode() string { return string(a.FragmentTimecode) }

func (a ack) String() string {
	s := fmt.Sprintf("%s tc=%s fn=%s", a.EventType, a.timecode(), a.FragmentNumber)
	if a.ErrorId != 0 {
		s += fmt.Sprintf(" err=%d", a.ErrorId)
	}
	return s
}

// chunkSpec is one HTTP chunk to write: its size and the pause before it.
type chunkSpec struct {
	Size  int
	Delay time.Duration
}

// loadChunkPlan is a capture's chunk plan (fixture.LoadCapture). Delays
// are divided by speedup and capped at maxDelay.
func loadChunkPlan(t *testing.T, capture string, speedup int, maxDelay time.Duration) []chunkSpec {
	t.Helper()
	var plan []chunkSpec
	for _, ch := range fixture.LoadCapture(t, capture).Chunks {
		plan = append(plan, chunkSpec{Size: ch.Size, Delay: min(ch.Delay/time.Duration(speedup), maxDelay)})
	}
	return plan
}

// evenChunks splits n bytes into chunks of size with a fixed delay.
func evenChunks(n, size int, delay time.Duration) []chunkSpec {
	var plan []chunkSpec
	for n > 0 {
		s := min(size, n)
		plan = append(plan, chunkSpec{Size: s, Delay: delay})
		n -= s
	}
	return plan
}

// ackChunk is one HTTP chunk of the ack stream.
type ackChunk struct {
	Size  int
	Acks  int  // acks completed in this chunk
	Split bool // the chunk ended inside an ack
	Data  string
}

// writeRec is one write of body data: the body offset it reached and when.
type writeRec struct {
	End int
	At  time.Time
}

// writtenAt returns when the body byte at off was written (zero if never).
func (r *putMediaResult) writtenAt(off int) time.Time {
	for _, w := range r.Writes {
		if w.End > off {
			return w.At
		}
	}
	return time.Time{}
}

// readChunk reads one chunk of a chunked body; io.EOF after the last chunk
// and its trailer.
func readChunk(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("chunk size line: %w", err)
	}
	sizeStr, _, _ := strings.Cut(strings.TrimRight(line, "\r\n"), ";")
	size, err := strconv.ParseUint(strings.TrimSpace(sizeStr), 16, 31)
	if err != nil {
		return nil, fmt.Errorf("chunk size %q: %w", line, err)
	}
	if size == 0 {
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return nil, fmt.Errorf("chunked trailer: %w", err)
			}
			if l == "\r\n" || l == "\n" {
				return nil, io.EOF
			}
		}
	}
	data := make([]byte, size+2)
	if _, err := io.ReadFull(br, data); err != nil {
		return nil, fmt.Errorf("chunk data: %w", err)
	}
	if string(data[size:]) != "\r\n" {
		return nil, fmt.Errorf("chunk of %d bytes not followed by CRLF", size)
	}
	return data[:size], nil
}

// putMediaReq describes one PutMedia upload.
type putMediaReq struct {
	Stream       string
	TimecodeType string // ABSOLUTE or RELATIVE
	Start        string // x-amzn-producer-start-timestamp
	Body         []byte
	Plan         []chunkSpec // nil: 32 KiB chunks, no delay
	Expect100    bool        // send Expect: 100-continue and wait (≤ 2 s) for it
	Secret       string      // signing secret; default e2eSecret
	HostNoPort   bool        // send and sign Host without the port, as the C producer does
	ExtraHeaders map[string]string
	// TolerateDown: a box that cannot be reached is a result (ReadErr),
	// not a test failure (the crash suite kills it while producers run).
	TolerateDown bool
	// Until stops waiting for acks once it returns true (checked after
	// each ack and at the end of the upload). Nil: wait for the server
	// to end the response.
	Until func(acks []ack) bool
	// OnAck, when set, sees every ack as it arrives.
	OnAck func(a ack)
	// HoldOpen keeps the body open after the data (no terminating chunk)
	// until Until holds or AckWait passes, as a producer waiting for its
	// last PERSISTED does.
	HoldOpen bool
	// AbortAt > 0 drops the connection once the body reaches this offset,
	// in the middle of an HTTP chunk.
	AbortAt int
	// AbortWhen, with AbortAt, holds the connection after the partial
	// chunk until the acks so far satisfy it (at most 10 s, or until the
	// response ends): the server has read what the test needs it to have
	// before the drop.
	AbortWhen func(acks []ack) bool
	// AckWait bounds the wait for acks after the body is sent; default 15 s.
	AckWait time.Duration
}

// putMediaResult is what happened.
type putMediaResult struct {
	Status      int
	Header      http.Header
	ErrBody     []byte // body of a non-200 answer
	Acks        []ack
	Got100      bool
	UploadStart time.Time
	DataEnd     time.Time // when the last data chunk was written
	UploadEnd   time.Time // when the terminating chunk was written (zero if never)
	// DoneWhileOpen: with HoldOpen, Until held before the body was ended.
	DoneWhileOpen bool
	WriteErr      error      // first write error (the server closed on us)
	ReadErr       error      // how the ack stream ended (nil: clean end of the response)
	RespEnded     bool       // the response ended (clean or not) before we stopped waiting
	EndedAt       time.Time  // when the response ended or the connection failed (zero: we closed it)
	AckChunks     []ackChunk // the HTTP chunks of a chunked 200 response
	Writes        []writeRec // every body write, in order
}

func (r *putMediaResult) ackLog() string {
	var sb strings.Builder
	for _, a := range r.Acks {
		fmt.Fprintf(&sb, "  +%v %s\n", a.At.Sub(r.UploadStart).Round(time.Millisecond), a)
	}
	return sb.String()
}

// events returns the acks of one EventType, in arrival order.
func (r *putMediaResult) events(typ string) []ack {
	var out []ack
	for _, a := range r.Acks {
		if a.EventType == typ {
			out = append(out, a)
		}
	}
	return out
}

// putMedia uploads req.Body on a raw TCP connection with our own chunked
// framing, reading the response concurrently.
func putMedia(t *testing.T, endpoint string, req putMediaReq) *putMediaResult {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		if req.TolerateDown {
			return &putMediaResult{ReadErr: err}
		}
		t.Fatalf("dial %s: %v", u.Host, err)
	}
	defer conn.Close()

	hreq, err := http.NewRequest(http.MethodPost, endpoint+"/putMedia", nil)
	if err != nil {
		t.Fatal(err)
	}
	hreq.ContentLength = -1
	host := u.Host
	if req.HostNoPort {
		host = u.Hostname()
		hreq.Host = host
	}
	h := hreq.Header
	h.Set("User-Agent", "AWS-PRODUCER-SDK-KVS/1.6.0 kvsedge-e2e")
	if req.Stream != "" {
		h.Set("X-Amzn-Stream-Name", req.Stream)
	}
	h.Set("X-Amzn-Fragment-Timecode-Type", req.TimecodeType)
	h.Set("X-Amzn-Producer-Start-Timestamp", req.Start)
	h.Set("X-Amzn-Fragment-Acknowledgment-Required", "1")
	h.Set("Content-Type", "application/json")
	h.Set("Connection", "keep-alive")
	for k, v := range req.ExtraHeaders {
		h.Set(k, v)
	}
	secret := e2eSecret
	if req.Secret != "" {
		secret = req.Secret
	}
	head, err := signedPutMediaHead(hreq, host, secret)
	if err != nil {
		t.Fatal(err)
	}
	if req.Expect100 {
		head.WriteString("Expect: 100-continue\r\n")
	}
	head.WriteString("\r\n")

	res := &putMediaResult{}
	var mu sync.Mutex // guards res.Acks, res.Status, res.Header, res.Got100 while the reader runs
	got100 := make(chan struct{})
	gotHeaders := make(chan struct{})
	ackSignal := make(chan struct{}, 1)
	readerDone := make(chan struct{})
	holds := func(cond func([]ack) bool) bool {
		if cond == nil {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		return cond(append([]ack(nil), res.Acks...))
	}
	until := func() bool { return holds(req.Until) }

	closing := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer func() {
			select {
			case <-closing:
			default:
				mu.Lock()
				res.EndedAt = time.Now()
				mu.Unlock()
			}
		}()
		br := bufio.NewReader(conn)
		var resp *http.Response
		for {
			r, err := http.ReadResponse(br, hreq)
			if err != nil {
				mu.Lock()
				res.ReadErr = fmt.Errorf("reading response head: %w", err)
				mu.Unlock()
				return
			}
			if r.StatusCode == http.StatusContinue {
				mu.Lock()
				res.Got100 = true
				mu.Unlock()
				select {
				case <-got100:
				default:
					close(got100)
				}
				continue
			}
			resp = r
			break
		}
		mu.Lock()
		res.Status, res.Header = resp.StatusCode, resp.Header
		mu.Unlock()
		close(gotHeaders)
		if resp.StatusCode != 200 {
			b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			mu.Lock()
			res.ErrBody, res.ReadErr = b, err
			mu.Unlock()
			return
		}
		emit := func(a ack) {
			a.At = time.Now()
			mu.Lock()
			res.Acks = append(res.Acks, a)
			mu.Unlock()
			if req.OnAck != nil {
				req.OnAck(a)
			}
			select {
			case ackSignal <- struct{}{}:
			default:
			}
		}
		if !slices.Contains(resp.TransferEncoding, "chunked") {
			// Not chunked: no framing to check, decode the body as is.
			dec := json.NewDecoder(resp.Body)
			for {
				var a ack
				if err := dec.Decode(&a); err != nil {
					if err != io.EOF {
						mu.Lock()
						res.ReadErr = err
						mu.Unlock()
					}
					return
				}
				emit(a)
			}
		}
		// Chunked: read the framing ourselves from br (ReadResponse has
		// consumed only the head) to see how acks are split into chunks.
		var pending []byte
		for {
			data, err := readChunk(br)
			if err == io.EOF {
				if len(bytes.TrimSpace(pending)) > 0 {
					mu.Lock()
					res.ReadErr = fmt.Errorf("response ended inside an ack: %q", pending)
					mu.Unlock()
				}
				return
			}
			if err != nil {
				mu.Lock()
				res.ReadErr = err
				mu.Unlock()
				return
			}
			pending = append(pending, data...)
			dec := json.NewDecoder(bytes.NewReader(pending))
			consumed, n := 0, 0
			for {
				var a ack
				err := dec.Decode(&a)
				if err == nil {
					consumed = int(dec.InputOffset())
					n++
					emit(a)
					continue
				}
				if err == io.EOF || err == io.ErrUnexpectedEOF {
					break
				}
				mu.Lock()
				res.ReadErr = fmt.Errorf("bad ack %q: %w", pending, err)
				mu.Unlock()
				return
			}
			pending = append([]byte(nil), pending[consumed:]...)
			mu.Lock()
			res.AckChunks = append(res.AckChunks, ackChunk{Size: len(data), Acks: n,
				Split: len(bytes.TrimSpace(pending)) > 0, Data: string(data)})
			mu.Unlock()
		}
	}()

	_ = conn.SetWriteDeadline(time.Now().Add(60 * time.Second))
	res.UploadStart = time.Now()
	if _, err := conn.Write(head.Bytes()); err != nil {
		res.WriteErr = err
	}
	if req.Expect100 && res.WriteErr == nil {
		select {
		case <-got100:
		case <-gotHeaders:
		case <-readerDone:
		case <-time.After(2 * time.Second):
		}
	}
	plan := req.Plan
	if plan == nil {
		plan = evenChunks(len(req.Body), 32<<10, 0)
	}
	off := 0
	stopped := false
	for _, c := range plan {
		if res.WriteErr != nil || stopped {
			break
		}
		if c.Delay > 0 {
			time.Sleep(c.Delay)
		}
		select {
		case <-readerDone:
			// The server ended the response: stop writing, as curl would.
			stopped = true
			continue
		default:
		}
		end := min(off+c.Size, len(req.Body))
		if end <= off {
			break
		}
		if req.AbortAt > 0 && end > req.AbortAt {
			// Drop the connection in the middle of a chunk, as the C
			// producer does when it gives up on a session.
			frame := fmt.Appendf(nil, "%x\r\n", end-off)
			frame = append(frame, req.Body[off:req.AbortAt]...)
			_, _ = conn.Write(frame)
			res.Writes = append(res.Writes, writeRec{End: req.AbortAt, At: time.Now()})
			if req.AbortWhen != nil {
				limit := time.After(10 * time.Second)
			wait:
				for !holds(req.AbortWhen) {
					select {
					case <-ackSignal:
					case <-readerDone:
						break wait
					case <-limit:
						break wait
					}
				}
			}
			res.DataEnd = time.Now()
			close(closing)
			conn.Close()
			<-readerDone
			mu.Lock()
			defer mu.Unlock()
			out := *res
			out.Acks = append([]ack(nil), res.Acks...)
			return &out
		}
		frame := make([]byte, 0, end-off+16)
		frame = fmt.Appendf(frame, "%x\r\n", end-off)
		frame = append(frame, req.Body[off:end]...)
		frame = append(frame, "\r\n"...)
		if _, err := conn.Write(frame); err != nil {
			res.WriteErr = err
		}
		off = end
		res.Writes = append(res.Writes, writeRec{End: off, At: time.Now()})
	}
	if res.WriteErr == nil && !stopped && off < len(req.Body) {
		frame := fmt.Appendf(nil, "%x\r\n", len(req.Body)-off)
		frame = append(append(frame, req.Body[off:]...), "\r\n"...)
		if _, err := conn.Write(frame); err != nil {
			res.WriteErr = err
		}
		res.Writes = append(res.Writes, writeRec{End: len(req.Body), At: time.Now()})
	}
	res.DataEnd = time.Now()

	wait := req.AckWait
	if wait == 0 {
		wait = 15 * time.Second
	}
	deadline := time.After(wait)
	// waitAcks waits until Until holds, the response ends or the deadline.
	waitAcks := func() {
		for !until() {
			select {
			case <-readerDone:
				res.RespEnded = true
				return
			case <-ackSignal:
			case <-deadline:
				return
			}
		}
	}
	if req.HoldOpen && res.WriteErr == nil && !stopped {
		waitAcks()
		res.DoneWhileOpen = until()
	}
	if res.WriteErr == nil && !stopped && !res.RespEnded {
		if _, err := conn.Write([]byte("0\r\n\r\n")); err != nil {
			res.WriteErr = err
		} else {
			res.UploadEnd = time.Now()
		}
	}
	waitAcks()
	close(closing)
	conn.Close()
	<-readerDone
	mu.Lock()
	defer mu.Unlock()
	out := *res
	out.Acks = append([]ack(nil), res.Acks...)
	return &out
}

// persistedAll returns an Until that waits for n PERSISTED acks or any ERROR.
func persistedAll(n int) func([]ack) bool {
	return func(acks []ack) bool {
		p := 0
		for _, a := range acks {
			switch a.EventType {
			case "PERSISTED":
				p++
			case "ERROR":
				return true
			}
		}
		return p >= n
	}
}

// firstError is an Until that stops at the first ERROR ack.
func firstError(acks []ack) bool {
	for _, a := range acks {
		if a.EventType == "ERROR" {
			return true
		}
	}
	return false
}

// signedPutMediaHead signs a PutMedia request as the producers do (a
// streamed body: the empty-payload hash) and writes its request line and
// headers, sorted, with Transfer-Encoding: chunked, but not the blank line
// that ends the head.
func signedPutMediaHead(hreq *http.Request, host, secret string) (*bytes.Buffer, error) {
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: e2eAKID, SecretAccessKey: secret},
		hreq, emptySHA256, "kinesisvideo", "us-west-2", time.Now()); err != nil {
		return nil, err
	}
	head := new(bytes.Buffer)
	fmt.Fprintf(head, "POST /putMedia HTTP/1.1\r\nHost: %s\r\n", host)
	keys := make([]string, 0, len(hreq.Header))
	for k := range hreq.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range hreq.Header[k] {
			fmt.Fprintf(head, "%s: %s\r\n", k, v)
		}
	}
	head.WriteString("Transfer-Encoding: chunked\r\n")
	return head, nil
}
