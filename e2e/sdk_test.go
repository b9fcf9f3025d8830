package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideoarchivedmedia"
	amtypes "github.com/aws/aws-sdk-go-v2/service/kinesisvideoarchivedmedia/types"
	"github.com/aws/smithy-go"
)

// The tests drive boxes with aws-sdk-go-v2, which answers in milliseconds;
// the real aws CLI (a second or more a call) is kept for the one
// compatibility tour, TestAWSCLITour.

// sdkClients are aws-sdk-go-v2 clients for one box and one key pair,
// sharing one HTTP client whose idle connections close when the test ends.
type sdkClients struct {
	Endpoint string
	KV       *kinesisvideo.Client
	Archived *kinesisvideoarchivedmedia.Client
	HTTP     *http.Client
	creds    aws.CredentialsProvider
}

// sdkOptions changes newSDKWith's defaults.
type sdkOptions struct {
	// AKID and Secret sign the requests; empty: the e2e key pair.
	AKID, Secret string
	// RootCAs are the roots an HTTPS box is verified against; nil: the
	// system roots.
	RootCAs *x509.CertPool
}

// newSDK returns clients for endpoint signing with the e2e key pair.
func newSDK(t testing.TB, endpoint string) *sdkClients {
	t.Helper()
	return newSDKWith(t, endpoint, sdkOptions{})
}

func newSDKWith(t testing.TB, endpoint string, o sdkOptions) *sdkClients {
	t.Helper()
	if o.AKID == "" {
		o.AKID = e2eAKID
	}
	if o.Secret == "" {
		o.Secret = e2eSecret
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.RootCAs != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: o.RootCAs}
	}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	creds := credentials.NewStaticCredentialsProvider(o.AKID, o.Secret, "")
	// One attempt, as the CLI runs with AWS_MAX_ATTEMPTS=1: an error shows
	// at once and is not retried away.
	return &sdkClients{
		Endpoint: endpoint,
		KV: kinesisvideo.New(kinesisvideo.Options{Region: "us-west-2", BaseEndpoint: aws.String(endpoint),
			Credentials: creds, HTTPClient: hc, RetryMaxAttempts: 1}),
		Archived: kinesisvideoarchivedmedia.New(kinesisvideoarchivedmedia.Options{Region: "us-west-2", BaseEndpoint: aws.String(endpoint),
			Credentials: creds, HTTPClient: hc, RetryMaxAttempts: 1}),
		HTTP:  hc,
		creds: creds,
	}
}

// sdkCtx is a context for one call: the test's, with a deadline.
func sdkCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// apiErrorCode is the error code of an API error answer ("" for any other
// error or none).
func apiErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// allTime selects every fragment by server time.
var allTime = &amtypes.FragmentSelector{
	FragmentSelectorType: amtypes.FragmentSelectorTypeServerTimestamp,
	TimestampRange: &amtypes.TimestampRange{
		StartTimestamp: aws.Time(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)),
		EndTimestamp:   aws.Time(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)),
	},
}

// listFragments lists every fragment of stream, following NextToken.
func (c *sdkClients) listFragments(t testing.TB, stream string) []amtypes.Fragment {
	t.Helper()
	var out []amtypes.Fragment
	pages := kinesisvideoarchivedmedia.NewListFragmentsPaginator(c.Archived,
		&kinesisvideoarchivedmedia.ListFragmentsInput{StreamName: aws.String(stream), FragmentSelector: allTime},
		func(o *kinesisvideoarchivedmedia.ListFragmentsPaginatorOptions) { o.StopOnDuplicateToken = true })
	for pages.HasMorePages() {
		page, err := pages.NextPage(sdkCtx(t))
		if err != nil {
			t.Fatalf("ListFragments %s: %v", stream, err)
		}
		out = append(out, page.Fragments...)
	}
	return out
}

// waitFragments waits until stream has at least n fragments and returns
// them.
func (c *sdkClients) waitFragments(t testing.TB, stream string, n int, within time.Duration) []amtypes.Fragment {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		l := c.listFragments(t, stream)
		if len(l) >= n {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d fragments after %v, want %d", stream, len(l), within, n)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// getMedia runs GetMedia from start (EARLIEST, NOW, …) and copies the
// payload into w until the box ends the response; it returns the
// Content-Type. The request is the SigV4-signed POST that
// aws-sdk-go-v2/service/kinesisvideomedia sends: that module is not served
// by the module proxy this project builds from.
func (c *sdkClients) getMedia(t testing.TB, stream, start string, w io.Writer) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	body, err := json.Marshal(map[string]any{"StreamName": stream, "StartSelector": map[string]string{"StartSelectorType": start}})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Endpoint+"/getMedia", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	creds, err := c.creds.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "kinesisvideo", "us-west-2", time.Now()); err != nil {
		t.Fatal(err)
	}
	// The payload streams until the box's idle end: no client timeout.
	resp, err := (&http.Client{Transport: c.HTTP.Transport}).Do(req)
	if err != nil {
		t.Fatalf("GetMedia %s: %v", stream, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GetMedia %s: %d %s", stream, resp.StatusCode, b)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		t.Fatalf("GetMedia %s: reading the payload: %v", stream, err)
	}
	return resp.Header.Get("Content-Type")
}
