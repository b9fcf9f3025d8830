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
type uploadSet struct {
	targets atomic.Pointer[[]uplink.Target]
}

func (u *uploadSet) set(cfg *config.Config) {
	var ts []uplink.Target
	for _, name := range cfg.Upstream.Streams {
		ts = append(ts, uplink.Target{Stream: name})
	}
	for _, c := range cfg.Cameras {
		if c.UploadEnabled() {
			ts = append(ts, uplink.Target{Stream: c.Stream, Schedule: c.Upload.Schedule, DurationSeconds: c.Upload.DurationSeconds,
				DeleteAfterUpload: c.Upload.DeleteAfterUpload})
		}
	}
	u.targets.Store(&ts)
}

// uploadStreams is what the uploader uploads: the file's cameras with an
// upload block, and every stream with an edge UploaderConfig.
// An edge configuration's UploaderConfig wins over the file for the same
// stream (it is the newer, API-made setting).
func uploadStreams(eng *engine.Engine, file *uploadSet) func() []uplink.Target {
	return func() []uplink.Target {
		seen := map[string]uplink.Target{}
		if p := file.targets.Load(); p != nil {
			for _, t := range *p {
				seen[t.Stream] = t
			}
		}
		for _, s := range eng.Streams() {
			if s.Edge != nil && s.Edge.Config.UploaderConfig != nil {
				sc := s.Edge.Config.UploaderConfig.ScheduleConfig
				dc := s.Edge.Config.DeletionConfig
				seen[s.Name] = uplink.Target{Stream: s.Name, Schedule: sc.ScheduleExpression, DurationSeconds: sc.DurationInSeconds,
					DeleteAfterUpload: dc != nil && dc.DeleteAfterUpload != nil && *dc.DeleteAfterUpload}
			}
		}
		out := make([]uplink.Target, 0, len(seen))
		for n, t := range seen {
			if _, err := eng.Stream(engine.StreamRef{Name: n}); err == nil {
				out = append(out, t)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Stream < out[j].Stream })
		return out
	}
}

// newUploader builds the uploader of cfg.Upstream: static credentials when
// given, else the AWS SDK's default chain (AWS_* variables, shared files).
func newUploader(eng *engine.Engine, cfg *config.Config, streams func() []uplink.Target, a *App) (*uplink.Uploader, error) {
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
