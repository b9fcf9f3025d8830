package serve

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/kvsedge/kvsedge/internal/status"
)

// TestListCameraChanges: /listCameraChanges returns the changes the
// camera hook reports for the stream named (resolved by name or ARN), an
// empty list for a stream without a camera, and ResourceNotFound for a
// stream that does not exist.
func TestListCameraChanges(t *testing.T) {
	at := time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)
	ts := startServerWith(t, "", func(o *Options) {
		o.CameraChanges = func(stream string) []status.CameraChange {
			if stream != "yard" {
				return nil
			}
			return []status.CameraChange{{State: "RECORDING", At: at}, {State: "RETRYING", At: at.Add(time.Minute), Error: "dial tcp: connection refused"}}
		}
	})
	c := ts.client(testSecret)
	for _, name := range []string{"yard", "door"} {
		if _, err := c.CreateStream(context.Background(), &kinesisvideo.CreateStreamInput{StreamName: aws.String(name), DataRetentionInHours: aws.Int32(1)}); err != nil {
			t.Fatal(err)
		}
	}
	get := func(body string) (int, []byte) {
		code, _, out := ts.raw(t, "/listCameraChanges", []byte(body), time.Now(), testSecret)
		return code, out
	}
	code, out := get(`{"StreamName":"yard"}`)
	var r struct {
		StreamName string
		Changes    []status.CameraChange
	}
	if err := json.Unmarshal(out, &r); code != 200 || err != nil {
		t.Fatalf("yard: %d %s (%v)", code, out, err)
	}
	if r.StreamName != "yard" || len(r.Changes) != 2 || r.Changes[1].State != "RETRYING" || !r.Changes[1].At.Equal(at.Add(time.Minute)) ||
		r.Changes[1].Error != "dial tcp: connection refused" {
		t.Fatalf("yard: %s", out)
	}
	code, out = get(`{"StreamName":"door"}`)
	if code != 200 || string(out) != `{"StreamName":"door","Changes":[]}` {
		t.Fatalf("door (no camera): %d %s", code, out)
	}
	if code, out = get(`{"StreamName":"nowhere"}`); code != 404 {
		t.Fatalf("a stream that does not exist: %d %s", code, out)
	}
	if code, out = get(`{}`); code != 400 {
		t.Fatalf("no stream named: %d %s", code, out)
	}
}
