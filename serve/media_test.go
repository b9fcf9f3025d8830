package serve

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/internal/mkvcheck"
)

func createMediaStream(t testing.TB, ts *testServer, name string, retention int) {
	t.Helper()
	st, _, b := ts.raw(t, "/createStream", []byte(fmt.Sprintf(`{"StreamName":%q,"DataRetentionInHours":%d}`, name, retention)), time.Now(), testSecret)
	if st != 200 {
		t.Fatalf("create %s: %d %s", name, st, b)
	}
}

func fastMedia(o *Options) {
	o.GetMediaIdleTimeout = 700 * time.Millisecond
}

// TestPutMediaAcksArriveDuringUpload replays the real producer's upload at
// its recorded pace (scaled) and checks the full-duplex ack stream: every
// fragment gets BUFFERING, RECEIVED, PERSISTED in order, with its cluster
// timecode, while the body is still being sent.
func TestPutMediaAcksArriveDuringUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	ts := startServerWith(t, "", fastMedia)
	createMediaStream(t, ts, "cam", 24)
	c := loadCapture(t, "real-producer-h264-absolute")
	want := mkvcheck.MustParseBody(t, c.data).Timecodes()
	res := putUpload(t, ts, "cam", "ABSOLUTE", "1795579974.135", c, 0.2)
	if res.status != 200 {
		t.Fatalf("status %d", res.status)
	}
	if errs := res.events("ERROR"); len(errs) > 0 {
		t.Fatalf("ERROR acks: %+v", errs)
	}
	for _, typ := range []string{"BUFFERING", "RECEIVED", "PERSISTED"} {
		got := res.events(typ)
		if len(got) != len(want) {
			t.Fatalf("%d %s acks, want %d", len(got), typ, len(want))
		}
		prev := ""
		for i, a := range got {
			if a.FragmentTimecode == nil || *a.FragmentTimecode != want[i] {
				t.Fatalf("%s #%d timecode %v, want %d", typ, i, a.FragmentTimecode, want[i])
			}
			if len(a.FragmentNumber) != 32 || a.FragmentNumber <= prev {
				t.Fatalf("%s #%d number %q after %q", typ, i, a.FragmentNumber, prev)
			}
			prev = a.FragmentNumber
		}
	}
	// Order per fragment: BUFFERING < RECEIVED < PERSISTED.
	pos := map[string]int{}
	for i, a := range res.acks {
		if a.EventType == "IDLE" {
			continue
		}
		key := a.EventType + fmt.Sprint(*a.FragmentTimecode)
		pos[key] = i
	}
	for _, tc := range want {
		b, r, p := pos["BUFFERING"+fmt.Sprint(tc)], pos["RECEIVED"+fmt.Sprint(tc)], pos["PERSISTED"+fmt.Sprint(tc)]
		if !(b < r && r < p) {
			t.Fatalf("fragment %d: BUFFERING@%d RECEIVED@%d PERSISTED@%d", tc, b, r, p)
		}
	}
	// Full duplex: the first fragment was PERSISTED long before the body
	// ended (the paced upload takes about 4 s).
	first := res.events("PERSISTED")[0]
	if !first.at.Before(res.bodyDone.Add(-time.Second)) {
		t.Fatalf("first PERSISTED at %v, body done at %v: acks are not flowing during the upload", first.at, res.bodyDone)
	}
}

// TestPutMediaThenGetMedia reads back what was uploaded, from the archive.
func TestPutMediaThenGetMedia(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	ts := startServerWith(t, "", fastMedia)
	createMediaStream(t, ts, "cam", 24)
	c := loadCapture(t, "real-producer-h264-aac-relative")
	res := putUpload(t, ts, "cam", "RELATIVE", "1795580000.500", c, 0)
	persisted := res.events("PERSISTED")
	if len(persisted) != 6 {
		t.Fatalf("%d PERSISTED, want 6: %+v", len(persisted), res.acks)
	}
	st, body := getMedia(t, ts, `{"StreamName":"cam","StartSelector":{"StartSelectorType":"EARLIEST"}}`)
	if st != 200 {
		t.Fatalf("GetMedia %d: %s", st, body)
	}
	chunks := mkvcheck.MustParseMedia(t, body)
	if len(chunks) != 6 {
		t.Fatalf("%d chunks, want 6", len(chunks))
	}
	tcs := mkvcheck.MustParseBody(t, c.data).Timecodes()
	for i, ch := range chunks {
		if err := ch.CheckLayout(); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if ch.FragmentNumber() != persisted[i].FragmentNumber || ch.Tag(mkv.TagContinuationToken) != persisted[i].FragmentNumber {
			t.Fatalf("chunk %d tags %v then %v, want number %s", i, ch.PreTags, ch.PostTags, persisted[i].FragmentNumber)
		}
		wantProducer := fmt.Sprintf("%d.%03d", (1795580000500+int64(tcs[i]))/1000, (1795580000500+int64(tcs[i]))%1000)
		if ch.Tag(mkv.TagProducerTimestamp) != wantProducer {
			t.Fatalf("chunk %d producer timestamp %s, want %s", i, ch.Tag(mkv.TagProducerTimestamp), wantProducer)
		}
		if ch.Tag(mkv.TagServerTimestamp) == "" || ch.Tag(mkv.TagMillisBehindNow) == "" {
			t.Fatalf("chunk %d lacks timestamps: %v then %v", i, ch.PreTags, ch.PostTags)
		}
	}

	// CONTINUATION_TOKEN resumes after the token's fragment.
	st, body = getMedia(t, ts, fmt.Sprintf(`{"StreamName":"cam","StartSelector":{"StartSelectorType":"CONTINUATION_TOKEN","ContinuationToken":%q}}`, persisted[3].FragmentNumber))
	if chunks := mkvcheck.MustParseMedia(t, body); st != 200 || len(chunks) != 2 || chunks[0].FragmentNumber() != persisted[4].FragmentNumber {
		t.Fatalf("continuation: %d, %d chunks", st, len(chunks))
	}
	// PRODUCER_TIMESTAMP: the chunk containing the time.
	at := float64(1795580000500+int64(tcs[2])+500) / 1000
	st, body = getMedia(t, ts, fmt.Sprintf(`{"StreamName":"cam","StartSelector":{"StartSelectorType":"PRODUCER_TIMESTAMP","StartTimestamp":%.3f}}`, at))
	if chunks := mkvcheck.MustParseMedia(t, body); st != 200 || len(chunks) != 4 || chunks[0].FragmentNumber() != persisted[2].FragmentNumber {
		t.Fatalf("producer timestamp: %d, %d chunks", st, len(chunks))
	}

	// GetMediaForFragmentList in the order asked.
	st, _, body = ts.raw(t, "/getMediaForFragmentList", []byte(fmt.Sprintf(`{"StreamName":"cam","Fragments":[%q,%q]}`, persisted[5].FragmentNumber, persisted[1].FragmentNumber)), time.Now(), testSecret)
	if chunks := mkvcheck.MustParseMedia(t, body); st != 200 || len(chunks) != 2 || chunks[0].FragmentNumber() != persisted[5].FragmentNumber ||
		chunks[1].FragmentNumber() != persisted[1].FragmentNumber {
		t.Fatalf("GetMediaForFragmentList: %d %d chunks", st, len(chunks))
	}
	// An unknown fragment is ResourceNotFound.
	st, hdr, _ := ts.raw(t, "/getMediaForFragmentList", []byte(`{"StreamName":"cam","Fragments":["10000000000000000000000000000001"]}`), time.Now(), testSecret)
	if st != 404 || hdr.Get("x-amzn-ErrorType") != "ResourceNotFoundException" {
		t.Fatalf("unknown fragment: %d %s", st, hdr.Get("x-amzn-ErrorType"))
	}
}

// TestPutMediaResentFragmentsAreNotStoredTwice: the real producer re-sends
// every fragment it has no PERSISTED ack for after a reconnect.
func TestPutMediaResentFragmentsAreNotStoredTwice(t *testing.T) {
	ts := startServerWith(t, "", fastMedia)
	createMediaStream(t, ts, "cam", 24)
	c := loadCapture(t, "real-producer-h264-absolute")
	first := putUpload(t, ts, "cam", "ABSOLUTE", "1795579974.135", c, 0).events("PERSISTED")
	second := putUpload(t, ts, "cam", "ABSOLUTE", "1795579974.135", c, 0).events("PERSISTED")
	if len(first) != 11 || len(second) != 11 {
		t.Fatalf("%d and %d PERSISTED", len(first), len(second))
	}
	for i := range first {
		if first[i].FragmentNumber != second[i].FragmentNumber {
			t.Fatalf("re-sent fragment %d acknowledged as %s, stored as %s", i, second[i].FragmentNumber, first[i].FragmentNumber)
		}
	}
	st, _, b := ts.raw(t, "/listFragments", []byte(`{"StreamName":"cam","FragmentSelector":{"FragmentSelectorType":"SERVER_TIMESTAMP","TimestampRange":{"StartTimestamp":0,"EndTimestamp":4000000000}}}`), time.Now(), testSecret)
	if st != 200 || strings.Count(string(b), "FragmentNumber") != 11 {
		t.Fatalf("ListFragments after re-send: %d %s", st, b)
	}
}

// TestLiveReaderGetsEveryFragmentOnce starts GetMedia NOW before the
// producer, and an EARLIEST reader halfway through a second upload.
func TestLiveReaderGetsEveryFragmentOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	ts := startServerWith(t, "", func(o *Options) { o.GetMediaIdleTimeout = 3 * time.Second })
	createMediaStream(t, ts, "cam", 24)
	c := loadCapture(t, "real-producer-h264-absolute")
	body := startGetMedia(t, ts, `{"StreamName":"cam","StartSelector":{"StartSelectorType":"NOW"}}`)
	res := putUpload(t, ts, "cam", "ABSOLUTE", "1795579974.135", c, 0.1)
	live := liveChunks(t, body)
	got := res.events("RECEIVED")
	if len(live) != len(got) {
		t.Fatalf("live reader got %d chunks, %d fragments were received", len(live), len(got))
	}
	for i := range got {
		if live[i].FragmentNumber() != got[i].FragmentNumber {
			t.Fatalf("live chunk %d is %s, want %s", i, live[i].FragmentNumber(), got[i].FragmentNumber)
		}
	}
}

// TestPutMediaRefusals: header and stream errors are HTTP errors before
// any ack; a bad signature is refused like every other call.
func TestPutMediaRefusals(t *testing.T) {
	ts := startServerWith(t, "", fastMedia)
	createMediaStream(t, ts, "cam", 24)
	c := loadCapture(t, "real-producer-h264-aac-relative")
	c.data = c.data[:4096]
	if res := putUpload(t, ts, "nope", "RELATIVE", "1795580000.000", c, 0); res.status != 404 {
		t.Fatalf("unknown stream: %d", res.status)
	}
	if res := putUpload(t, ts, "cam", "SOMETIMES", "1795580000.000", c, 0); res.status != 400 {
		t.Fatalf("bad timecode type: %d", res.status)
	}
	if res := putUpload(t, ts, "cam", "RELATIVE", "yesterday", c, 0); res.status != 400 {
		t.Fatalf("bad start timestamp: %d", res.status)
	}
}

// TestPutMediaErrorKeepsWhatWasStored: an ERROR ack ends the upload and
// loses nothing persisted before it.
func TestPutMediaErrorKeepsWhatWasStored(t *testing.T) {
	ts := startServerWith(t, "", fastMedia)
	createMediaStream(t, ts, "cam", 24)
	c := loadCapture(t, "real-producer-h264-absolute")
	// Corrupt the 4th cluster's timecode so it goes backwards.
	data := append([]byte(nil), c.data...)
	cl := mkvcheck.MustParseBody(t, data).Frags[3].Cluster
	if cl.Timecode == 0 {
		t.Fatal("the 4th cluster's timecode is already 0")
	}
	clear(data[cl.TimecodeOff : cl.TimecodeOff+cl.TimecodeLen])
	c.data, c.sizes = data, nil
	res := putUpload(t, ts, "cam", "ABSOLUTE", "1795579974.135", c, 0)
	errs := res.events("ERROR")
	if len(errs) != 1 || errs[0].ErrorId != 4004 {
		t.Fatalf("acks %+v, want one ERROR 4004", res.acks)
	}
	persisted := res.events("PERSISTED")
	if len(persisted) != 3 {
		t.Fatalf("%d PERSISTED before the error, want 3", len(persisted))
	}
	st, _, b := ts.raw(t, "/listFragments", []byte(`{"StreamName":"cam","FragmentSelector":{"FragmentSelectorType":"SERVER_TIMESTAMP","TimestampRange":{"StartTimestamp":0,"EndTimestamp":4000000000}}}`), time.Now(), testSecret)
	for _, p := range persisted {
		if st != 200 || !strings.Contains(string(b), p.FragmentNumber) {
			t.Fatalf("fragment %s missing after the error: %s", p.FragmentNumber, b)
		}
	}
}

// TestPutMediaRetentionZero: nothing is persisted and no PERSISTED ack is
// sent, but live readers get the fragments (KVS's host buffer).
func TestPutMediaRetentionZero(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	ts := startServerWith(t, "", func(o *Options) { o.GetMediaIdleTimeout = 2 * time.Second })
	createMediaStream(t, ts, "live", 0)
	body := startGetMedia(t, ts, `{"StreamName":"live","StartSelector":{"StartSelectorType":"NOW"}}`)
	res := putUpload(t, ts, "live", "RELATIVE", "1795580000.000", loadCapture(t, "real-producer-h264-aac-relative"), 0)
	chunks := liveChunks(t, body)
	if n := len(res.events("PERSISTED")); n != 0 || len(res.events("RECEIVED")) != 6 {
		t.Fatalf("%d PERSISTED, %d RECEIVED; want 0 and 6", n, len(res.events("RECEIVED")))
	}
	if len(chunks) != 6 {
		t.Fatalf("live reader of a retention-0 stream got %d chunks, want 6", len(chunks))
	}
}

// TestPutMediaEndedByServer: deleting the stream, a newer upload of the
// same stream, and the maximum connection duration each end an upload
// with their ErrorId.
func TestPutMediaEndedByServer(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	ts := startServerWith(t, "", func(o *Options) { o.PutMediaMaxDuration = 3 * time.Second })
	c := loadCapture(t, "real-producer-h264-absolute")

	t.Run("max-duration", func(t *testing.T) {
		createMediaStream(t, ts, "long", 24)
		res := putUpload(t, ts, "long", "ABSOLUTE", "1795579974.135", c, 1) // real pace: 20 s
		errs := res.events("ERROR")
		if len(errs) != 1 || errs[0].ErrorId != 4003 {
			t.Fatalf("acks %+v, want ERROR 4003", errs)
		}
		if len(res.events("PERSISTED")) == 0 {
			t.Fatal("nothing persisted before the limit")
		}
	})
	t.Run("superseded", func(t *testing.T) {
		createMediaStream(t, ts, "twice", 24)
		var first uploadResult
		var wg sync.WaitGroup
		wg.Add(1)
		// The second upload starts once the server has acknowledged
		// something of the first: the first is then the stream's upload.
		acked := make(chan struct{})
		var once sync.Once
		go func() {
			defer wg.Done()
			first = putUploadWatch(t, ts, "twice", "ABSOLUTE", "1795579974.135", c, 0.5, func(gotAck) { once.Do(func() { close(acked) }) })
		}()
		select {
		case <-acked:
		case <-time.After(30 * time.Second):
			t.Fatal("no ack of the first upload within 30 s")
		}
		short := c
		// The first three fragments: cut where the fourth cluster starts.
		short.data, short.sizes = c.data[:mkvcheck.MustParseBody(t, c.data).Frags[3].Off], nil
		second := putUpload(t, ts, "twice", "ABSOLUTE", "1795579974.135", short, 0)
		wg.Wait()
		// The older upload ends at a fragment boundary without an ERROR
		// ack (an ERROR makes a producer drop that fragment:
		// shared/kvs-api.md §4.4), and every fragment it began is
		// PERSISTED.
		if errs := first.events("ERROR"); len(errs) != 0 {
			t.Fatalf("older upload got ERROR acks %+v", errs)
		}
		if len(second.events("ERROR")) != 0 || len(second.events("PERSISTED")) != 3 {
			t.Fatalf("newer upload: %+v", second.acks)
		}
		persisted := map[uint64]string{}
		for _, res := range []uploadResult{first, second} {
			for _, a := range res.events("PERSISTED") {
				if n, ok := persisted[*a.FragmentTimecode]; ok && n != a.FragmentNumber {
					t.Fatalf("timecode %d PERSISTED as %s and as %s", *a.FragmentTimecode, n, a.FragmentNumber)
				}
				persisted[*a.FragmentTimecode] = a.FragmentNumber
			}
			for _, b := range res.events("BUFFERING") {
				if _, ok := persisted[*b.FragmentTimecode]; !ok {
					t.Fatalf("fragment %d was begun and never PERSISTED: %+v", *b.FragmentTimecode, res.acks)
				}
			}
		}
		// The stream holds each of them once.
		listed, _, err := ts.eng.ListFragments(engine.StreamRef{Name: "twice"}, fragment.ByProducerTime, 0, 1<<50, nil, 100)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[int64]bool{}
		for _, m := range listed {
			if seen[m.ProducerMs] {
				t.Fatalf("producer time %d stored twice: %+v", m.ProducerMs, listed)
			}
			seen[m.ProducerMs] = true
		}
		if len(listed) != len(persisted) {
			t.Fatalf("%d fragments stored, %d distinct fragments PERSISTED", len(listed), len(persisted))
		}
	})
}
