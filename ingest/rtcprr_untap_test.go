package ingest

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// TestReportsGoOnAfterTheTapGivesUp: a camera (written here, not
// gortsplib) sends, 2 s into its video, an OPTIONS request whose head
// (80 KB) the tap cannot size, so the tap gives up and gortsplib reads
// the video from then on: the receiver reports go on, lossless; with the
// source's packets of a second payload type (97, sharing its SSRC and
// sequence) too.
func TestReportsGoOnAfterTheTapGivesUp(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	t.Parallel()
	for _, otherPT := range []bool{false, true} {
		t.Run(fmt.Sprint("other-payload-type=", otherPT), func(t *testing.T) {
			t.Parallel()
			reportsAfterUntap(t, otherPT)
		})
	}
}

func reportsAfterUntap(t *testing.T, otherPT bool) {
	d := loadDemo(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	url := "rtsp://" + ln.Addr().String() + "/cam"
	type rep struct {
		after bool
		rr    rtcp.ReceiverReport
	}
	var mu sync.Mutex
	var reps []rep
	var untapSent atomic.Bool
	stopc := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stopc); ln.Close(); wg.Wait() }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		go func() { <-stopc; conn.Close() }()
		var wmu sync.Mutex
		write := func(b []byte) error { wmu.Lock(); defer wmu.Unlock(); _, err := conn.Write(b); return err }
		br := bufio.NewReader(conn)
		tp := textproto.NewReader(br)
		playing := false
		for {
			c, err := br.Peek(1)
			if err != nil {
				return
			}
			if c[0] == '$' {
				h := make([]byte, 4)
				if _, err := io.ReadFull(br, h); err != nil {
					return
				}
				p := make([]byte, binary.BigEndian.Uint16(h[2:]))
				if _, err := io.ReadFull(br, p); err != nil {
					return
				}
				if pkts, err := rtcp.Unmarshal(p); err == nil && h[1] == 1 {
					if rr, ok := pkts[0].(*rtcp.ReceiverReport); ok {
						mu.Lock()
						reps = append(reps, rep{untapSent.Load(), *rr})
						mu.Unlock()
					}
				}
				continue
			}
			line, err := tp.ReadLine()
			if err != nil {
				return
			}
			if line == "" {
				continue
			}
			hdr, err := tp.ReadMIMEHeader()
			if err != nil {
				return
			}
			if strings.HasPrefix(line, "RTSP/1.0") {
				continue // the answer to our OPTIONS
			}
			method := strings.Fields(line)[0]
			head := "RTSP/1.0 200 OK\r\nCSeq: " + hdr.Get("Cseq") + "\r\n"
			var body string
			switch method {
			case "DESCRIBE":
				body = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=cam\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n" +
					"m=video 0 RTP/AVP 96 97\r\na=rtpmap:96 H264/90000\r\n" +
					"a=fmtp:96 packetization-mode=1;sprop-parameter-sets=" +
					base64.StdEncoding.EncodeToString(d.sps) + "," + base64.StdEncoding.EncodeToString(d.pps) + "\r\n" +
					"a=rtpmap:97 x-probe/90000\r\na=control:trackID=0\r\n"
				head += "Content-Base: " + url + "/\r\nContent-Type: application/sdp\r\n"
			case "SETUP":
				head += "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: 4242;timeout=60\r\n"
			case "PLAY":
				head += "Session: 4242\r\n"
			}
			if body != "" {
				head += fmt.Sprintf("Content-Length: %d\r\n", len(body))
			}
			if write([]byte(head+"\r\n"+body)) != nil {
				return
			}
			if method == "PLAY" && !playing {
				playing = true
				go func() {
					enc, err := (&format.H264{PayloadTyp: 96, PacketizationMode: 1}).CreateEncoder()
					if err != nil {
						t.Error(err)
						return
					}
					ssrc := uint32(0x5eed)
					enc.SSRC = &ssrc
					seq := uint16(100)
					begin := time.Now()
					for i := 0; ; i++ {
						select {
						case <-stopc:
							return
						case <-time.After(time.Until(begin.Add(time.Duration(i) * time.Second / 15))):
						}
						if i == 30 { // 2 s in: a head the tap cannot size
							var b strings.Builder
							b.WriteString("OPTIONS " + url + " RTSP/1.0\r\nCSeq: 99\r\n")
							for k := 0; k < 40; k++ {
								fmt.Fprintf(&b, "X-Pad%d: %s\r\n", k, strings.Repeat("a", 2000))
							}
							b.WriteString("\r\n")
							untapSent.Store(true)
							if write([]byte(b.String())) != nil {
								return
							}
						}
						pkts, err := enc.Encode(d.aus[i%len(d.aus)])
						if err != nil {
							t.Error(err)
							return
						}
						if otherPT && i%3 == 0 { // a packet of the other payload type, same source
							pkts = append(pkts, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 97, SSRC: ssrc}, Payload: []byte{0}})
						}
						for _, p := range pkts {
							p.Timestamp = uint32(i * 6000)
							p.SequenceNumber = seq
							seq++
							b, err := p.Marshal()
							if err != nil {
								t.Error(err)
								return
							}
							if write(interleaved(0, b)) != nil {
								return
							}
						}
					}
				}()
			}
		}
	}()
	rec := newRecorder(t)
	defer rec.cams.Close()
	var src *RTSPSource
	rec.record(t, "cam", url, func(c *CameraConfig) { src = c.Source.(*RTSPSource); src.rrPeriod = 200 * time.Millisecond })
	// Until 10 reports came after the untapping request (its frames
	// 2 s in, the reports every 200 ms).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		mu.Lock()
		after := 0
		for _, r := range reps {
			if r.after && len(r.rr.Reports) == 1 {
				after++
			}
		}
		mu.Unlock()
		if after >= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d reports after the tap gave up, in 30 s", after)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var before, after int
	for _, r := range reps {
		if len(r.rr.Reports) == 0 {
			continue
		}
		if r.after {
			after++
		} else {
			before++
		}
	}
	if before == 0 || src.tapped.Load() == 0 {
		t.Fatalf("%d reports before the tap gave up, %d after", before, after)
	}
	for _, r := range reps {
		if len(r.rr.Reports) == 1 && (r.rr.Reports[0].TotalLost != 0 || r.rr.Reports[0].FractionLost != 0) {
			t.Fatalf("loss reported on a lossless TCP stream (after untap %v): %+v", r.after, r.rr.Reports[0])
		}
	}
}
