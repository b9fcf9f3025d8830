package sigv4

import (
	"crypto/sha256"
	"crypto/subtle"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	algorithm     = "AWS4-HMAC-SHA256"
	terminator    = "aws4_request"
	amzDateLayout = "20060102T150405Z"
	// maxPresignExpiry is the longest X-Amz-Expires SigV4 allows (7 days).
	maxPresignExpiry = 7 * 24 * time.Hour
)

// EmptyPayloadHash is the hex SHA-256 of the empty string: what the KVS C
// producer signs for PutMedia, whose body is streamed.
const EmptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// CredentialStore resolves an access key id to its secret.
type CredentialStore interface {
	Secret(accessKeyID string) (secret string, ok bool)
}

// StaticCredentials is a fixed access key id → secret map.
type StaticCredentials map[string]string

// Secret implements CredentialStore.
func (s StaticCredentials) Secret(akid string) (string, bool) {
	v, ok := s[akid]
	return v, ok
}

// Options configures a Verifier.
type Options struct {
	// Service is the signing name requests must be scoped to.
	Service string
	// Region, when not empty, is the only region accepted in the scope.
	// Empty accepts any region: an edge box answers for whatever region its
	// clients were configured with.
	Region string
	// MaxSkew is how far the signing time may be from the server clock.
	// Defaults to 5 minutes, as AWS.
	MaxSkew time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
}

// Request describes an incoming request as received on the wire.
type Request struct {
	Method string
	// Path is the raw request path, still percent-encoded as sent.
	Path string
	// RawQuery is the query string without '?', still encoded.
	RawQuery string
	// Header returns the value of the header named (case-insensitively)
	// name, and whether it is present. For repeated headers it should
	// return the values joined by ",".
	Header func(name string) (string, bool)
	// PayloadHash is the lower-case hex SHA-256 the signature must cover:
	// the hash of the body the server read, or EmptyPayloadHash for a
	// streamed body signed the way the KVS C producer signs PutMedia.
	PayloadHash string
}

// Verifier checks SigV4 signatures. It is safe for concurrent use.
type Verifier struct {
	creds CredentialStore
	opts  Options
	keys  keyCache
	pool  sync.Pool // *scratch
}

// NewVerifier returns a Verifier over creds.
func NewVerifier(creds CredentialStore, opts Options) *Verifier {
	if opts.MaxSkew <= 0 {
		opts.MaxSkew = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	v := &Verifier{creds: creds, opts: opts}
	v.pool.New = func() any { return new(scratch) }
	return v
}

// scratch holds the per-verification buffers, reused through a pool so a
// verification does not allocate in steady state.
type scratch struct {
	canon   []byte
	sts     []byte
	hmacTmp []byte
	ck      []byte
	q       queryParams
}

// authFields is what a request says about its signature, from either the
// Authorization header or presigned query parameters.
type authFields struct {
	akid, date, region, service, term string
	signedHeaders                     string
	signature                         string
	amzDate                           string
	presigned                         bool
	expires                           time.Duration
}

// Verify checks the request's signature and returns the access key id it
// was signed with. Every failure is an *Error.
func (v *Verifier) Verify(r *Request) (accessKeyID string, err error) {
	sc := v.pool.Get().(*scratch)
	defer v.pool.Put(sc)
	sc.q.reset()
	sc.q.parse(r.RawQuery)

	var f authFields
	if e := v.parseAuth(r, sc, &f); e != nil {
		return "", e
	}
	signedAt, perr := time.Parse(amzDateLayout, f.amzDate)
	if perr != nil {
		return "", incomplete("X-Amz-Date must be in the ISO8601 basic format yyyyMMdd'T'HHmmss'Z', not '" + f.amzDate + "'.")
	}
	if f.date != f.amzDate[:8] {
		return "", invalid("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '" +
			f.date + "' != '" + f.amzDate[:8] + "', from '" + f.amzDate + "'.")
	}
	if f.service != v.opts.Service {
		return "", invalid("Credential should be scoped to correct service: '" + v.opts.Service + "'. ")
	}
	if v.opts.Region != "" && f.region != v.opts.Region {
		return "", invalid("Credential should be scoped to a valid region, not '" + f.region + "'. ")
	}
	if f.term != terminator {
		return "", invalid("Credential should be scoped with a valid terminator: 'aws4_request', not '" + f.term + "'. ")
	}
	now := v.opts.Now()
	if f.presigned {
		if signedAt.Add(f.expires).Before(now) {
			return "", invalid("Signature expired: " + fmtAmz(signedAt.Add(f.expires)) + " is now earlier than " + fmtAmz(now) + ".")
		}
		if signedAt.After(now.Add(v.opts.MaxSkew)) {
			return "", errNotYet(signedAt, now, v.opts.MaxSkew)
		}
	} else {
		if signedAt.Before(now.Add(-v.opts.MaxSkew)) {
			return "", errExpired(signedAt, now, v.opts.MaxSkew)
		}
		if signedAt.After(now.Add(v.opts.MaxSkew)) {
			return "", errNotYet(signedAt, now, v.opts.MaxSkew)
		}
	}
	want, ok := decodeHexSig(f.signature)
	if !ok {
		return "", invalid(msgMismatch)
	}
	secret, ok := v.creds.Secret(f.akid)
	if !ok {
		return "", newErr(CodeUnrecognizedClient, msgUnrecognized)
	}

	// Canonical request.
	c := sc.canon[:0]
	c = append(c, r.Method...)
	c = append(c, '\n')
	c = appendCanonicalURI(c, r.Path)
	c = append(c, '\n')
	skip := ""
	if f.presigned {
		skip = "X-Amz-Signature"
	}
	c = sc.q.appendCanonical(c, skip)
	c = append(c, '\n')
	hasHost := false
	for rest := f.signedHeaders; rest != ""; {
		name := rest
		if i := strings.IndexByte(rest, ';'); i >= 0 {
			name, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		if name == "host" {
			hasHost = true
		}
		val, _ := r.Header(name)
		c = append(c, name...)
		c = append(c, ':')
		c = appendHeaderValue(c, val)
		c = append(c, '\n')
	}
	if !hasHost {
		sc.canon = c
		return "", incomplete("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
	}
	c = append(c, '\n')
	c = append(c, f.signedHeaders...)
	c = append(c, '\n')
	payload := r.PayloadHash
	if f.presigned {
		if h, ok := r.Header("x-amz-content-sha256"); ok {
			payload = h
		} else if _, n := sc.q.lookup("X-Amz-Content-Sha256"); n == 0 && r.PayloadHash == "" {
			payload = "UNSIGNED-PAYLOAD"
		}
	}
	c = append(c, payload...)
	sc.canon = c
	canonSum := sha256.Sum256(c)

	// String to sign.
	s := sc.sts[:0]
	s = append(s, algorithm...)
	s = append(s, '\n')
	s = append(s, f.amzDate...)
	s = append(s, '\n')
	s = append(s, f.date...)
	s = append(s, '/')
	s = append(s, f.region...)
	s = append(s, '/')
	s = append(s, f.service...)
	s = append(s, '/')
	s = append(s, terminator...)
	s = append(s, '\n')
	s = appendHex(s, canonSum[:])
	sc.sts = s

	sc.ck = appendCacheKey(sc.ck[:0], f.akid, f.date, f.region, f.service)
	entry := v.keys.get(sc.ck, f.akid, secret, f.date, f.region, f.service)
	var got [sha256.Size]byte
	got, sc.hmacTmp = hmacSHA256(entry.key[:], s, sc.hmacTmp)
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return "", &Error{Code: CodeInvalidSignature, Message: msgMismatch, CanonicalRequest: string(c)}
	}
	return entry.accessKeyID, nil
}

// parseAuth fills f from the Authorization header or, failing that, from
// presigned query parameters.
func (v *Verifier) parseAuth(r *Request, sc *scratch, f *authFields) *Error {
	if h, ok := r.Header("authorization"); ok {
		return parseAuthorization(r, h, f)
	}
	if _, n := sc.q.lookup("X-Amz-Algorithm"); n > 0 {
		return parsePresigned(sc, f)
	}
	return newErr(CodeMissingAuthenticationToken, msgMissingToken)
}

// parseAuthorization parses
// "AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request,
// SignedHeaders=a;b, Signature=hex" (spaces after commas optional).
func parseAuthorization(r *Request, h string, f *authFields) *Error {
	alg, rest, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || alg != algorithm {
		return incomplete("Authorization header requires the '" + algorithm + "' algorithm.")
	}
	var cred, sh, sig string
	var haveCred, haveSH, haveSig bool
	for _, part := range strings.Split(rest, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return incomplete("Authorization header requires each component to be of the form key=value, not '" + strings.TrimSpace(part) + "'.")
		}
		switch k {
		case "Credential":
			cred, haveCred = val, true
		case "SignedHeaders":
			sh, haveSH = val, true
		case "Signature":
			sig, haveSig = val, true
		}
	}
	switch {
	case !haveCred:
		return incomplete("Authorization header requires 'Credential' parameter. Authorization=" + h)
	case !haveSH:
		return incomplete("Authorization header requires 'SignedHeaders' parameter. Authorization=" + h)
	case !haveSig:
		return incomplete("Authorization header requires 'Signature' parameter. Authorization=" + h)
	}
	if e := splitCredential(cred, f); e != nil {
		return e
	}
	f.signedHeaders, f.signature = sh, sig
	d, ok := r.Header("x-amz-date")
	if !ok {
		// Date (RFC 1123) is allowed by SigV4 when X-Amz-Date is absent.
		hd, ok := r.Header("date")
		if !ok {
			return incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=" + h)
		}
		t, err := time.Parse(time.RFC1123, hd)
		if err != nil {
			return incomplete("Date header '" + hd + "' is not an RFC 1123 date.")
		}
		d = fmtAmz(t)
	}
	f.amzDate = d
	if len(d) < 8 {
		return incomplete("X-Amz-Date must be in the ISO8601 basic format yyyyMMdd'T'HHmmss'Z', not '" + d + "'.")
	}
	return nil
}

func parsePresigned(sc *scratch, f *authFields) *Error {
	get := func(name string) (string, bool) {
		v, n := sc.q.lookup(name)
		return string(v), n == 1
	}
	alg, ok1 := get("X-Amz-Algorithm")
	cred, ok2 := get("X-Amz-Credential")
	sig, ok3 := get("X-Amz-Signature")
	date, ok4 := get("X-Amz-Date")
	sh, ok5 := get("X-Amz-SignedHeaders")
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return incomplete(msgPresignMissing)
	}
	if alg != algorithm {
		return incomplete("X-Amz-Algorithm only supports \"" + algorithm + "\".")
	}
	if e := splitCredential(cred, f); e != nil {
		return e
	}
	f.presigned = true
	f.signedHeaders, f.signature, f.amzDate = sh, sig, date
	f.expires = maxPresignExpiry
	if exp, ok := get("X-Amz-Expires"); ok {
		secs, err := strconv.Atoi(exp)
		if err != nil || secs < 0 || time.Duration(secs)*time.Second > maxPresignExpiry {
			return incomplete("X-Amz-Expires must be a number of seconds between 0 and 604800, not '" + exp + "'.")
		}
		f.expires = time.Duration(secs) * time.Second
	}
	if len(date) < 8 {
		return incomplete("X-Amz-Date must be in the ISO8601 basic format yyyyMMdd'T'HHmmss'Z', not '" + date + "'.")
	}
	return nil
}

// splitCredential splits "AKID/yyyymmdd/region/service/aws4_request".
func splitCredential(cred string, f *authFields) *Error {
	parts := strings.Split(cred, "/")
	if len(parts) != 5 || parts[0] == "" {
		return incomplete("Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '" + cred + "'.")
	}
	f.akid, f.date, f.region, f.service, f.term = parts[0], parts[1], parts[2], parts[3], parts[4]
	return nil
}
