package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
	"github.com/kvsedge/kvsedge/ingest"
	"github.com/kvsedge/kvsedge/internal/fixture"
	"github.com/kvsedge/kvsedge/internal/rtsptest"
)

type cameraStates struct {
	Cameras []struct {
		Stream, State, Source string
		Fragments             int
		LastError             string `json:"last_error"`
	}
}

func cameras(t *testing.T, env []string, endpoint string) cameraStates {
	t.Helper()
	out, errOut, code := kvsedgeCmd(t, env, "cameras", "--json", "--endpoint", endpoint)
	var cs cameraStates
	if code != 0 || json.Unmarshal([]byte(out), &cs) != nil {
		t.Fatalf("kvsedge cameras: exit %d\n%s\n%s", code, out, errOut)
	}
	return cs
}

// waitCamera waits until pred holds for the camera states.
func waitCamera(t *testing.T, env []string, endpoint string, within time.Duration, what string, pred func(cameraStates) bool) cameraStates {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		cs := cameras(t, env, endpoint)
		if pred(cs) {
			return cs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v: %+v", what, within, cs)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func recording(cs cameraStates, stream string, fragments int) bool {
	for _, c := range cs.Cameras {
		if c.Stream == stream {
			return c.State == "RECORDING" && c.Fragments >= fragments
		}
	}
	return false
}

func absent(cs cameraStates, stream string) bool {
	for _, c := range cs.Cameras {
		if c.Stream == stream {
			return false
		}
	}
	return true
}

// TestCamerasFromFileAndEdgeAPI adds, changes and removes cameras through
// the configuration file and through the KVS edge configuration API while
// the box runs.
func TestCamerasFromFileAndEdgeAPI(t *testing.T) {
	clip, err := os.ReadFile(fixture.DemoClipPath())
	if err != nil {
		t.Fatal(err)
	}
	demo, err := ingest.NewDemoSource(clip, 15)
	if err != nil {
		t.Fatal(err)
	}
	aus, _, sps, pps := demo.Clip()
	rl := rtsptest.StartRelay(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rtsptest.Publish(ctx, t, rl.URL("a"), aus, sps, pps, 15, 0)
	go rtsptest.Publish(ctx, t, rl.URL("b"), aus, sps, pps, 15, 0)
	secretURL := strings.Replace(rl.URL("b"), "rtsp://", "rtsp://viewer:s3cr3t-pw@", 1)

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "kvsedge.yaml")
	writeCfg := func(body string) {
		t.Helper()
		// Write then rename, as editors and config tools do.
		tmp := cfgPath + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, cfgPath); err != nil {
			t.Fatal(err)
		}
	}
	secrets := "secrets:\n  cam-b: " + secretURL + "\n"
	writeCfg("cameras:\n  - stream: lobby\n    url: " + rl.URL("a") + "\n    retention_hours: 2\n" + secrets)
	var env []string
	for _, e := range streamEnv(filepath.Join(dir, "data")) {
		if !strings.HasPrefix(e, "KVSEDGE_DEMO=") { // the file alone must turn the demo off
			env = append(env, e)
		}
	}
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0", "--config", cfgPath)
	waitCamera(t, env, p.endpoint, 20*time.Second, "lobby records", func(cs cameraStates) bool { return recording(cs, "lobby", 1) })
	if cs := cameras(t, env, p.endpoint); len(cs.Cameras) != 1 {
		t.Fatalf("a configuration file turns the demo off; cameras: %+v", cs)
	}

	// Add a camera and change the first one, without a restart.
	writeCfg("cameras:\n  - stream: lobby\n    url: " + rl.URL("a") + "\n    retention_hours: 2\n    fragment_duration: 3s\n" +
		"  - stream: yard\n    url: " + rl.URL("b") + "\n    transport: tcp\n    retention_hours: 2\n" + secrets)
	waitCamera(t, env, p.endpoint, 20*time.Second, "yard records", func(cs cameraStates) bool { return recording(cs, "yard", 1) })
	// Remove the first.
	writeCfg("cameras:\n  - stream: yard\n    url: " + rl.URL("b") + "\n    transport: tcp\n    retention_hours: 2\n" + secrets)
	waitCamera(t, env, p.endpoint, 10*time.Second, "lobby removed", func(cs cameraStates) bool { return absent(cs, "lobby") })

	// The edge configuration API, with aws-sdk-go-v2.
	c := newSDK(t, p.endpoint).KV
	if _, err := c.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("gate"), DataRetentionInHours: aws.Int32(24)}); err != nil {
		t.Fatal(err)
	}
	hub := "arn:aws:iot:us-west-2:111122223333:thing/site-hub"
	edge := func(secret string) *types.EdgeConfig {
		return &types.EdgeConfig{
			HubDeviceArn: aws.String(hub),
			RecorderConfig: &types.RecorderConfig{MediaSourceConfig: &types.MediaSourceConfig{
				MediaUriSecretArn: aws.String("arn:aws:secretsmanager:us-west-2:111122223333:secret:" + secret),
				MediaUriType:      types.MediaUriTypeRtspUri,
			}},
			DeletionConfig: &types.DeletionConfig{EdgeRetentionInHours: aws.Int32(24)},
		}
	}
	// An unknown secret: accepted, then SYNC_FAILED with the reason.
	if _, err := c.StartEdgeConfigurationUpdate(ctx, &kinesisvideo.StartEdgeConfigurationUpdateInput{StreamName: aws.String("gate"), EdgeConfig: edge("nope-AbCdEf")}); err != nil {
		t.Fatal(err)
	}
	desc := waitEdge(t, c, "gate", types.SyncStatusSyncFailed)
	if !strings.Contains(aws.ToString(desc.FailedStatusDetails), "nope") {
		t.Fatalf("SYNC_FAILED without the reason: %+v", desc)
	}
	out, err := c.StartEdgeConfigurationUpdate(ctx, &kinesisvideo.StartEdgeConfigurationUpdateInput{StreamName: aws.String("gate"), EdgeConfig: edge("cam-b-AbCdEf")})
	if err != nil {
		t.Fatal(err)
	}
	if out.SyncStatus != types.SyncStatusSyncing || aws.ToString(out.StreamName) != "gate" {
		t.Fatalf("StartEdgeConfigurationUpdate answered %+v", out)
	}
	waitEdge(t, c, "gate", types.SyncStatusInSync)
	waitCamera(t, env, p.endpoint, 20*time.Second, "gate records", func(cs cameraStates) bool { return recording(cs, "gate", 1) })
	// The recorder status is refreshed every 10 s.
	waitEdgeWhere(t, c, "gate", "the recorder reports SUCCESS", 25*time.Second, func(d *kinesisvideo.DescribeEdgeConfigurationOutput) bool {
		return d.SyncStatus == types.SyncStatusInSync && d.EdgeAgentStatus != nil && d.EdgeAgentStatus.LastRecorderStatus != nil &&
			d.EdgeAgentStatus.LastRecorderStatus.RecorderStatus == types.RecorderStatusSuccess
	})
	list, err := c.ListEdgeAgentConfigurations(ctx, &kinesisvideo.ListEdgeAgentConfigurationsInput{HubDeviceArn: aws.String(hub)})
	if err != nil || len(list.EdgeConfigs) != 1 || aws.ToString(list.EdgeConfigs[0].StreamName) != "gate" {
		t.Fatalf("ListEdgeAgentConfigurations: %v %+v", err, list)
	}
	if _, err := c.DeleteEdgeConfiguration(ctx, &kinesisvideo.DeleteEdgeConfigurationInput{StreamName: aws.String("gate")}); err != nil {
		t.Fatal(err)
	}
	waitCamera(t, env, p.endpoint, 10*time.Second, "gate removed", func(cs cameraStates) bool { return absent(cs, "gate") })
	_, err = c.DescribeEdgeConfiguration(ctx, &kinesisvideo.DescribeEdgeConfigurationInput{StreamName: aws.String("gate")})
	var nf *types.StreamEdgeConfigurationNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("describe after delete: %v", err)
	}
	// No retention: refused as in KVS.
	if _, err := c.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("nostore")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.StartEdgeConfigurationUpdate(ctx, &kinesisvideo.StartEdgeConfigurationUpdateInput{StreamName: aws.String("nostore"), EdgeConfig: edge("cam-b")})
	var nd *types.NoDataRetentionException
	if !errors.As(err, &nd) {
		t.Fatalf("edge configuration without retention: %v", err)
	}

	// The camera's password never shows: not in logs, not in the API.
	cfgOut, _, _ := kvsedgeCmd(t, env, "config", "--config", cfgPath)
	for what, s := range map[string]string{"logs": p.logs.String(), "cameras": func() string { b, _ := json.Marshal(cameras(t, env, p.endpoint)); return string(b) }(), "config": cfgOut} {
		if strings.Contains(s, "s3cr3t-pw") {
			t.Fatalf("the camera password appears in %s", what)
		}
	}
}

func waitEdge(t *testing.T, c *kinesisvideo.Client, stream string, want types.SyncStatus) *kinesisvideo.DescribeEdgeConfigurationOutput {
	t.Helper()
	return waitEdgeWhere(t, c, stream, "sync status "+string(want), 15*time.Second, func(d *kinesisvideo.DescribeEdgeConfigurationOutput) bool {
		return d.SyncStatus == want
	})
}

// waitEdgeWhere polls DescribeEdgeConfiguration until pred holds.
func waitEdgeWhere(t *testing.T, c *kinesisvideo.Client, stream, what string, within time.Duration, pred func(*kinesisvideo.DescribeEdgeConfigurationOutput) bool) *kinesisvideo.DescribeEdgeConfigurationOutput {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		d, err := c.DescribeEdgeConfiguration(sdkCtx(t), &kinesisvideo.DescribeEdgeConfigurationInput{StreamName: aws.String(stream)})
		if err != nil {
			t.Fatal(err)
		}
		if pred(d) {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge configuration of %s: %s: not within %v: %s (%s), agent %+v", stream, what, within, d.SyncStatus, aws.ToString(d.FailedStatusDetails), d.EdgeAgentStatus)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
