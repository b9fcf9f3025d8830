package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	kvtypes "github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideoarchivedmedia"
	amtypes "github.com/aws/aws-sdk-go-v2/service/kinesisvideoarchivedmedia/types"
	"github.com/kvsedge/kvsedge/internal/faultproxy"
	"github.com/kvsedge/kvsedge/internal/fixture"
)

// TestUploadToUpstreamThroughFaults: one box records an RTSP camera and
// uploads it to a second kvsedge (the upstream) through a fault proxy.
// During the upload the proxy freezes the path for 60 s and cuts its
// connections (mid-fragment), the uploading box is SIGKILLed and started
// again, and the upstream box is restarted. At the end the upstream holds
// exactly the local fragments: the same producer timestamps, the same
// frames in each (compared frame by frame through
// GetMediaForFragmentList), none twice, none missing.
func TestUploadToUpstreamThroughFaults(t *testing.T) {
	camCtx, stopCamera := context.WithCancel(context.Background())
	defer stopCamera()
	rl := publishCameras(camCtx, t, fixture.DemoClipPath(), 15, "cam")

	// The upstream listens on a fixed port (it is restarted) behind the
	// proxy, and hands out the proxy as its data endpoint, so PutMedia
	// goes through the proxy too.
	upAddr := freeAddr(t)
	proxy, err := faultproxy.Listen(upAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	upEnv := append(streamEnv(t.TempDir()), "KVSEDGE_DATA_ENDPOINT=http://"+proxy.Addr())
	up := startKvsedge(t, upEnv, "--listen", upAddr)

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "kvsedge.yaml")
	cfg := fmt.Sprintf("cameras:\n  - stream: cam\n    url: %s\n    retention_hours: 2\n    upload: {enabled: true}\n"+
		"upstream:\n  endpoint: http://%s\n  region: us-west-2\n  access_key_id: %s\n  secret_access_key: %s\n",
		rl.URL("cam"), proxy.Addr(), e2eAKID, e2eSecret)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := streamEnv(filepath.Join(dir, "data"))
	local := startKvsedge(t, env, "--listen", "127.0.0.1:0", "--config", cfgPath)

	// upCount counts the upstream's fragments (0 while it has no stream or
	// does not answer: it is restarted).
	upSDK := newSDK(t, "http://"+upAddr)
	upCount := func() int {
		n := 0
		pages := kinesisvideoarchivedmedia.NewListFragmentsPaginator(upSDK.Archived,
			&kinesisvideoarchivedmedia.ListFragmentsInput{StreamName: aws.String("cam"), FragmentSelector: allTime})
		for pages.HasMorePages() {
			page, err := pages.NextPage(sdkCtx(t))
			if err != nil {
				return 0
			}
			n += len(page.Fragments)
		}
		return n
	}
	waitFor := func(what string, within time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v\nlocal log:\n%s", what, within, tailLines(local.logs.String(), 40))
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	upHas := func(n int) func() bool {
		return func() bool { return upCount() >= n }
	}
	waitFor("the first fragments upstream", 40*time.Second, upHas(2))

	proxy.Freeze()
	time.Sleep(60 * time.Second)
	proxy.Thaw()
	n := upCount()
	waitFor("uploading after a 60 s freeze", 60*time.Second, upHas(n+2))
	cut := 0
	for range 3 {
		time.Sleep(700 * time.Millisecond)
		cut += proxy.Cut()
	}
	if cut == 0 {
		t.Fatal("no upload connection went through the proxy to be cut")
	}
	n = upCount()
	waitFor("uploading after cut connections", 60*time.Second, upHas(n+2))

	local.kill()
	local = startKvsedge(t, env, "--listen", "127.0.0.1:0", "--config", cfgPath)
	n = upCount()
	waitFor("uploading after the uploading box was killed", 60*time.Second, upHas(n+2))

	up.stop(t)
	time.Sleep(2 * time.Second)
	_ = startKvsedge(t, upEnv, "--listen", upAddr) // stopped by the test's cleanup
	n = upCount()
	waitFor("uploading after the upstream restarted", 60*time.Second, upHas(n+2))

	// The camera stops: the upstream catches up with everything stored.
	stopCamera()
	time.Sleep(3 * time.Second)
	localList := newSDK(t, local.endpoint).listFragments(t, "cam")
	waitFor("the upstream holding every local fragment", 90*time.Second, func() bool { return upCount() >= len(localList) })
	time.Sleep(2 * time.Second)
	localList = newSDK(t, local.endpoint).listFragments(t, "cam")
	upList := newSDK(t, "http://"+upAddr).listFragments(t, "cam")

	lt, ut := times(localList), times(upList)
	if fmt.Sprint(lt) != fmt.Sprint(ut) {
		t.Fatalf("producer timestamps differ: local %d fragments %v\nupstream %d fragments %v", len(lt), lt, len(ut), ut)
	}
	localFrames, p1, _ := eoReadListed(t, local.endpoint, "cam")
	upFrames, p2, _ := eoReadListed(t, "http://"+upAddr, "cam")
	if len(p1)+len(p2) > 0 {
		t.Fatalf("reading back: local %v, upstream %v", p1, p2)
	}
	keys := func(g []eoGot) []string {
		out := make([]string, len(g))
		for i, f := range g {
			out[i] = f.Key.String()
		}
		sort.Strings(out)
		return out
	}
	lk, uk := keys(localFrames), keys(upFrames)
	if len(lk) == 0 || strings.Join(lk, "\n") != strings.Join(uk, "\n") {
		t.Fatalf("frames differ: local %d, upstream %d", len(lk), len(uk))
	}
	t.Logf("%d fragments and %d frames uploaded through a 60 s freeze, 3 cuts, a killed uploader and a restarted upstream", len(ut), len(uk))
	// What the upstream serves decodes: GetClip of the whole uploaded
	// range, read by ffprobe, holds every uploaded video frame.
	first, last := upList[0], upList[0]
	for _, f := range upList {
		if aws.ToTime(f.ServerTimestamp).Before(aws.ToTime(first.ServerTimestamp)) {
			first = f
		}
		if aws.ToTime(f.ServerTimestamp).After(aws.ToTime(last.ServerTimestamp)) {
			last = f
		}
	}
	clipReq := signedJSONRequest(context.Background(), t, "http://"+upAddr, "/getClip", map[string]any{"StreamName": "cam",
		"ClipFragmentSelector": map[string]any{"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": map[string]any{
			"StartTimestamp": float64(aws.ToTime(first.ServerTimestamp).UnixMilli()) / 1000,
			"EndTimestamp":   float64(aws.ToTime(last.ServerTimestamp).UnixMilli()+last.FragmentLengthInMilliseconds) / 1000}}})
	clipResp, cerr := http.DefaultClient.Do(clipReq)
	if cerr != nil {
		t.Fatal(cerr)
	}
	mp4, _ := io.ReadAll(clipResp.Body)
	clipResp.Body.Close()
	if clipResp.StatusCode != 200 {
		t.Fatalf("GetClip upstream: %d %s", clipResp.StatusCode, mp4)
	}
	clipPath := filepath.Join(t.TempDir(), "upstream.mp4")
	if err := os.WriteFile(clipPath, mp4, 0o600); err != nil {
		t.Fatal(err)
	}
	if counts := fixture.PacketCounts(t, clipPath); counts["video"] != len(uk) {
		t.Fatalf("ffprobe of the upstream's clip: %v video packets, %d frames uploaded", counts, len(uk))
	}
	out, _, code := kvsedgeCmd(t, env, "uploads", "--endpoint", local.endpoint)
	if code != 0 || !strings.Contains(out, `"stream": "cam"`) || !strings.Contains(out, "uploaded_through") {
		t.Fatalf("kvsedge uploads: exit %d\n%s", code, out)
	}
	t.Logf("kvsedge uploads:\n%s", out)
}

func tailLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestUploadSchedule: with a schedule (every 10 s, windows of 4 s) the
// upstream receives fragments only inside the windows: each upstream
// fragment's server timestamp (when its first byte reached the upstream)
// lies in one, and the windows catch up with what was recorded between
// them.
func TestUploadSchedule(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rl := publishCameras(ctx, t, fixture.DemoClipPath(), 15, "cam")
	up := startKvsedge(t, streamEnv(t.TempDir()), "--listen", "127.0.0.1:0")

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "kvsedge.yaml")
	cfg := fmt.Sprintf("cameras:\n  - stream: cam\n    url: %s\n    retention_hours: 2\n"+
		"    upload: {schedule: \"*/10 * * * * ?\", duration_seconds: 4}\n"+
		"upstream:\n  endpoint: %s\n  region: us-west-2\n  access_key_id: %s\n  secret_access_key: %s\n",
		rl.URL("cam"), up.endpoint, e2eAKID, e2eSecret)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	local := startKvsedge(t, streamEnv(filepath.Join(dir, "data")), "--listen", "127.0.0.1:0", "--config", cfgPath)
	time.Sleep(32 * time.Second)
	upSDK := newSDK(t, up.endpoint)
	list := upSDK.listFragments(t, "cam")
	windows := map[int64]bool{}
	for _, f := range list {
		st := aws.ToTime(f.ServerTimestamp)
		into := st.Sub(st.Truncate(10 * time.Second))
		if into > 4*time.Second+500*time.Millisecond {
			t.Errorf("fragment %s reached the upstream %v into a 10 s period, outside its 4 s window", aws.ToString(f.FragmentNumber), into)
		}
		windows[st.Truncate(10*time.Second).Unix()] = true
	}
	if len(list) < 3 || len(windows) < 2 {
		t.Fatalf("%d fragments upstream in %d windows; local log:\n%s", len(list), len(windows), tailLines(local.logs.String(), 30))
	}
	t.Logf("%d fragments uploaded in %d windows", len(list), len(windows))
}

// TestEdgeUploaderStatus: a stream given an edge configuration with an
// UploaderConfig is uploaded on its schedule, and DescribeEdgeConfiguration
// reports LastUploaderStatus SUCCESS; a box whose upstream refuses its key
// reports USER_ERROR with the reason.
func TestEdgeUploaderStatus(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rl := publishCameras(ctx, t, fixture.DemoClipPath(), 15, "gate")
	up := startKvsedge(t, streamEnv(t.TempDir()), "--listen", "127.0.0.1:0")

	for _, c := range []struct {
		secret, want string
	}{{e2eSecret, "SUCCESS"}, {"not-the-upstream-secret", "USER_ERROR"}} {
		dir := t.TempDir()
		cfgPath := filepath.Join(dir, "kvsedge.yaml")
		cfg := fmt.Sprintf("secrets:\n  gate-cam: %s\nupstream:\n  endpoint: %s\n  region: us-west-2\n  access_key_id: %s\n  secret_access_key: %s\n",
			rl.URL("gate"), up.endpoint, e2eAKID, c.secret)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		p := startKvsedge(t, streamEnv(filepath.Join(dir, "data")), "--listen", "127.0.0.1:0", "--config", cfgPath)
		kv := newSDK(t, p.endpoint).KV
		if _, err := kv.CreateStream(sdkCtx(t), &kinesisvideo.CreateStreamInput{StreamName: aws.String("gate"), DataRetentionInHours: aws.Int32(24)}); err != nil {
			t.Fatal(err)
		}
		_, err := kv.StartEdgeConfigurationUpdate(sdkCtx(t), &kinesisvideo.StartEdgeConfigurationUpdateInput{StreamName: aws.String("gate"),
			EdgeConfig: &kvtypes.EdgeConfig{
				HubDeviceArn: aws.String("arn:aws:iot:us-west-2:111122223333:thing/site-hub"),
				RecorderConfig: &kvtypes.RecorderConfig{MediaSourceConfig: &kvtypes.MediaSourceConfig{
					MediaUriSecretArn: aws.String("arn:aws:secretsmanager:us-west-2:111122223333:secret:gate-cam-AbCdEf"),
					MediaUriType:      kvtypes.MediaUriTypeRtspUri,
				}},
				UploaderConfig: &kvtypes.UploaderConfig{ScheduleConfig: &kvtypes.ScheduleConfig{
					ScheduleExpression: aws.String("0 * * * * ?"), DurationInSeconds: aws.Int32(3600)}},
				DeletionConfig: &kvtypes.DeletionConfig{EdgeRetentionInHours: aws.Int32(24)},
			}})
		if err != nil {
			t.Fatal(err)
		}
		desc := waitEdgeWhere(t, kv, "gate", "LastUploaderStatus "+c.want, 40*time.Second, func(d *kinesisvideo.DescribeEdgeConfigurationOutput) bool {
			return d.EdgeAgentStatus != nil && d.EdgeAgentStatus.LastUploaderStatus != nil &&
				string(d.EdgeAgentStatus.LastUploaderStatus.UploaderStatus) == c.want
		})
		us := desc.EdgeAgentStatus.LastUploaderStatus
		if us.LastUpdatedTime == nil || aws.ToString(us.JobStatusDetails) == "" {
			t.Fatalf("%s: %+v", c.want, us)
		}
		t.Logf("%s: %s", c.want, aws.ToString(us.JobStatusDetails))
		p.stop(t)
	}
}

// TestDeleteAfterUpload: with delete_after_upload the local store keeps
// only what the upstream has not yet PERSISTED (every deleted fragment is
// upstream, with no hole), and a hold keeps local media.
func TestDeleteAfterUpload(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rl := publishCameras(ctx, t, fixture.DemoClipPath(), 15, "cam")
	up := startKvsedge(t, streamEnv(t.TempDir()), "--listen", "127.0.0.1:0")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "kvsedge.yaml")
	cfg := fmt.Sprintf("cameras:\n  - stream: cam\n    url: %s\n    retention_hours: 2\n    upload: {delete_after_upload: true}\n"+
		"upstream:\n  endpoint: %s\n  region: us-west-2\n  access_key_id: %s\n  secret_access_key: %s\n",
		rl.URL("cam"), up.endpoint, e2eAKID, e2eSecret)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	local := startKvsedge(t, streamEnv(filepath.Join(dir, "data")), "--listen", "127.0.0.1:0", "--config", cfgPath)
	upSDK, localSDK := newSDK(t, up.endpoint), newSDK(t, local.endpoint)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		if _, err := upSDK.KV.DescribeStream(sdkCtx(t), &kinesisvideo.DescribeStreamInput{StreamName: aws.String("cam")}); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the uploader did not create the upstream stream: %v", err)
		}
	}
	upSDK.waitFragments(t, "cam", 6, 40*time.Second)
	localList := localSDK.listFragments(t, "cam")
	upList := upSDK.listFragments(t, "cam")
	if len(localList) > 3 {
		t.Fatalf("%d fragments kept locally while %d are upstream", len(localList), len(upList))
	}
	oldestLocal := int64(1 << 62)
	for _, f := range localList {
		oldestLocal = min(oldestLocal, aws.ToTime(f.ProducerTimestamp).UnixMilli())
	}
	ts := times(upList)
	for i := 1; i < len(ts) && ts[i] < oldestLocal; i++ {
		if ts[i]-ts[i-1] > 5000 {
			t.Fatalf("a deleted fragment is missing upstream: a %d ms hole before %d", ts[i]-ts[i-1], ts[i])
		}
	}
	if len(ts) == 0 || ts[0] > oldestLocal {
		t.Fatalf("the upstream lacks what was deleted locally: %v, oldest local %d", ts, oldestLocal)
	}
	// A hold keeps local media.
	if _, err := localSDK.KV.TagStream(sdkCtx(t), &kinesisvideo.TagStreamInput{StreamName: aws.String("cam"),
		Tags: map[string]string{"kvsedge:hold": "true"}}); err != nil {
		t.Fatal(err)
	}
	n := len(upSDK.listFragments(t, "cam"))
	upSDK.waitFragments(t, "cam", n+4, 40*time.Second)
	if held := len(localSDK.listFragments(t, "cam")); held < 4 {
		t.Fatalf("a hold kept %d fragments while 4 more were uploaded", held)
	}
}

func times(list []amtypes.Fragment) []int64 {
	var out []int64
	for _, f := range list {
		out = append(out, aws.ToTime(f.ProducerTimestamp).UnixMilli())
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// TestRecorderSchedule: an edge configuration whose RecorderConfig has a
// schedule records only inside its windows: one whose window is closed
// (January 1st, midnight, 60 s) records nothing and says when it opens;
// changed to one that is always open (every minute, 60 s) it records.
// (KVS requires windows of at least 60 s; the window arithmetic itself is
// tested in internal/schedule, and uploads in 4 s windows in
// TestUploadSchedule.)
func TestRecorderSchedule(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rl := publishCameras(ctx, t, fixture.DemoClipPath(), 15, "gate")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "kvsedge.yaml")
	if err := os.WriteFile(cfgPath, []byte("secrets:\n  gate-cam: "+rl.URL("gate")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startKvsedge(t, streamEnv(filepath.Join(dir, "data")), "--listen", "127.0.0.1:0", "--config", cfgPath)
	sdk := newSDK(t, p.endpoint)
	if _, err := sdk.KV.CreateStream(sdkCtx(t), &kinesisvideo.CreateStreamInput{StreamName: aws.String("gate"), DataRetentionInHours: aws.Int32(24)}); err != nil {
		t.Fatal(err)
	}
	start := func(expr string) {
		t.Helper()
		_, err := sdk.KV.StartEdgeConfigurationUpdate(sdkCtx(t), &kinesisvideo.StartEdgeConfigurationUpdateInput{StreamName: aws.String("gate"),
			EdgeConfig: &kvtypes.EdgeConfig{
				HubDeviceArn: aws.String("arn:aws:iot:us-west-2:111122223333:thing/site-hub"),
				RecorderConfig: &kvtypes.RecorderConfig{
					MediaSourceConfig: &kvtypes.MediaSourceConfig{
						MediaUriSecretArn: aws.String("arn:aws:secretsmanager:us-west-2:111122223333:secret:gate-cam-AbCdEf"),
						MediaUriType:      kvtypes.MediaUriTypeRtspUri,
					},
					ScheduleConfig: &kvtypes.ScheduleConfig{ScheduleExpression: aws.String(expr), DurationInSeconds: aws.Int32(60)},
				},
				DeletionConfig: &kvtypes.DeletionConfig{EdgeRetentionInHours: aws.Int32(24)},
			}})
		if err != nil {
			t.Fatal(err)
		}
	}
	start("0 0 0 1 1 ?")
	desc := waitEdgeWhere(t, sdk.KV, "gate", "the recorder says it is outside its schedule", 20*time.Second, func(d *kinesisvideo.DescribeEdgeConfigurationOutput) bool {
		return d.EdgeAgentStatus != nil && d.EdgeAgentStatus.LastRecorderStatus != nil &&
			strings.Contains(aws.ToString(d.EdgeAgentStatus.LastRecorderStatus.JobStatusDetails), "outside the recording schedule")
	})
	t.Logf("closed window: %s", aws.ToString(desc.EdgeAgentStatus.LastRecorderStatus.JobStatusDetails))
	time.Sleep(6 * time.Second)
	if n := len(sdk.listFragments(t, "gate")); n != 0 {
		t.Fatalf("%d fragments recorded outside the schedule", n)
	}
	start("0 * * * * ?")
	sdk.waitFragments(t, "gate", 2, 30*time.Second)
}
