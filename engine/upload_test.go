package engine

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// TestUploadProgressAndDeletion: the upload progress is stored; deleting
// after upload removes only fragments before the persisted one, never
// past it, and not under a hold; retention deleting fragments the
// upstream has not persisted is counted.
func TestUploadProgressAndDeletion(t *testing.T) {
	clock := &movingClock{t: time.UnixMilli(1_700_000_000_000)}
	free := uint64(1 << 30)
	_, e := openCapacity(t, vfs.NewMem(), clock, &free, StrategyDeleteOldest)
	frags := captureFragments(t)
	ref := StreamRef{Name: "cam"}
	if _, err := e.CreateStream(CreateStreamInput{Name: "cam", DataRetentionInHours: 1}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		ingest(t, e, "cam", frags, int64(i)*100_000)
		clock.add(time.Minute)
	}
	numbers := func() []fragment.Number {
		var out []fragment.Number
		_ = e.FragmentNumbers(ref, fragment.Number{}, func(n fragment.Number) bool { out = append(out, n); return true })
		return out
	}
	all := numbers()
	if p, err := e.UploadProgress(ref); err != nil || !p.IsZero() {
		t.Fatalf("progress before any upload: %v %v", p, err)
	}
	mid := all[len(all)/2]
	if err := e.SetUploadProgress(ref, mid); err != nil {
		t.Fatal(err)
	}
	if p, _ := e.UploadProgress(ref); p != mid {
		t.Fatalf("progress %v, want %v", p, mid)
	}
	if m, ok, err := e.OldestStoredAfter(ref, mid); err != nil || !ok || m.Number != all[len(all)/2+1] || m.ServerMs == 0 {
		t.Fatalf("oldest after the progress: %v %v %+v", ok, err, m)
	}
	if _, ok, err := e.OldestStoredAfter(ref, all[len(all)-1]); err != nil || ok {
		t.Fatalf("oldest after the newest: %v %v", ok, err)
	}
	// A hold wins.
	if err := e.TagStream(ref, map[string]string{TagHold: "true"}); err != nil {
		t.Fatal(err)
	}
	if n, err := e.DeleteUploaded(ref, mid); err != nil || n != 0 {
		t.Fatalf("deleted %d under a hold (%v)", n, err)
	}
	if err := e.UntagStream(ref, []string{TagHold}); err != nil {
		t.Fatal(err)
	}
	n, err := e.DeleteUploaded(ref, mid)
	if err != nil || n == 0 {
		t.Fatalf("DeleteUploaded: %d, %v", n, err)
	}
	left := numbers()
	if len(left) != len(all)-n || left[0].Compare(mid) > 0 {
		t.Fatalf("after deleting what was uploaded the oldest left is %v (progress %v), %d left of %d", left[0], mid, len(left), len(all))
	}
	for _, a := range all {
		if a.Compare(mid) >= 0 && !contains(left, a) {
			t.Fatalf("fragment %v, not before the upload progress, was deleted", a)
		}
	}
	// Retention now deletes everything: what is after the progress was
	// never uploaded and is counted.
	clock.add(3 * time.Hour)
	e.SweepRetention()
	after := 0
	for _, a := range left {
		if a.Compare(mid) > 0 {
			after++
		}
	}
	if got, want := e.LostBeforeUpload()["cam"], uint64(after); got != want || want == 0 {
		t.Fatalf("lost before upload: %d, want %d", got, want)
	}
}

func contains(ns []fragment.Number, n fragment.Number) bool {
	for _, x := range ns {
		if x == n {
			return true
		}
	}
	return false
}
