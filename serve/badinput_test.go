package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
)

// TestBadInputLeavesStreamsAlone sends hostile and malformed requests and
// checks each gets a KVS error, the server stays up, and the stored stream
// is unchanged.
func TestBadInputLeavesStreamsAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	ts := startServer(t, "")
	c := ts.client(testSecret)
	ctx := context.Background()
	if _, err := c.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("keep"), DataRetentionInHours: aws.Int32(5), Tags: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	snapshot := func() string {
		d, err := c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("keep")})
		if err != nil {
			t.Fatal(err)
		}
		lt, err := c.ListTagsForStream(ctx, &kinesisvideo.ListTagsForStreamInput{StreamName: aws.String("keep")})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal([]any{d.StreamInfo, lt.Tags})
		return string(b)
	}
	before := snapshot()
	d, _ := c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("keep")})
	ver := aws.ToString(d.StreamInfo.Version)

	cases := []struct {
		path, body, wantType string
		wantStatus           int
	}{
		{"/updateStream", `{"StreamName":"keep","CurrentVersion":"` + ver + `","MediaType":`, "InvalidArgumentException", 400},
		{"/updateStream", `{"StreamName":"keep","CurrentVersion":"` + ver + `","MediaType":42}`, "InvalidArgumentException", 400},
		{"/updateDataRetention", `{"StreamName":"keep","CurrentVersion":"` + ver + `","Operation":"INCREASE_DATA_RETENTION","DataRetentionChangeInHours":"ten"}`, "InvalidArgumentException", 400},
		{"/updateDataRetention", `{"StreamName":"keep","CurrentVersion":"` + ver + `","Operation":"DOUBLE_IT","DataRetentionChangeInHours":1}`, "InvalidArgumentException", 400},
		{"/updateDataRetention", `{"StreamName":"keep","CurrentVersion":"` + ver + `","Operation":"INCREASE_DATA_RETENTION","DataRetentionChangeInHours":1e99}`, "InvalidArgumentException", 400},
		{"/tagStream", `{"StreamName":"keep","Tags":["a","b"]}`, "InvalidArgumentException", 400},
		{"/tagStream", `{"StreamName":"keep","Tags":{"k":"` + strings.Repeat("x", 257) + `"}}`, "InvalidArgumentException", 400},
		{"/untagStream", `{"StreamName":"keep","TagKeyList":[]}`, "InvalidArgumentException", 400},
		{"/deleteStream", `{"StreamName":"keep"}`, "InvalidArgumentException", 400},
		{"/deleteStream", `[]`, "InvalidArgumentException", 400},
		{"/deleteStream", `null`, "InvalidArgumentException", 400},
		{"/describeStream", "\x00\xff\xfe garbage", "InvalidArgumentException", 400},
		{"/describeStream", `{"StreamName":"keep"`, "InvalidArgumentException", 400},
		{"/noSuchOperation", `{}`, "UnknownOperationException", 404},
		{"/describestream", `{"StreamName":"keep"}`, "UnknownOperationException", 404},
	}
	for _, tc := range cases {
		st, hdr, body := ts.raw(t, tc.path, []byte(tc.body), time.Now(), testSecret)
		if st != tc.wantStatus || hdr.Get("x-amzn-ErrorType") != tc.wantType {
			t.Errorf("%s %q: %d %s %s", tc.path, clip(tc.body), st, hdr.Get("x-amzn-ErrorType"), body)
			continue
		}
		var eb struct{ Message string }
		if err := json.Unmarshal(body, &eb); err != nil || eb.Message == "" {
			t.Errorf("%s: error body %q is not JSON with a message", tc.path, body)
		}
		if hdr.Get("x-amzn-RequestId") == "" {
			t.Errorf("%s: no x-amzn-RequestId", tc.path)
		}
	}

	// An oversized body is refused without being read into memory whole.
	huge := bytes.Repeat([]byte("a"), 2<<20)
	st, hdr, _ := ts.raw(t, "/createStream", huge, time.Now(), testSecret)
	if st != 400 || hdr.Get("x-amzn-ErrorType") != "InvalidArgumentException" {
		t.Fatalf("oversized body: %d %s", st, hdr.Get("x-amzn-ErrorType"))
	}

	// Random bytes and truncated requests on raw connections.
	rng := rand.New(rand.NewSource(1))
	host := strings.TrimPrefix(ts.URL, "http://")
	for i := 0; i < 50; i++ {
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		var msg []byte
		switch i % 3 {
		case 0:
			msg = make([]byte, rng.Intn(4096))
			rng.Read(msg)
		case 1:
			msg = []byte(fmt.Sprintf("POST /createStream HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"StreamName\":\"trunc%d", i))
		case 2:
			msg = []byte("POST /describeStream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n{}")
		}
		_, _ = conn.Write(msg)
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		buf := make([]byte, 512)
		_, _ = conn.Read(buf)
		conn.Close()
	}

	if after := snapshot(); after != before {
		t.Fatalf("stream changed by bad input:\n%s\n%s", before, after)
	}
	l, err := c.ListStreams(ctx, &kinesisvideo.ListStreamsInput{})
	if err != nil || len(l.StreamInfoList) != 1 {
		t.Fatalf("streams after bad input: %v %d", err, len(l.StreamInfoList))
	}
}
