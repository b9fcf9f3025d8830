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

func TestClusterCredentials(t *testing.T) {
	k1, k2 := []byte("0123456789abcdef0123456789abcdef"), []byte("fedcba9876543210fedcba9876543210")
	a, b := ClusterCredential(k1), ClusterCredential(k1)
	if a != b || a == ClusterCredential(k2) || !accessKeyPattern.MatchString(a.AccessKeyID) || len(a.SecretAccessKey) != 40 {
		t.Fatalf("cluster credentials: %+v %+v", a, ClusterCredential(k2))
	}
	// A box that ran alone keeps its old pair aside and takes the
	// cluster's.
	dir := t.TempDir()
	cfg := Default()
	cfg.DataDir = dir
	alone, generated, err := EffectiveCredentials(&cfg)
	if err != nil || !generated || len(alone) != 1 {
		t.Fatal(err)
	}
	cfg.Cluster.Bind = "127.0.0.1:7946"
	cfg.Cluster.Key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // base64 of k1
	got, _, err := EffectiveCredentials(&cfg)
	if err != nil || len(got) != 1 || got[0] != a {
		t.Fatalf("clustered: %+v %v", got, err)
	}
	if old, err := readCredentialsFile(filepath.Join(dir, GeneratedCredentialsFile+".standalone")); err != nil || old != alone[0] {
		t.Fatalf("the standalone pair was not kept aside: %+v %v", old, err)
	}
	if again, _ := ExistingCredentials(&cfg); len(again) != 1 || again[0] != a {
		t.Fatalf("kvsedge credentials on a clustered box: %+v", again)
	}
	if CredentialFingerprint(k1, []Credential{a, alone[0]}) != CredentialFingerprint(k1, []Credential{alone[0], a}) ||
		CredentialFingerprint(k1, []Credential{a}) == CredentialFingerprint(k1, []Credential{alone[0]}) {
		t.Fatal("fingerprints: order must not matter, sets must")
	}
}
