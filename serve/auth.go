package serve

import (
	"bytes"
	"strings"
	"time"

	"github.com/kvsedge/kvsedge/serve/sigv4"
	"github.com/valyala/fasthttp"
)

// Authenticator checks that a request is signed by a known key.
// payloadHash is the hex SHA-256 of the body as the server read it (for a
// streaming route, the hash the client is expected to have signed).
type Authenticator interface {
	Authenticate(ctx *fasthttp.RequestCtx, payloadHash string) error
}

// SigV4Auth authenticates requests signed with AWS Signature Version 4 for
// the kinesisvideo service, in any region.
type SigV4Auth struct {
	v *sigv4.Verifier
}

// NewSigV4Auth accepts the given access key id → secret pairs, with signing
// times at most maxSkew from the server clock (0: AWS's 5 minutes).
func NewSigV4Auth(keys map[string]string, maxSkew time.Duration) *SigV4Auth {
	creds := make(sigv4.StaticCredentials, len(keys))
	for k, v := range keys {
		creds[k] = v
	}
	return &SigV4Auth{v: sigv4.NewVerifier(creds, sigv4.Options{Service: "kinesisvideo", MaxSkew: maxSkew})}
}

// Authenticate implements Authenticator. Errors are *sigv4.Error.
func (a *SigV4Auth) Authenticate(ctx *fasthttp.RequestCtx, payloadHash string) error {
	h := &ctx.Request.Header
	uri := ctx.Request.URI()
	req := sigv4.Request{
		Method:      string(h.Method()),
		Path:        string(uri.PathOriginal()),
		RawQuery:    string(uri.QueryString()),
		PayloadHash: payloadHash,
		Header: func(name string) (string, bool) {
			vs := h.PeekAll(name)
			switch len(vs) {
			case 0:
				if name == "transfer-encoding" && h.ContentLength() == -1 {
					return "chunked", true
				}
				return "", false
			case 1:
				return string(vs[0]), true
			}
			return string(bytes.Join(vs, []byte(","))), true
		},
	}
	if i := strings.IndexByte(req.Path, '?'); i >= 0 {
		req.Path = req.Path[:i]
	}
	_, err := a.v.Verify(&req)
	return err
}
