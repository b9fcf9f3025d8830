package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/kvsedge/kvsedge/cluster"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/status"
	"github.com/kvsedge/kvsedge/producer"
)

// liveProducer uploads a live Matroska stream with producer.Producer: a
// fragment of fragDur (frames of frameBytes, 20 fps) handed to the
// producer in real time, absolute timecodes; it records when each fragment
// was handed over and each PERSISTED ack.
type liveProducer struct {
	mu        sync.Mutex
	sent      map[uint64]time.Time // fragment timecode → handed over
	persisted map[uint64]string    // fragment timecode → number
	latency   []time.Duration      // handed over → PERSISTED
	errs      map[int]int          // ERROR acks by id
	done      chan struct{}
}

func startLiveProducer(ctx context.Context, tb testing.TB, endpoint, stream string, fragDur time.Duration, frameBytes int) *liveProducer {
	tb.Helper()
	hdr, err := mkv.BuildHeader([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: mkv.CodecH264,
		CodecPrivate: []byte{1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 4, 0x68, 0xee, 0x3c, 0x80}, Width: 1280, Height: 720}})
	if err != nil {
		tb.Fatal(err)
	}
	lp := &liveProducer{sent: map[uint64]time.Time{}, persisted: map[uint64]string{}, errs: map[int]int{}, done: make(chan struct{})}
	pr, pw := io.Pipe()
	go func() {
		defer pw.Close()
		if _, err := pw.Write(hdr.Raw); err != nil {
			return
		}
		frame := make([]byte, frameBytes)
		const frameMs = 50
		frames := max(1, int(fragDur.Milliseconds()/frameMs))
		next := time.Now()
		for k := uint64(0); ctx.Err() == nil; k++ {
			var b mkv.FragmentBuilder
			tc := time.Now().UnixMilli()
			if err := b.Start(hdr, tc, frames*(frameBytes+32)); err != nil {
				return
			}
			for i := range frames {
				for j := 0; j+8 <= len(frame); j += 64 {
					binary.BigEndian.PutUint64(frame[j:], k<<32|uint64(i)<<16|uint64(j))
				}
				if err := b.AddBlock(0, tc+int64(i)*frameMs, i == 0, frame); err != nil {
					return
				}
			}
			f, err := b.Finish()
			if err != nil {
				return
			}
			next = next.Add(fragDur)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(next)):
			}
			lp.mu.Lock()
			lp.sent[uint64(tc)] = time.Now()
			lp.mu.Unlock()
			if _, err := pw.Write(f.Buf); err != nil {
				return
			}
		}
	}()
	p, err := producer.New(producer.Config{Endpoint: endpoint, StreamName: stream, Region: "us-west-2",
		Credentials: credentials.NewStaticCredentialsProvider(e2eAKID, e2eSecret, ""), MaxAttempts: 3})
	if err != nil {
		tb.Fatal(err)
	}
	go func() {
		defer close(lp.done)
		_, _ = p.Put(ctx, pr, producer.Options{OnAck: func(a producer.Ack) {
			lp.mu.Lock()
			defer lp.mu.Unlock()
			switch a.EventType {
			case "PERSISTED":
				if _, dup := lp.persisted[a.FragmentTimecode]; !dup {
					if at, ok := lp.sent[a.FragmentTimecode]; ok {
						lp.latency = append(lp.latency, time.Since(at))
					}
				}
				lp.persisted[a.FragmentTimecode] = a.FragmentNumber
			case "ERROR":
				lp.errs[a.ErrorId]++
			}
		}})
		pr.CloseWithError(io.ErrClosedPipe)
	}()
	return lp
}

// acked returns the fragment numbers acknowledged PERSISTED, sorted.
func (lp *liveProducer) acked() []string {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	var out []string
	for _, n := range lp.persisted {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// replOn is the replication state of stream on a box.
func replOn(t testing.TB, endpoint, stream string) status.StreamReplication {
	t.Helper()
	var st struct{ Streams []status.StreamReplication }
	if code, raw := callJSON(t, endpoint, "/describeReplication", map[string]any{}, &st); code != 200 {
		t.Fatalf("describeReplication: %d %s", code, raw)
	}
	for _, s := range st.Streams {
		if s.Stream == stream {
			return s
		}
	}
	return status.StreamReplication{}
}

// homedOn returns a stream name with prefix whose home (and replica,
// when replica is not empty) among the boxes named in boxes is home,
// as the cluster places it (cluster.Rank: rendezvous hashing).
func homedOn(t testing.TB, prefix string, boxes []string, home, replica string) string {
	t.Helper()
	var ms []status.Member
	for _, b := range boxes {
		ms = append(ms, status.Member{Name: b})
	}
	for i := range 1000 {
		name := fmt.Sprintf("%s-%d", prefix, i)
		pl := cluster.Rank(name, ms, 2)
		if pl[0].Name == home && (replica == "" || pl[1].Name == replica) {
			return name
		}
	}
	t.Fatalf("no stream name homed on %s", home)
	return ""
}

func dataDirOf(t *testing.T, b *clusterBox) string {
	t.Helper()
	for _, e := range b.env {
		if v, ok := strings.CutPrefix(e, "KVSEDGE_DATA_DIR="); ok {
			return v
		}
	}
	t.Fatalf("%s has no data directory", b.name)
	return ""
}

// slowLink forwards TCP connections to target, delivering what target
// sends back delay late; what is still on its way when target's side
// ends is dropped (a box that dies takes its unsent bytes with it).
func slowLink(t *testing.T, target string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	type chunk struct {
		b  []byte
		at time.Time
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(u, c); _ = u.(*net.TCPConn).CloseWrite() }()
				q, dead := make(chan chunk, 4096), make(chan struct{})
				go func() {
					defer close(dead)
					for {
						buf := make([]byte, 32<<10)
						n, err := u.Read(buf)
						if n > 0 {
							q <- chunk{buf[:n], time.Now().Add(delay)}
						}
						if err != nil {
							return
						}
					}
				}()
				for {
					var ck chunk
					select {
					case ck = <-q:
					case <-dead:
						return
					}
					select {
					case <-time.After(time.Until(ck.at)):
					case <-dead:
						return
					}
					if _, err := c.Write(ck.b); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestClusterDiskDeath: three boxes, eight cameras spread over them; the
// home of camera "cam" also takes two PutMedia uploads, one stream with
// replicated durability and one with local. While all record, the home's
// data directory is removed and the process SIGKILLed; every camera then
// records on a survivor. Every fragment acknowledged PERSISTED on the
// replicated stream is listed and readable on the survivors (zero lost);
// for the local stream the test reports how many acknowledged fragments
// the survivors lack (acks sent before the replica had them). Then the
// third box dies too: the lone survivor acknowledges uploads on its own
// durability, without an ERROR, and says so (/readyz, /metrics,
// describeReplication, the log); when the third box returns, acks wait
// for it again.
func TestClusterDiskDeath(t *testing.T) {
	ctx, stopCamera := context.WithCancel(context.Background())
	defer stopCamera()
	// Peers reach each box's API through a link that delivers what the
	// box sends 300 ms late (and drops it if the box dies first): a
	// replica has a fragment well after its home, so a local ack goes
	// out before the replica holds the fragment.
	// Eight cameras in all, homed across the three boxes.
	nw := clusterNet{cameras: []string{"cam2", "cam3", "cam4", "cam5", "cam6", "cam7", "cam8"}}
	cams := append([]string{"cam"}, nw.cameras...)
	for range 3 {
		g, l := freeAddr(t), freeAddr(t)
		nw.gossip, nw.advertise, nw.listen = append(nw.gossip, g), append(nw.advertise, g), append(nw.listen, l)
		nw.endpoint = append(nw.endpoint, "http://"+slowLink(t, l, 300*time.Millisecond))
	}
	boxes := startCameraCluster(t, ctx, 3, nw)
	home, replica, other := roles(t, boxes, boxes[0])
	names := []string{home.name, replica.name, other.name}
	durable := homedOn(t, "durable", names, home.name, replica.name)
	local := homedOn(t, "local", names, home.name, replica.name)
	modes := map[string]string{durable: cluster.DurabilityReplicated, local: cluster.DurabilityLocal}
	for stream, mode := range modes {
		if code, raw := callJSON(t, home.api(), "/createStream", map[string]any{"StreamName": stream, "DataRetentionInHours": 2,
			"Tags": map[string]string{cluster.TagDurability: mode}}, nil); code != 200 {
			t.Fatalf("createStream %s: %d %s", stream, code, raw)
		}
	}
	within(t, "the replica holds both streams", 20*time.Second, func() bool {
		return replOn(t, replica.api(), durable).Holds && replOn(t, replica.api(), local).Holds
	})
	within(t, "the home records cam", 30*time.Second, func() bool {
		st, n := cameraState(t, home.api(), "cam")
		return st == "RECORDING" && n >= 1
	})
	within(t, "every camera records on some box", 30*time.Second, func() bool {
	next:
		for _, c := range cams {
			for _, b := range boxes {
				if st, _ := cameraState(t, b.api(), c); st == "RECORDING" {
					continue next
				}
			}
			return false
		}
		return true
	})

	pctx, stopProducers := context.WithCancel(context.Background())
	defer stopProducers()
	// Fragments of 250 ms: the kill is likelier to fall between a local
	// ack and the replica's copy.
	prods := map[string]*liveProducer{}
	for _, s := range []string{durable, local} {
		prods[s] = startLiveProducer(pctx, t, home.api(), s, 250*time.Millisecond, 16<<10)
	}
	ackDeadline := time.Now().Add(30 * time.Second)
	for len(prods[durable].acked()) < 20 || len(prods[local].acked()) < 20 {
		if time.Now().After(ackDeadline) {
			prods[durable].mu.Lock()
			errs := fmt.Sprint(prods[durable].errs)
			prods[durable].mu.Unlock()
			t.Fatalf("acks on %s: %d, on %s: %d (ERROR acks %s); the home's state: %+v\n%s", durable, len(prods[durable].acked()),
				local, len(prods[local].acked()), errs, replOn(t, home.api(), durable), home.p.logs.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	sr := replOn(t, home.api(), durable)
	if sr.Durability != cluster.DurabilityReplicated || sr.AcksReplicated == 0 || sr.AcksFallback != 0 || sr.LocalAcksSince != "" {
		t.Fatalf("the home's durability state of %s before the kill: %+v", durable, sr)
	}
	if sl := replOn(t, home.api(), local); sl.Durability != cluster.DurabilityLocal || sl.AcksLocal == 0 {
		t.Fatalf("the home's durability state of %s before the kill: %+v", local, sl)
	}
	if st, _ := cameraState(t, home.api(), "cam"); st != "RECORDING" {
		t.Fatalf("cam is %s on its home before the kill", st)
	}
	metrics := getText(t, home.api()+"/metrics")
	if v := textMetric(metrics, `kvsedge_durability_acks_total{durability="replicated",stream="`+durable+`"}`); v < 1 {
		t.Fatalf("replicated acks metric of %s: %v\n%s", durable, v, grepLines(metrics, "kvsedge_durability"))
	}
	if v := textMetric(metrics, `kvsedge_durability_local_only{stream="`+durable+`"}`); v != 0 {
		t.Fatalf("local-only metric of %s: %v", durable, v)
	}

	// The disk dies: the data directory goes, then the process.
	if err := os.RemoveAll(dataDirOf(t, home)); err != nil {
		t.Fatal(err)
	}
	home.p.kill()
	killedAt := time.Now()
	stopProducers()
	for _, lp := range prods {
		<-lp.done
	}

	// What the replica lists right away: it had every replicated ack's
	// fragment on its disk before the ack went.
	for _, s := range []string{durable, local} {
		acked := prods[s].acked()
		onReplica := fragmentSet(t, replica.api(), s)
		var lost []string
		for _, n := range acked {
			if _, ok := slices.BinarySearch(onReplica, n); !ok {
				lost = append(lost, n)
			}
		}
		lp := prods[s]
		lp.mu.Lock()
		errs := fmt.Sprint(lp.errs)
		lp.mu.Unlock()
		t.Logf("%s (%s durability): %d fragments acknowledged PERSISTED, %d of them not on the survivors; ERROR acks %s",
			s, modes[s], len(acked), len(lost), errs)
		if s == durable {
			if len(lost) > 0 {
				t.Fatalf("%d fragments acknowledged PERSISTED with replicated durability are lost: %v", len(lost), lost)
			}
			chunks := getFragmentList(t, replica.api(), s, acked)
			if len(chunks) != len(acked) {
				t.Fatalf("the replica reads %d of the %d acknowledged fragments", len(chunks), len(acked))
			}
			for i, c := range chunks {
				if c.FragmentNumber() != acked[i] {
					t.Fatalf("fragment %d read back is %s, want %s", i, c.FragmentNumber(), acked[i])
				}
			}
			// The third box lists them too (it forwards or copies).
			within(t, "the third box lists the acknowledged fragments", 20*time.Second, func() bool {
				_, ok := subset(acked, fragmentSet(t, other.api(), s))
				return ok
			})
		}
	}
	within(t, "every camera records on a survivor", 30*time.Second, func() bool {
	next:
		for _, c := range cams {
			for _, b := range []*clusterBox{replica, other} {
				if st, _ := cameraState(t, b.api(), c); st == "RECORDING" {
					continue next
				}
			}
			return false
		}
		return true
	})
	t.Logf("all %d cameras record on the survivors %v after the kill", len(cams), time.Since(killedAt).Round(100*time.Millisecond))

	// The third box dies too: the replica, alone, has no replica of its
	// own. Uploads to it are acknowledged on its durability alone, at once
	// and without an ERROR, and it says so: /readyz alarm, /metrics,
	// kvsedge replication (describeReplication).
	other.p.kill()
	within(t, "the replica sees itself alone", 15*time.Second, func() bool { return aliveMembers(t, replica.api()) == 1 })
	p2ctx, stop2 := context.WithCancel(context.Background())
	defer stop2()
	lp := startLiveProducer(p2ctx, t, replica.api(), durable, 250*time.Millisecond, 16<<10)
	within(t, "local acks on the lone box", 15*time.Second, func() bool { return len(lp.acked()) >= 4 })
	sr = replOn(t, replica.api(), durable)
	if sr.LocalAcksSince == "" || !strings.Contains(sr.LocalAcksWhy, "no replica") || sr.AcksFallback == 0 {
		t.Fatalf("the lone box's durability state of %s: %+v", durable, sr)
	}
	var ready struct{ Alarms map[string]string }
	code, raw := getJSON(t, replica.api()+"/readyz")
	if err := json.Unmarshal([]byte(raw), &ready); err != nil || !strings.Contains(ready.Alarms["durability"], durable) {
		t.Fatalf("/readyz (%d) has no durability alarm for %s: %s", code, durable, raw)
	}
	metrics = getText(t, replica.api()+"/metrics")
	if v := textMetric(metrics, `kvsedge_durability_local_only{stream="`+durable+`"}`); v != 1 {
		t.Fatalf("local-only metric of %s on the lone box: %v\n%s", durable, v, grepLines(metrics, "kvsedge_durability"))
	}
	if !strings.Contains(replica.p.logs.String(), "PERSISTED acks fall back to local durability") {
		t.Fatal("the fallback is not in the log")
	}

	// The third box returns: it copies the stream, confirms the newest
	// fragment, and acks wait for a replica again.
	other.start(t)
	within(t, "replicated acks again", 40*time.Second, func() bool { return replOn(t, replica.api(), durable).LocalAcksSince == "" })
	before := replOn(t, replica.api(), durable).AcksReplicated
	within(t, "acks confirmed by the returned box", 15*time.Second, func() bool { return replOn(t, replica.api(), durable).AcksReplicated >= before+3 })
	var ready2 struct{ Alarms map[string]string }
	if _, raw := getJSON(t, replica.api()+"/readyz"); json.Unmarshal([]byte(raw), &ready2) != nil || ready2.Alarms["durability"] != "" {
		t.Fatalf("/readyz still has a durability alarm: %s", raw)
	}
	stop2()
	<-lp.done
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if len(lp.errs) > 0 {
		t.Fatalf("ERROR acks during the fallback and the recovery: %v", lp.errs)
	}
}
