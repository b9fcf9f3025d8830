package serve

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/mkvcheck"
)

// A consumer that starts GetMedia at SERVER_TIMESTAMP = now on a camera
// nobody watched (its ring dropped its newest once stored) gets live
// fragments only, not the whole archive from its oldest fragment.
func TestGetMediaServerTimestampNowOnUnwatchedCamera(t *testing.T) {
	ts := startServerWith(t, "", func(o *Options) { o.GetMediaIdleTimeout = 500 * time.Millisecond })
	if _, err := ts.eng.CreateStream(engine.CreateStreamInput{Name: "cam", DataRetentionInHours: 1}); err != nil {
		t.Fatal(err)
	}
	c := loadCapture(t, "real-producer-h264-absolute")
	res := putUpload(t, ts, "cam", "ABSOLUTE", "1795579974.135", c, 0)
	if n := len(res.events("PERSISTED")); n == 0 {
		t.Fatal("nothing persisted")
	}
	now := float64(time.Now().Add(30*time.Second).UnixMilli()) / 1000 // after the newest fragment's end
	st, b := getMedia(t, ts, fmt.Sprintf(`{"StreamName":"cam","StartSelector":{"StartSelectorType":"SERVER_TIMESTAMP","StartTimestamp":%.3f}}`, now))
	if st != http.StatusOK {
		t.Fatalf("GetMedia: %d %s", st, b)
	}
	if chunks := mkvcheck.MustParseMedia(t, b); len(chunks) != 0 {
		t.Fatalf("GetMedia from a SERVER_TIMESTAMP after every fragment returned %d stored fragments (of %d persisted); want none (live only)",
			len(chunks), len(res.events("PERSISTED")))
	}
}
