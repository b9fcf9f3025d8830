package e2e

// PutMedia session rules (kvs-api.md §4.1–4.4): the newest connection of a
// stream wins, a deleted stream ends its upload, stream by ARN, another
// TimecodeScale, bad headers, a stream without retention.

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/mkvcheck"
)

// TestPutMediaSessions covers PutMedia session rules: the newest connection
// of a stream wins, a deleted stream ends its upload, and a stream without
// retention is acknowledged without PERSISTED.
func TestPutMediaSessions(t *testing.T) {
	t.Parallel()
	p := startKvsedge(t, mediaEnv(t.TempDir()), "--listen", "127.0.0.1:0")
	ep := p.endpoint
	c := captures[0]
	pb := loadCapture(t, c.file)
	slow := loadChunkPlan(t, c.file, 2, 100*time.Millisecond)

	// startSlow uploads the whole capture at half the real pace in the
	// background and signals after k PERSISTED acks.
	startSlow := func(stream string, k int) (<-chan struct{}, <-chan *putMediaResult) {
		reached := make(chan struct{})
		done := make(chan *putMediaResult, 1)
		count := 0
		go func() {
			done <- putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: c.tcType, Start: c.start, Body: pb.Raw,
				Plan: slow, Until: firstError, AckWait: 10 * time.Second, OnAck: func(a ack) {
					if a.EventType == "PERSISTED" {
						if count++; count == k {
							close(reached)
						}
					}
				}})
		}()
		return reached, done
	}
	waitReached := func(t *testing.T, reached <-chan struct{}, done <-chan *putMediaResult) {
		t.Helper()
		select {
		case <-reached:
		case res := <-done:
			t.Fatalf("upload ended early: status %d %s\n%s", res.Status, res.ErrBody, res.ackLog())
		case <-time.After(30 * time.Second):
			t.Fatal("no PERSISTED acks in 30 s")
		}
	}

	t.Run("NewestConnectionWins", func(t *testing.T) {
		t.Parallel()
		stream := "newest"
		createStream(t, ep, stream)
		reached, doneA := startSlow(stream, 2)
		waitReached(t, reached, doneA)
		// The producer reconnects with a new session while the old socket
		// may still be open (§4.4): accept the newest, end the older.
		bStart := time.Now()
		resB := putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: c.tcType, Start: c.start,
			Body: pb.retimed(t, []int{0, 1, 2}, 100000), Until: persistedAll(3)})
		numsB := checkAcks(t, resB, pb, []int{0, 1, 2}, func(i int) uint64 { return pb.Frags[i].Cluster.Timecode + 100000 })
		var resA *putMediaResult
		select {
		case resA = <-doneA:
		case <-time.After(20 * time.Second):
			t.Fatal("older upload never returned")
		}
		t.Logf("older session:\n%s", resA.ackLog())
		if resA.EndedAt.IsZero() || resA.EndedAt.Sub(bStart) > 5*time.Second {
			t.Errorf("the older PutMedia was not ended within 5 s of the newer one (ended %v after; data finished %v after)",
				resA.EndedAt.Sub(bStart), resA.DataEnd.Sub(bStart))
		}
		// §4.4: never an ERROR ack to an upload only because a newer one
		// exists (the C producer drops the fragment on any ERROR, 4008
		// included): the older one ends silently.
		if errs := resA.events("ERROR"); len(errs) > 0 {
			t.Errorf("the older PutMedia got ERROR %d when a newer one started, want no ERROR ack (§4.4)\n%s", errs[0].ErrorId, resA.ackLog())
		}
		var want []string
		for _, a := range resA.events("PERSISTED") {
			want = append(want, a.FragmentNumber)
		}
		want = append(want, numsB...)
		have := sortedNumbers(listAllRaw(t, ep, stream, 1795579974000-1000, 1795579974000+200000))
		for _, n := range want {
			if !slices.Contains(have, n) {
				t.Errorf("PERSISTED fragment %s not listed (listed %v)", n, have)
			}
		}
	})

	t.Run("StreamDeletedMidUpload", func(t *testing.T) {
		t.Parallel()
		stream := "deleted"
		arn := createStream(t, ep, stream)
		reached, done := startSlow(stream, 2)
		waitReached(t, reached, done)
		delAt := time.Now()
		if status, raw := callJSON(t, ep, "/deleteStream", map[string]any{"StreamARN": arn}, nil); status != 200 {
			t.Fatalf("deleteStream: %d %s", status, raw)
		}
		var res *putMediaResult
		select {
		case res = <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("upload never returned")
		}
		errs := res.events("ERROR")
		switch {
		case len(errs) > 0:
			// 4507 STREAM_DELETED is a PIC enum only (§4.3): KVS sends 4008.
			if id := errs[0].ErrorId; id != 4008 {
				t.Errorf("ERROR %d after the stream was deleted, want 4008 STREAM_NOT_ACTIVE\n%s", id, res.ackLog())
			}
			if d := errs[0].At.Sub(delAt); d > 5*time.Second {
				t.Errorf("ERROR came %v after the delete", d)
			}
		default:
			t.Errorf("no ERROR ack after the stream was deleted mid-upload (ended %v after the delete)\n%s",
				res.EndedAt.Sub(delAt), res.ackLog())
		}
		p.requireRunning(t)
	})

	t.Run("ByARN", func(t *testing.T) {
		t.Parallel()
		arn := createStream(t, ep, "byarn")
		res := putMedia(t, ep, putMediaReq{TimecodeType: c.tcType, Start: c.start, Body: pb.retimed(t, []int{0, 1}, 0),
			ExtraHeaders: map[string]string{"X-Amzn-Stream-Arn": arn}, Until: persistedAll(2)})
		checkAcks(t, res, pb, []int{0, 1}, func(i int) uint64 { return pb.Frags[i].Cluster.Timecode })
	})

	// A TimecodeScale of 2 ms: acks echo the timecodes as sent, producer
	// timestamps scale them.
	t.Run("TimecodeScale2ms", func(t *testing.T) {
		t.Parallel()
		rel := loadCapture(t, captures[1].file)
		hdr := rel.HeaderBytes()
		els, _ := mkvcheck.Walk(hdr)
		scaleOff := -1
		for _, e := range els {
			if e.ID != mkv.IDInfo {
				continue
			}
			kids, err := mkvcheck.Children(e.Data(hdr))
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range kids {
				if k.ID == mkv.IDTimecodeScale && k.End-k.DataOff == 8 {
					scaleOff = e.DataOff + k.DataOff
				}
			}
		}
		if scaleOff < 0 {
			t.Fatal("no 8-byte TimecodeScale in the capture")
		}
		binary.BigEndian.PutUint64(hdr[scaleOff:], 2000000)
		stream := "scale2ms"
		createStream(t, ep, stream)
		res := putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: "RELATIVE", Start: "1795590000.000",
			Body: rel.buildBody(t, hdr, []int{0, 1, 2}, nil), Until: persistedAll(3)})
		nums := checkAcks(t, res, rel, []int{0, 1, 2}, func(i int) uint64 { return rel.Frags[i].Cluster.Timecode })
		listed := listAllRaw(t, ep, stream, 1795590000000-1000, 1795590000000+60000)
		byNum := map[string]fragment{}
		for _, f := range listed {
			byNum[f.FragmentNumber] = f
		}
		for i, n := range nums {
			want := 1795590000000 + 2*int64(rel.Frags[i].Cluster.Timecode)
			if got := secondsToMillis(byNum[n].ProducerTimestamp); got != want {
				t.Errorf("fragment %d (timecode %d × 2 ms): ProducerTimestamp %d ms, want %d", i, rel.Frags[i].Cluster.Timecode, got, want)
			}
			if l := byNum[n].FragmentLengthInMilliseconds; l < 3000 || l > 3700 {
				t.Errorf("fragment %d: FragmentLengthInMilliseconds %d, want ~3600 (1800 units of 2 ms)", i, l)
			}
		}
	})

	t.Run("BadProducerStartTimestamp", func(t *testing.T) {
		t.Parallel()
		stream := "badstart"
		createStream(t, ep, stream)
		res := putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: "RELATIVE", Start: "yesterday",
			Body: pb.HeaderBytes(), AckWait: 5 * time.Second})
		// Headers are validated before the 200 (§4.2): a malformed one is
		// 400 InvalidArgumentException, before any ack could carry 4007
		// (§4.4).
		et := strings.SplitN(res.Header.Get("X-Amzn-Errortype"), ":", 2)[0]
		if res.Status != 400 || et != "InvalidArgumentException" || len(res.Acks) != 0 {
			t.Errorf("x-amzn-producer-start-timestamp: yesterday → status %d %q %s, want 400 InvalidArgumentException before any ack\n%s",
				res.Status, et, res.ErrBody, res.ackLog())
		}
	})

	t.Run("NoRetention", func(t *testing.T) {
		t.Parallel()
		stream := "noretention"
		createStreamRetention(t, ep, stream, 0)
		res := putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: c.tcType, Start: c.start,
			Body: pb.retimed(t, []int{0, 1, 2}, 0), AckWait: 4 * time.Second})
		if res.Status != 200 {
			t.Fatalf("status %d %s", res.Status, res.ErrBody)
		}
		if n := len(res.events("RECEIVED")); n != 3 {
			t.Errorf("%d RECEIVED acks, want 3\n%s", n, res.ackLog())
		}
		if n := len(res.events("PERSISTED")) + len(res.events("ERROR")); n != 0 {
			t.Errorf("PERSISTED or ERROR acks on a stream without retention\n%s", res.ackLog())
		}
	})
}
