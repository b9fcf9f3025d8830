package ingest

import (
	"context"
	"io"
	"math/rand"
	"os"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/rtsptest"
	"github.com/pion/rtp"
)

// TestBadCameraInput: garbage RTP, an SPS that does not parse, a stream
// without key frames and absurd timestamps, recorded next to a healthy
// camera: nothing crashes, the healthy camera records normally, and
// whatever the bad ones record is valid.
func TestBadCameraInput(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	t.Parallel()
	d := loadDemo(t)
	rl := rtsptest.StartRelay(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	good := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: d.sps, PPS: d.pps}
	encode := func(f *format.H264, au [][]byte, ts uint32) []*rtp.Packet {
		enc, err := f.CreateEncoder()
		if err != nil {
			t.Error(err)
			return nil
		}
		pkts, err := enc.Encode(au)
		if err != nil {
			return nil
		}
		for _, p := range pkts {
			p.Timestamp = ts
		}
		return pkts
	}
	rng := rand.New(rand.NewSource(1))
	jumpRng := rand.New(rand.NewSource(2)) // each publisher goroutine has its own
	go rtsptest.PublishRaw(ctx, t, rl.URL("garbage"), good, 30, func(i int) []*rtp.Packet {
		payload := make([]byte, 1+rng.Intn(1400))
		rng.Read(payload)
		return []*rtp.Packet{{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: uint32(i * 3000), Marker: rng.Intn(2) == 0}, Payload: payload}}
	})
	badSPS := []byte{0x67, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01}
	go rtsptest.PublishRaw(ctx, t, rl.URL("badsps"), &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: badSPS, PPS: d.pps}, 15, func(i int) []*rtp.Packet {
		au := d.aus[i%len(d.aus)]
		if d.keys[i%len(d.aus)] {
			au = append([][]byte{badSPS}, au...)
		}
		return encode(good, au, uint32(i*6000))
	})
	go rtsptest.PublishRaw(ctx, t, rl.URL("nokeys"), good, 15, func(i int) []*rtp.Packet {
		return encode(good, d.aus[1+i%10], uint32(i*6000)) // never an IDR
	})
	go rtsptest.PublishRaw(ctx, t, rl.URL("jumpy"), good, 15, func(i int) []*rtp.Packet {
		ts := uint32(i * 6000)
		if i%7 == 3 {
			ts = jumpRng.Uint32() // the camera's clock jumps anywhere
		}
		return encode(good, d.aus[i%len(d.aus)], ts)
	})
	go publishDemo(ctx, t, rl.URL("healthy"), 0)
	names := []string{"garbage", "badsps", "nokeys", "jumpy", "healthy"}
	for _, name := range names {
		rl.WaitPublished(t, name, 20*time.Second)
	}
	rec := newRecorder(t)
	for _, name := range names {
		rec.record(t, name, rl.URL(name), nil)
	}
	waitFragments(t, rec, "healthy", 4, 20*time.Second)
	if st := rec.state("healthy"); st.State != StateRecording || st.Reconnects != 0 {
		t.Fatalf("healthy camera disturbed: %+v", st)
	}
	if n := len(rec.fragments(t, "nokeys")); n != 0 {
		t.Errorf("nokeys: %d fragments recorded from a stream without a key frame", n)
	}
	if st := rec.state("nokeys"); st.LastError == "" {
		t.Errorf("a stream without key frames is not reported: %+v", st)
	}
	// Random payloads can look like NAL units (even IDR slices): whatever
	// was recorded is still well-formed Matroska that the PutMedia reader
	// accepts, with increasing fragment timecodes.
	for _, name := range []string{"garbage", "badsps", "jumpy"} {
		f, err := os.Open(rec.dump(t, name))
		if err != nil {
			t.Fatal(err)
		}
		rd := mkv.NewReader(f, mkv.Options{})
		for {
			ev, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: recorded media does not parse: %v", name, err)
			}
			if ev == mkv.EventFragmentEnd {
				rd.TakeFragment()
			}
		}
		f.Close()
	}
	// What the jumpy camera recorded has increasing, sane timecodes.
	frags := rec.fragments(t, "jumpy")
	now := time.Now().UnixMilli()
	for i, f := range frags {
		if f.ProducerMs < now-time.Hour.Milliseconds() || f.ProducerMs > now+time.Hour.Milliseconds() {
			t.Errorf("jumpy fragment %d at an absurd time %d", i, f.ProducerMs)
		}
		if i > 0 && f.ProducerMs <= frags[i-1].ProducerMs {
			t.Errorf("jumpy fragment %d not after the previous one", i)
		}
	}
	t.Logf("states: %+v", rec.cams.States())
}
