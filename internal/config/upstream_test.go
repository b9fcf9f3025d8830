package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUpstreamSection(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "kvsedge.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`
upstream:
  region: eu-west-1
  access_key_id: AKIAUP
  secret_access_key: up-secret
  session_token: up-token
  rate_mbps: 8
cameras:
  - stream: door
    url: rtsp://10.0.0.2/s
    retention_hours: 24
    upload: {}
  - stream: yard
    url: rtsp://10.0.0.3/s
    retention_hours: 24
    upload: {enabled: false}
  - stream: hall
    url: rtsp://10.0.0.4/s
    retention_hours: 24
`)
	c, err := loadFor(t, nil, "--config", file)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Upstream.Enabled() || c.Upstream.RateMbps != 8 || c.Upstream.SessionToken != "up-token" {
		t.Fatalf("upstream: %+v", c.Upstream)
	}
	if !c.Cameras[0].UploadEnabled() || c.Cameras[1].UploadEnabled() || c.Cameras[2].UploadEnabled() {
		t.Fatalf("upload blocks: %+v %+v %+v", c.Cameras[0].Upload, c.Cameras[1].Upload, c.Cameras[2].Upload)
	}
	r := c.Redacted()
	if r.Upstream.SecretAccessKey == "up-secret" || r.Upstream.SessionToken == "up-token" || c.Upstream.SecretAccessKey != "up-secret" {
		t.Fatalf("redaction: %+v / %+v", r.Upstream, c.Upstream)
	}

	write(`
upstream:
  endpoint: ftp://example
  access_key_id: ONLYKEY
  rate_mbps: -1
`)
	_, err = loadFor(t, nil, "--config", file)
	for _, want := range []string{"upstream.endpoint", "upstream.rate_mbps", "upstream.access_key_id"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("invalid upstream: %v, want %s named", err, want)
		}
	}
	write(`
cameras:
  - stream: door
    url: rtsp://10.0.0.2/s
    upload: {}
`)
	if _, err := loadFor(t, nil, "--config", file); err == nil || !strings.Contains(err.Error(), "cameras[0].upload") {
		t.Errorf("upload without an upstream: %v", err)
	}
}
