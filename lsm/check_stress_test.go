package lsm

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestCheckMatchesReplayStress runs replay_stress_test.go's
// workload (replayStress), and on each crash image, with or
// without a few random bit flips in the segments after the durable
// checkpoint, compares a read-only Check of the image (which stages what
// replay would index in an indexed batch) with a Check after the real
// read-write Open: the same fragments, media bytes, unreferenced bytes
// and problems; Replayable, ReplayDamaged and ReplayUnreachable equal to
// what Open's replay reports; and the read-only Check wrote nothing
// (a second read-only Check of the same image finds the same).
//
// Seeds: 6; KVSEDGE_CHECK_STRESS_SEEDS=n runs n.
func TestCheckMatchesReplayStress(t *testing.T) {
	seeds := 6
	if s := os.Getenv("KVSEDGE_CHECK_STRESS_SEEDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("KVSEDGE_CHECK_STRESS_SEEDS=%q", s)
		}
		seeds = n
	}
	for seed := 1; seed <= seeds; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { replayStress(t, uint64(seed), (*replayStressRun).verifyCheck) })
	}
}

func problemList(r CheckReport) []string {
	var out []string
	for _, p := range r.Problems {
		out = append(out, fmt.Sprintf("%d %s %s", p.Stream, p.Number, p.What))
	}
	sort.Strings(out)
	return out
}

func (s *replayStressRun) verifyCheck(t *testing.T, i int, img stressImage) {
	t.Helper()
	for _, flips := range []int{0, 1, 3} {
		fs := img.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(1, 1))})
		ro := s.opts(fs)
		ro.ReadOnly = true
		rd, err := Open(ro)
		if err != nil {
			t.Fatalf("image %d: read-only open: %v", i, err)
		}
		cp, cpOK, err := rd.checkpoint(1)
		dir := rd.segs.stream(1).dir
		_ = rd.Close()
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(s.seed, uint64(1000+i*10+flips)))
		var flipped []string
		if flips > 0 && cpOK {
			seqs, _ := (&segmentStore{fs: fs}).list(dir)
			var after []uint64
			for _, q := range seqs {
				if q >= cp.Seq {
					after = append(after, q)
				}
			}
			for range flips {
				if len(after) == 0 {
					break
				}
				q := after[rng.IntN(len(after))]
				p := fs.PathJoin(dir, segmentName(q))
				st, err := fs.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				lo := int64(0)
				if q == cp.Seq {
					lo = int64(cp.Offset)
				}
				if st.Size() <= lo {
					continue
				}
				off := lo + rng.Int64N(st.Size()-lo)
				flipBitAt(t, fs, p, off)
				flipped = append(flipped, fmt.Sprintf("seg %d @%d", q, off))
			}
		}
		check := func(readOnly bool) (CheckReport, ReplayReport) {
			o := s.opts(fs)
			o.ReadOnly = readOnly
			d, err := Open(o)
			if err != nil {
				t.Fatalf("image %d: open (read-only %v): %v", i, readOnly, err)
			}
			defer d.Close()
			r, err := d.Check()
			if err != nil {
				t.Fatalf("image %d: check: %v", i, err)
			}
			return r, d.Replayed()
		}
		before, _ := check(true)
		again, _ := check(true)
		after, rep := check(false)
		ctx := fmt.Sprintf("image %d, flips %v (checkpoint %+v)", i, flipped, cp)
		if before.Fragments != again.Fragments || before.Replayable != again.Replayable {
			t.Errorf("%s: a second read-only Check differs: %+v then %+v", ctx, before, again)
		}
		if before.Fragments != after.Fragments || before.MediaBytes != after.MediaBytes ||
			before.UnreferencedBytes != after.UnreferencedBytes || before.SegmentBytes != after.SegmentBytes {
			t.Errorf("%s: read-only Check %+v, Check after Open's replay %+v: want the same fragments, media, segment and unreferenced bytes", ctx, before, after)
		}
		if before.Replayable != rep.Indexed || before.ReplayDamaged != rep.Damaged || before.ReplayUnreachable != rep.Unreachable {
			t.Errorf("%s: read-only Check counted replayable %d damaged %d unreachable %d; Open replayed %+v", ctx, before.Replayable, before.ReplayDamaged, before.ReplayUnreachable, rep)
		}
		if b, a := strings.Join(problemList(before), "\n"), strings.Join(problemList(after), "\n"); b != a {
			t.Errorf("%s: problems differ:\nread-only Check:\n%s\nafter Open:\n%s", ctx, b, a)
		}
		if flips == 0 {
			t.Logf("%s: %d fragments, %d replayable", ctx, before.Fragments, before.Replayable)
		}
	}
}
