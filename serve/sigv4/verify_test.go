package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

const (
	akid   = "AKIDEXAMPLE"
	secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	region = "us-west-2"
)

var signTime = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func hashHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// sign signs req with the aws-sdk-go-v2 signer, the same code every Go
// client of ours uses.
func sign(t testing.TB, req *http.Request, payloadHash, key string, at time.Time) {
	t.Helper()
	s := v4.NewSigner()
	err := s.SignHTTP(context.Background(), aws.Credentials{AccessKeyID: akid, SecretAccessKey: key},
		req, payloadHash, "kinesisvideo", region, at)
	if err != nil {
		t.Fatal(err)
	}
}

// fromHTTP describes req as the server would see it on the wire.
func fromHTTP(req *http.Request, payloadHash string) *Request {
	return &Request{
		Method:   req.Method,
		Path:     req.URL.EscapedPath(),
		RawQuery: req.URL.RawQuery,
		Header: func(name string) (string, bool) {
			if strings.EqualFold(name, "host") {
				if req.Host != "" {
					return req.Host, true
				}
				return req.URL.Host, true
			}
			if strings.EqualFold(name, "content-length") && req.ContentLength > 0 {
				return strconv.FormatInt(req.ContentLength, 10), true
			}
			vs, ok := req.Header[http.CanonicalHeaderKey(name)]
			return strings.Join(vs, ","), ok
		},
		PayloadHash: payloadHash,
	}
}

func newVerifier(now time.Time) *Verifier {
	return NewVerifier(StaticCredentials{akid: secret}, Options{Service: "kinesisvideo", Now: func() time.Time { return now }})
}

func jsonRequest(t testing.TB, host, path, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+host+path, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

func wantCode(t *testing.T, err error, code Code) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want *Error with code %s", err, err, code)
	}
	if e.Code != code {
		t.Fatalf("code %s (%s), want %s", e.Code, e.Message, code)
	}
	if e.Status() != http.StatusForbidden {
		t.Fatalf("status %d, want 403", e.Status())
	}
}

func TestVerifyAcceptsClientShapes(t *testing.T) {
	body := `{"StreamName":"cam-1"}`
	cases := []struct {
		name  string
		build func(t *testing.T) (*http.Request, string)
	}{
		{"go-sdk", func(t *testing.T) (*http.Request, string) {
			req := jsonRequest(t, "127.0.0.1:8080", "/describeStream", body)
			req.Header.Set("Amz-Sdk-Invocation-Id", "0b5e5d1e-1d1e-4e4e-9e9e-000000000001")
			req.Header.Set("Amz-Sdk-Request", "attempt=1; max=3")
			req.ContentLength = int64(len(body))
			sign(t, req, hashHex([]byte(body)), secret, signTime)
			return req, hashHex([]byte(body))
		}},
		{"c-producer-putmedia", func(t *testing.T) (*http.Request, string) {
			// Host without the port, streamed body signed with the empty hash,
			// security token added after signing.
			req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:8080/putMedia", strings.NewReader("matroska..."))
			req.Host = "127.0.0.1"
			req.Header.Set("Transfer-Encoding", "chunked")
			req.Header.Set("Connection", "keep-alive")
			req.Header.Set("x-amzn-stream-name", "cam-1")
			req.Header.Set("x-amzn-fragment-timecode-type", "ABSOLUTE")
			sign(t, req, EmptyPayloadHash, secret, signTime)
			req.Header.Set("X-Amz-Security-Token", "added-after-signing")
			return req, EmptyPayloadHash
		}},
		{"encoded-path-and-query", func(t *testing.T) (*http.Request, string) {
			req := jsonRequest(t, "box.local", "/hls/v1/getHLSMediaPlaylist.m3u8", "")
			req.URL.RawQuery = "SessionToken=abc%2Bdef%3D%3D&b=2&a=1&a=0&empty="
			sign(t, req, hashHex(nil), secret, signTime)
			return req, hashHex(nil)
		}},
		{"multi-space-header", func(t *testing.T) (*http.Request, string) {
			req := jsonRequest(t, "127.0.0.1:9", "/listStreams", "{}")
			req.Header.Set("User-Agent", "  aws-cli/1.45   Python/3.11  ")
			sign(t, req, hashHex([]byte("{}")), secret, signTime)
			return req, hashHex([]byte("{}"))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, ph := tc.build(t)
			got, err := newVerifier(signTime.Add(time.Minute)).Verify(fromHTTP(req, ph))
			if err != nil {
				var e *Error
				if errors.As(err, &e) {
					t.Logf("canonical request:\n%s\nauthorization: %s", e.CanonicalRequest, req.Header.Get("Authorization"))
				}
				t.Fatalf("verify: %v", err)
			}
			if got != akid {
				t.Fatalf("access key %q, want %q", got, akid)
			}
		})
	}
}

// TestVerifyBotocoreVector checks a request signed by botocore 1.40's
// SigV4Auth (the aws CLI's signer) with the header set it sends,
// content-type;host;x-amz-date, over the SHA-256 of the body. The vector was
// produced with botocore.auth.SigV4Auth(creds, "kinesisvideo",
// "us-west-2").add_auth on the request below.
func TestVerifyBotocoreVector(t *testing.T) {
	body := `{"StreamName": "cam-1"}`
	hdr := map[string]string{
		"content-type":  "application/json",
		"host":          "127.0.0.1:8080",
		"user-agent":    "aws-cli/1.45.11 md/Botocore#1.40",
		"x-amz-date":    "20261125T113415Z",
		"authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261125/us-west-2/kinesisvideo/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=e1cfc09353b5a5396ec0e6c605499468d8a0c719de883dd5f55c65b7a7e638bd",
	}
	r := &Request{Method: "POST", Path: "/describeStream", PayloadHash: hashHex([]byte(body)),
		Header: func(name string) (string, bool) { v, ok := hdr[name]; return v, ok }}
	at := time.Date(2026, 11, 25, 11, 34, 15, 0, time.UTC)
	if _, err := newVerifier(at).Verify(r); err != nil {
		t.Fatalf("botocore vector: %v", err)
	}
	hdr["content-type"] = "application/x-amz-json-1.1"
	_, err := newVerifier(at).Verify(r)
	wantCode(t, err, CodeInvalidSignature)
}

func TestVerifyRefusals(t *testing.T) {
	body := `{"StreamName":"cam-1"}`
	good := func(t *testing.T) *http.Request {
		req := jsonRequest(t, "127.0.0.1:8080", "/describeStream", body)
		sign(t, req, hashHex([]byte(body)), secret, signTime)
		return req
	}
	now := signTime.Add(time.Minute)
	cases := []struct {
		name   string
		mutate func(t *testing.T, r *http.Request) (*Request, time.Time)
		code   Code
		msg    string
	}{
		{"no-auth", func(t *testing.T, r *http.Request) (*Request, time.Time) {
			r.Header.Del("Authorization")
			return fromHTTP(r, hashHex([]byte(body))), now
		}, CodeMissingAuthenticationToken, "Missing Authentication Token"},
		{"wrong-secret", func(t *testing.T, r *http.Request) (*Request, time.Time) {
			r2 := jsonRequest(t, "127.0.0.1:8080", "/describeStream", body)
			sign(t, r2, hashHex([]byte(body)), "not-the-secret", signTime)
			return fromHTTP(r2, hashHex([]byte(body))), now
		}, CodeInvalidSignature, "signature we calculated does not match"},
		{"tampered-body", func(t *testing.T, r *http.Request) (*Request, time.Time) {
			return fromHTTP(r, hashHex([]byte(`{"StreamName":"cam-2"}`))), now
		}, CodeInvalidSignature, "does not match"},
		{"tampered-header", func(t *testing.T, r *http.Request) (*Request, time.Time) {
			r.Header.Set("Content-Type", "text/plain")
			return fromHTTP(r, hashHex([]byte(body))), now
		}, CodeInvalidSignature, "does not match"},
		{"other-path", func(t *testing.T, r *http.Request) (*Request, time.Time) {
			r.URL.Path = "/deleteStream"
			return fromHTTP(r, hashHex([]byte(body))), now
		}, CodeInvalidSignature, "does not match"},
		{"unknown-key", func(t *testing.T, r *http.Request) (*Request, time.Time) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), akid, "AKIDUNKNOWN", 1))
			return fromHTTP(r, hashHex([]byte(body))), now
		}, CodeUnrecognizedClient, "security token included in the request is invalid"},
		{"expired", func(t *testing.T, r *http.Request) (*Request, time.Time) {
			return fromHTTP(r, hashHex([]byte(body))), signTime.Add(5*time.Minute + time.Second)
		}, CodeInvalidSignature, "Signature expired: 20261125T120000Z is now earlier than 20261125T120001Z (20261125T120501Z - 5 min.)"},
		{"future", func(t *testing.T, r *http.Request) (*Request, time.Time) {
			return fromHTTP(r, hashHex([]byte(body))), signTime.Add(-5*time.Minute - time.Second)
		}, CodeInvalidSignature, "Signature not yet current"},
		{"wrong-service", func(t *testing.T, r *http.Request) (*Request, time.Time) {
			r2 := jsonRequest(t, "127.0.0.1:8080", "/describeStream", body)
			err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret},
				r2, hashHex([]byte(body)), "s3", region, signTime)
			if err != nil {
				t.Fatal(err)
			}
			return fromHTTP(r2, hashHex([]byte(body))), now
		}, CodeInvalidSignature, "scoped to correct service: 'kinesisvideo'"},
		{"date-mismatch", func(t *testing.T, r *http.Request) (*Request, time.Time) {
			r.Header.Set("X-Amz-Date", "20261126T000000Z")
			return fromHTTP(r, hashHex([]byte(body))), time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
		}, CodeInvalidSignature, "Date in Credential scope does not match"},
		{"no-date", func(t *testing.T, r *http.Request) (*Request, time.Time) {
			r.Header.Del("X-Amz-Date")
			return fromHTTP(r, hashHex([]byte(body))), now
		}, CodeIncompleteSignature, "'X-Amz-Date' or a 'Date' header"},
		{"garbled-header", func(t *testing.T, r *http.Request) (*Request, time.Time) {
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential")
			return fromHTTP(r, hashHex([]byte(body))), now
		}, CodeIncompleteSignature, "key=value"},
		{"other-algorithm", func(t *testing.T, r *http.Request) (*Request, time.Time) {
			r.Header.Set("Authorization", "AWS AKIDEXAMPLE:abc")
			return fromHTTP(r, hashHex([]byte(body))), now
		}, CodeIncompleteSignature, "AWS4-HMAC-SHA256"},
		{"short-credential", func(t *testing.T, r *http.Request) (*Request, time.Time) {
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261125, SignedHeaders=host, Signature=00")
			return fromHTTP(r, hashHex([]byte(body))), now
		}, CodeIncompleteSignature, "5 slash-delimited"},
		{"host-unsigned", func(t *testing.T, r *http.Request) (*Request, time.Time) {
			a := r.Header.Get("Authorization")
			a = strings.Replace(a, "host;", "", 1)
			r.Header.Set("Authorization", a)
			return fromHTTP(r, hashHex([]byte(body))), now
		}, CodeIncompleteSignature, "'Host'"},
		{"bad-hex-signature", func(t *testing.T, r *http.Request) (*Request, time.Time) {
			a := r.Header.Get("Authorization")
			i := strings.Index(a, "Signature=")
			r.Header.Set("Authorization", a[:i]+"Signature=zz")
			return fromHTTP(r, hashHex([]byte(body))), now
		}, CodeInvalidSignature, "does not match"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, at := tc.mutate(t, good(t))
			_, err := newVerifier(at).Verify(req)
			wantCode(t, err, tc.code)
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("message %q does not contain %q", err.Error(), tc.msg)
			}
		})
	}
}

func TestVerifyRegionRestriction(t *testing.T) {
	req := jsonRequest(t, "h", "/listStreams", "{}")
	sign(t, req, hashHex([]byte("{}")), secret, signTime)
	v := NewVerifier(StaticCredentials{akid: secret}, Options{Service: "kinesisvideo", Region: "eu-west-1", Now: func() time.Time { return signTime }})
	_, err := v.Verify(fromHTTP(req, hashHex([]byte("{}"))))
	wantCode(t, err, CodeInvalidSignature)
	v = NewVerifier(StaticCredentials{akid: secret}, Options{Service: "kinesisvideo", Region: region, Now: func() time.Time { return signTime }})
	if _, err := v.Verify(fromHTTP(req, hashHex([]byte("{}")))); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyPresigned(t *testing.T) {
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:8080/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=tok%2F1", nil)
	q := req.URL.Query()
	q.Set("X-Amz-Expires", "300")
	req.URL.RawQuery = q.Encode()
	signed, _, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret},
		req, hashHex(nil), "kinesisvideo", region, signTime)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(signed)
	if err != nil {
		t.Fatal(err)
	}
	r := &Request{Method: http.MethodGet, Path: u.EscapedPath(), RawQuery: u.RawQuery, PayloadHash: hashHex(nil),
		Header: func(name string) (string, bool) {
			if name == "host" {
				return u.Host, true
			}
			return "", false
		}}
	if _, err := newVerifier(signTime.Add(299 * time.Second)).Verify(r); err != nil {
		t.Fatalf("presigned within expiry: %v", err)
	}
	_, err = newVerifier(signTime.Add(301 * time.Second)).Verify(r)
	wantCode(t, err, CodeInvalidSignature)
	r.RawQuery = strings.Replace(r.RawQuery, "tok%2F1", "tok%2F2", 1)
	_, err = newVerifier(signTime.Add(time.Second)).Verify(r)
	wantCode(t, err, CodeInvalidSignature)
	r.RawQuery = "X-Amz-Algorithm=AWS4-HMAC-SHA256"
	_, err = newVerifier(signTime).Verify(r)
	wantCode(t, err, CodeIncompleteSignature)
}

func TestKeyCacheFollowsRotatedSecret(t *testing.T) {
	creds := StaticCredentials{akid: secret}
	v := NewVerifier(creds, Options{Service: "kinesisvideo", Now: func() time.Time { return signTime }})
	req := jsonRequest(t, "h", "/listStreams", "{}")
	sign(t, req, hashHex([]byte("{}")), secret, signTime)
	if _, err := v.Verify(fromHTTP(req, hashHex([]byte("{}")))); err != nil {
		t.Fatal(err)
	}
	creds[akid] = "rotated"
	_, err := v.Verify(fromHTTP(req, hashHex([]byte("{}"))))
	wantCode(t, err, CodeInvalidSignature)
}

func FuzzVerify(f *testing.F) {
	req := jsonRequest(f, "127.0.0.1:8080", "/describeStream", "{}")
	sign(f, req, hashHex([]byte("{}")), secret, signTime)
	f.Add(req.Header.Get("Authorization"), req.Header.Get("X-Amz-Date"), "/describeStream", "")
	f.Add("AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host, Signature=00", "x", "/%zz", "a=%&b=%2")
	f.Add("", "", "", "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a/b/c/d/e&X-Amz-Signature=1&X-Amz-Date=2&X-Amz-SignedHeaders=host&X-Amz-Expires=-1")
	v := newVerifier(signTime)
	f.Fuzz(func(t *testing.T, auth, date, path, query string) {
		r := &Request{Method: "POST", Path: path, RawQuery: query, PayloadHash: hashHex([]byte("{}")),
			Header: func(name string) (string, bool) {
				switch name {
				case "authorization":
					return auth, auth != ""
				case "x-amz-date":
					return date, date != ""
				case "host":
					return "127.0.0.1:8080", true
				}
				return "", false
			}}
		_, err := v.Verify(r)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("non-*Error %T", err)
			}
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	body := []byte(`{"StreamName":"cam-1"}`)
	req := jsonRequest(b, "127.0.0.1:8080", "/describeStream", string(body))
	sign(b, req, hashHex(body), secret, signTime)
	auth, date := req.Header.Get("Authorization"), req.Header.Get("X-Amz-Date")
	r := &Request{Method: "POST", Path: "/describeStream", PayloadHash: hashHex(body),
		Header: func(name string) (string, bool) {
			switch name {
			case "authorization":
				return auth, true
			case "x-amz-date":
				return date, true
			case "host":
				return "127.0.0.1:8080", true
			case "content-type":
				return "application/json", true
			case "content-length":
				return strconv.Itoa(len(body)), true
			}
			return "", false
		}}
	v := newVerifier(signTime)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(r); err != nil {
			b.Fatal(err)
		}
	}
}
