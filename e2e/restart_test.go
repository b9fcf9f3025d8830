package e2e

import (
	"strings"
	"testing"
)

// TestRestartKeepsStreams checks that streams, versions and tags survive a
// clean stop and a SIGKILL of the binary on the same data directory.
func TestRestartKeepsStreams(t *testing.T) {
	dir := t.TempDir()
	env := streamEnv(dir)
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0")
	awsCLI(t, p.endpoint, nil, nil, "kinesisvideo", "create-stream", "--stream-name", "kept", "--data-retention-in-hours", "12", "--tags", "a=1,b=2")
	var d describeOut
	awsCLI(t, p.endpoint, nil, &d, "kinesisvideo", "describe-stream", "--stream-name", "kept")
	awsCLI(t, p.endpoint, nil, nil, "kinesisvideo", "update-stream", "--stream-name", "kept", "--current-version", d.StreamInfo.Version, "--media-type", "video/h265")
	awsCLI(t, p.endpoint, nil, &d, "kinesisvideo", "describe-stream", "--stream-name", "kept")
	before := d.StreamInfo
	p.stop(t)

	p = startKvsedge(t, env, "--listen", "127.0.0.1:0")
	awsCLI(t, p.endpoint, nil, &d, "kinesisvideo", "describe-stream", "--stream-name", "kept")
	if d.StreamInfo != before {
		t.Fatalf("after restart:\n%+v\nwant\n%+v", d.StreamInfo, before)
	}
	var tags struct{ Tags map[string]string }
	awsCLI(t, p.endpoint, nil, &tags, "kinesisvideo", "list-tags-for-stream", "--stream-name", "kept")
	if len(tags.Tags) != 2 || tags.Tags["a"] != "1" || tags.Tags["b"] != "2" {
		t.Fatalf("tags after restart: %v", tags.Tags)
	}

	// Every acknowledged change is synced: a SIGKILL right after the
	// response loses nothing.
	awsCLI(t, p.endpoint, nil, nil, "kinesisvideo", "tag-stream", "--stream-name", "kept", "--tags", "c=3")
	awsCLI(t, p.endpoint, nil, nil, "kinesisvideo", "create-stream", "--stream-name", "second")
	p.kill()

	p = startKvsedge(t, env, "--listen", "127.0.0.1:0")
	tags.Tags = nil
	awsCLI(t, p.endpoint, nil, &tags, "kinesisvideo", "list-tags-for-stream", "--stream-name", "kept")
	if len(tags.Tags) != 3 || tags.Tags["c"] != "3" {
		t.Fatalf("tag lost by SIGKILL: %v", tags.Tags)
	}
	var l struct {
		StreamInfoList []struct{ StreamName, StreamARN string }
	}
	awsCLI(t, p.endpoint, nil, &l, "kinesisvideo", "list-streams")
	if len(l.StreamInfoList) != 2 {
		t.Fatalf("streams after SIGKILL: %+v", l)
	}
	// A stream created after the restart gets a fresh internal id: deleting
	// and recreating does not resurrect anything of the old stream.
	awsCLI(t, p.endpoint, nil, nil, "kinesisvideo", "delete-stream", "--stream-arn", l.StreamInfoList[1].StreamARN)
	awsCLI(t, p.endpoint, nil, nil, "kinesisvideo", "create-stream", "--stream-name", "second")
	tags.Tags = nil // json.Unmarshal merges into an existing map
	awsCLI(t, p.endpoint, nil, &tags, "kinesisvideo", "list-tags-for-stream", "--stream-name", "second")
	if len(tags.Tags) != 0 {
		t.Fatalf("recreated stream has old tags: %v", tags.Tags)
	}
	if !strings.Contains(p.logs.String(), "stream registry loaded") {
		t.Fatalf("no registry load logged:\n%s", p.logs.String())
	}
}
