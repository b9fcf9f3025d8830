package e2e

import (
	"strings"
	"testing"
)

// streamEnv configures a server on a random loopback port with one key pair
// and the data in dir.
func streamEnv(dir string) []string {
	return []string{
		"KVSEDGE_ACCESS_KEY_ID=" + e2eAKID,
		"KVSEDGE_SECRET_ACCESS_KEY=" + e2eSecret,
		"KVSEDGE_DATA_DIR=" + dir,
		"KVSEDGE_REGION=us-west-2",
		"KVSEDGE_ACCOUNT_ID=111122223333",
		"KVSEDGE_DEMO=false", // tests count streams; TestDemoCamera turns it on
		// A test machine's disk may be nearly full: keep the capacity
		// controller from deleting test data (the disk-full test sets its own).
		"KVSEDGE_STORAGE__MIN_FREE_MIB=8",
	}
}

type describeOut struct {
	StreamInfo struct {
		StreamName, StreamARN, Status, Version, MediaType, DeviceName string
		DataRetentionInHours                                          int
		CreationTime                                                  float64
	}
}

// TestAWSCLITour drives the installed aws CLI through the control plane:
// create → describe → list → update → tag → retention → delete.
func TestAWSCLITour(t *testing.T) {
	p := startKvsedge(t, streamEnv(t.TempDir()), "--listen", "127.0.0.1:0")
	ep := p.endpoint

	var created struct{ StreamARN string }
	awsCLI(t, ep, nil, &created, "kinesisvideo", "create-stream", "--stream-name", "porch",
		"--data-retention-in-hours", "24", "--media-type", "video/h264", "--tags", "site=home")
	if !strings.HasPrefix(created.StreamARN, "arn:aws:kinesisvideo:us-west-2:111122223333:stream/porch/") {
		t.Fatalf("ARN %q", created.StreamARN)
	}

	var d describeOut
	awsCLI(t, ep, nil, &d, "kinesisvideo", "describe-stream", "--stream-name", "porch")
	if d.StreamInfo.StreamARN != created.StreamARN || d.StreamInfo.Status != "ACTIVE" || d.StreamInfo.DataRetentionInHours != 24 || d.StreamInfo.CreationTime < 1.7e9 {
		t.Fatalf("describe: %+v", d.StreamInfo)
	}

	var l struct{ StreamInfoList []struct{ StreamName string } }
	awsCLI(t, ep, nil, &l, "kinesisvideo", "list-streams")
	if len(l.StreamInfoList) != 1 || l.StreamInfoList[0].StreamName != "porch" {
		t.Fatalf("list: %+v", l)
	}

	awsCLI(t, ep, nil, nil, "kinesisvideo", "update-stream", "--stream-name", "porch",
		"--current-version", d.StreamInfo.Version, "--device-name", "cam-porch")
	awsCLI(t, ep, nil, nil, "kinesisvideo", "tag-stream", "--stream-name", "porch", "--tags", "owner=me,room=hall")
	var tags struct{ Tags map[string]string }
	awsCLI(t, ep, nil, &tags, "kinesisvideo", "list-tags-for-stream", "--stream-name", "porch")
	if tags.Tags["site"] != "home" || tags.Tags["owner"] != "me" || tags.Tags["room"] != "hall" || len(tags.Tags) != 3 {
		t.Fatalf("tags: %v", tags.Tags)
	}

	awsCLI(t, ep, nil, &d, "kinesisvideo", "describe-stream", "--stream-arn", created.StreamARN)
	if d.StreamInfo.DeviceName != "cam-porch" {
		t.Fatalf("device after update: %+v", d.StreamInfo)
	}
	awsCLI(t, ep, nil, nil, "kinesisvideo", "update-data-retention", "--stream-name", "porch",
		"--current-version", d.StreamInfo.Version, "--operation", "INCREASE_DATA_RETENTION", "--data-retention-change-in-hours", "48")
	awsCLI(t, ep, nil, &d, "kinesisvideo", "describe-stream", "--stream-name", "porch")
	if d.StreamInfo.DataRetentionInHours != 72 {
		t.Fatalf("retention: %d", d.StreamInfo.DataRetentionInHours)
	}

	var de struct{ DataEndpoint string }
	awsCLI(t, ep, nil, &de, "kinesisvideo", "get-data-endpoint", "--stream-name", "porch", "--api-name", "GET_MEDIA")
	if de.DataEndpoint != ep {
		t.Fatalf("data endpoint %q, want %q", de.DataEndpoint, ep)
	}

	// The CLI reports our errors by their KVS names.
	_, stderr, err := awsCLIRaw(t, ep, nil, "kinesisvideo", "describe-stream", "--stream-name", "nope")
	if err == nil || !strings.Contains(stderr, "ResourceNotFoundException") {
		t.Fatalf("describe unknown: %v %s", err, stderr)
	}
	_, stderr, err = awsCLIRaw(t, ep, []string{"AWS_SECRET_ACCESS_KEY=wrong"}, "kinesisvideo", "list-streams")
	if err == nil || !strings.Contains(stderr, "InvalidSignatureException") {
		t.Fatalf("wrong secret: %v %s", err, stderr)
	}

	awsCLI(t, ep, nil, nil, "kinesisvideo", "delete-stream", "--stream-arn", created.StreamARN)
	awsCLI(t, ep, nil, &l, "kinesisvideo", "list-streams")
	if len(l.StreamInfoList) != 0 {
		t.Fatalf("list after delete: %+v", l)
	}
}

// TestCLIPaginationAcrossPages checks the CLI's auto-pagination over our
// NextTokens (it aborts on a repeated token).
func TestCLIPaginationAcrossPages(t *testing.T) {
	p := startKvsedge(t, streamEnv(t.TempDir()), "--listen", "127.0.0.1:0")
	for _, n := range []string{"a1", "a2", "a3", "a4", "a5", "b1"} {
		awsCLI(t, p.endpoint, nil, nil, "kinesisvideo", "create-stream", "--stream-name", n)
	}
	var l struct{ StreamInfoList []struct{ StreamName string } }
	awsCLI(t, p.endpoint, nil, &l, "kinesisvideo", "list-streams", "--page-size", "2",
		"--stream-name-condition", "ComparisonOperator=BEGINS_WITH,ComparisonValue=a")
	var names []string
	for _, s := range l.StreamInfoList {
		names = append(names, s.StreamName)
	}
	if strings.Join(names, ",") != "a1,a2,a3,a4,a5" {
		t.Fatalf("paginated list: %v", names)
	}
}
