package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"sort"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/config"
	"github.com/kvsedge/kvsedge/internal/uplink"
)

// uploadSet is the streams the configuration file's cameras upload (their
// upload block), replaced whole when the file is reloaded.
type uploadSet struct{ names atomic.Pointer[[]string] }

func (u *uploadSet) set(cfg *config.Config) {
	var names []string
	for _, c := range cfg.Cameras {
		if c.UploadEnabled() {
			names = append(names, c.Stream)
		}
	}
	u.names.Store(&names)
}

// uploadStreams is what the uploader uploads: the file's cameras with an
// upload block, and every stream with an edge UploaderConfig.
func uploadStreams(eng *engine.Engine, file *uploadSet) func() []string {
	return func() []string {
		seen := map[string]bool{}
		if p := file.names.Load(); p != nil {
			for _, n := range *p {
				seen[n] = true
			}
		}
		for _, s := range eng.Streams() {
			if s.Edge != nil && s.Edge.Config.UploaderConfig != nil {
				seen[s.Name] = true
			}
		}
		out := make([]string, 0, len(seen))
		for n := range seen {
			if _, err := eng.Stream(engine.StreamRef{Name: n}); err == nil {
				out = append(out, n)
			}
		}
		sort.Strings(out)
		return out
	}
}

// newUploader builds the uploader of cfg.Upstream: static credentials when
// given, else the AWS SDK's default chain (AWS_* variables, shared files).
func newUploader(eng *engine.Engine, cfg *config.Config, streams func() []string, a *App) (*uplink.Uploader, error) {
	up := cfg.Upstream
	var creds aws.CredentialsProvider
	region := up.Region
	if up.AccessKeyID != "" {
		creds = credentials.NewStaticCredentialsProvider(up.AccessKeyID, up.SecretAccessKey, up.SessionToken)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ac, err := awsconfig.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, fmt.Errorf("upstream credentials: %w", err)
		}
		creds = ac.Credentials
		if region == "" {
			region = ac.Region
		}
	}
	if region == "" {
		region = cfg.Region
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if up.CAFile != "" {
		pem, err := os.ReadFile(up.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream.ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream.ca_file %s holds no PEM certificate", up.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return uplink.New(eng, uplink.Config{
		Endpoint: up.Endpoint, Region: region, Credentials: creds, HTTPClient: &http.Client{Transport: tr},
		RateBitsPerSecond: int64(up.RateMbps * 1e6), Streams: streams, Logger: a.log,
	})
}
