package e2e

import (
	"maps"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
)

// describedStream is what DescribeStream says of a stream, comparable.
type describedStream struct {
	Name, ARN, Status, Version, MediaType, DeviceName string
	RetentionHours                                    int32
	CreationUnixNano                                  int64
}

func describeStream(t *testing.T, c *sdkClients, name string) describedStream {
	t.Helper()
	out, err := c.KV.DescribeStream(sdkCtx(t), &kinesisvideo.DescribeStreamInput{StreamName: aws.String(name)})
	if err != nil {
		t.Fatalf("DescribeStream %s: %v", name, err)
	}
	si := out.StreamInfo
	d := describedStream{Name: aws.ToString(si.StreamName), ARN: aws.ToString(si.StreamARN), Status: string(si.Status),
		Version: aws.ToString(si.Version), MediaType: aws.ToString(si.MediaType), DeviceName: aws.ToString(si.DeviceName),
		RetentionHours: aws.ToInt32(si.DataRetentionInHours)}
	if si.CreationTime != nil {
		d.CreationUnixNano = si.CreationTime.UnixNano()
	}
	return d
}

func streamTags(t *testing.T, c *sdkClients, name string) map[string]string {
	t.Helper()
	out, err := c.KV.ListTagsForStream(sdkCtx(t), &kinesisvideo.ListTagsForStreamInput{StreamName: aws.String(name)})
	if err != nil {
		t.Fatalf("ListTagsForStream %s: %v", name, err)
	}
	return out.Tags
}

// TestRestartKeepsStreams checks that streams, versions and tags survive a
// clean stop and a SIGKILL of the binary on the same data directory.
func TestRestartKeepsStreams(t *testing.T) {
	dir := t.TempDir()
	env := streamEnv(dir)
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0")
	c := newSDK(t, p.endpoint)
	if _, err := c.KV.CreateStream(sdkCtx(t), &kinesisvideo.CreateStreamInput{StreamName: aws.String("kept"),
		DataRetentionInHours: aws.Int32(12), Tags: map[string]string{"a": "1", "b": "2"}}); err != nil {
		t.Fatal(err)
	}
	d := describeStream(t, c, "kept")
	if _, err := c.KV.UpdateStream(sdkCtx(t), &kinesisvideo.UpdateStreamInput{StreamName: aws.String("kept"),
		CurrentVersion: aws.String(d.Version), MediaType: aws.String("video/h265")}); err != nil {
		t.Fatal(err)
	}
	before := describeStream(t, c, "kept")
	if before.MediaType != "video/h265" || before.Version == d.Version || before.RetentionHours != 12 {
		t.Fatalf("after UpdateStream: %+v (was %+v)", before, d)
	}
	p.stop(t)

	p = startKvsedge(t, env, "--listen", "127.0.0.1:0")
	c = newSDK(t, p.endpoint)
	if after := describeStream(t, c, "kept"); after != before {
		t.Fatalf("after restart:\n%+v\nwant\n%+v", after, before)
	}
	if tags := streamTags(t, c, "kept"); !maps.Equal(tags, map[string]string{"a": "1", "b": "2"}) {
		t.Fatalf("tags after restart: %v", tags)
	}

	// Every acknowledged change is synced: a SIGKILL right after the
	// response loses nothing.
	if _, err := c.KV.TagStream(sdkCtx(t), &kinesisvideo.TagStreamInput{StreamName: aws.String("kept"), Tags: map[string]string{"c": "3"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.KV.CreateStream(sdkCtx(t), &kinesisvideo.CreateStreamInput{StreamName: aws.String("second")}); err != nil {
		t.Fatal(err)
	}
	p.kill()

	p = startKvsedge(t, env, "--listen", "127.0.0.1:0")
	c = newSDK(t, p.endpoint)
	if tags := streamTags(t, c, "kept"); len(tags) != 3 || tags["c"] != "3" {
		t.Fatalf("tag lost by SIGKILL: %v", tags)
	}
	l, err := c.KV.ListStreams(sdkCtx(t), &kinesisvideo.ListStreamsInput{})
	if err != nil {
		t.Fatal(err)
	}
	var second *types.StreamInfo
	for i, s := range l.StreamInfoList {
		if aws.ToString(s.StreamName) == "second" {
			second = &l.StreamInfoList[i]
		}
	}
	if len(l.StreamInfoList) != 2 || second == nil {
		t.Fatalf("streams after SIGKILL: %d, second %v", len(l.StreamInfoList), second != nil)
	}
	// A stream created after the restart gets a fresh internal id: deleting
	// and recreating does not resurrect anything of the old stream.
	if _, err := c.KV.TagStream(sdkCtx(t), &kinesisvideo.TagStreamInput{StreamName: aws.String("second"), Tags: map[string]string{"old": "yes"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.KV.DeleteStream(sdkCtx(t), &kinesisvideo.DeleteStreamInput{StreamARN: second.StreamARN}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.KV.CreateStream(sdkCtx(t), &kinesisvideo.CreateStreamInput{StreamName: aws.String("second")}); err != nil {
		t.Fatal(err)
	}
	if tags := streamTags(t, c, "second"); len(tags) != 0 {
		t.Fatalf("recreated stream has old tags: %v", tags)
	}
	if !strings.Contains(p.logs.String(), "stream registry loaded") {
		t.Fatalf("no registry load logged:\n%s", p.logs.String())
	}
}
