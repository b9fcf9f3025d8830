package sigv4

import (
	"net/http"
	"strconv"
	"time"
)

// Code is the AWS error type a failed verification maps to. Clients (the
// SDKs, botocore, the KVS producers) recognise these names in the
// x-amzn-ErrorType header / "__type" body field.
type Code string

// Error codes returned by Verify.
const (
	// CodeMissingAuthenticationToken: the request carries neither an
	// Authorization header nor presigned query parameters.
	CodeMissingAuthenticationToken Code = "MissingAuthenticationTokenException"
	// CodeIncompleteSignature: the signature material is malformed or
	// incomplete (bad Authorization syntax, missing X-Amz-Date, host not
	// signed, …).
	CodeIncompleteSignature Code = "IncompleteSignatureException"
	// CodeUnrecognizedClient: the access key id is unknown.
	CodeUnrecognizedClient Code = "UnrecognizedClientException"
	// CodeInvalidSignature: well formed but wrong — signature mismatch,
	// wrong scope, or a date outside the allowed window.
	CodeInvalidSignature Code = "InvalidSignatureException"
)

// Error is the only error type Verify returns.
type Error struct {
	Code    Code
	Message string
	// CanonicalRequest is set only for a signature mismatch: the canonical
	// request the server computed, for server-side logs when a client's
	// signer disagrees. It is derived from the request alone (no secret).
	CanonicalRequest string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Status is the HTTP status to answer with; 403 for every code.
func (e *Error) Status() int { return http.StatusForbidden }

// Messages that mirror what AWS answers, so logs and client errors read
// the same as against the real service.
const (
	msgMissingToken   = "Missing Authentication Token"
	msgUnrecognized   = "The security token included in the request is invalid."
	msgMismatch       = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
	msgPresignMissing = "AWS query-string parameters must include 'X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Signature', 'X-Amz-Date', 'X-Amz-SignedHeaders'. Re-examine the query-string parameters."
)

func newErr(c Code, msg string) *Error { return &Error{Code: c, Message: msg} }

func incomplete(msg string) *Error { return newErr(CodeIncompleteSignature, msg) }

func invalid(msg string) *Error { return newErr(CodeInvalidSignature, msg) }

// fmtAmz formats t the way X-Amz-Date is written.
func fmtAmz(t time.Time) string { return t.UTC().Format(amzDateLayout) }

// fmtDur writes d as AWS does in skew messages ("5 min."), falling back to
// seconds when d is not a whole number of minutes.
func fmtDur(d time.Duration) string {
	if d%time.Minute == 0 {
		return strconv.FormatInt(int64(d/time.Minute), 10) + " min."
	}
	return strconv.FormatInt(int64(d/time.Second), 10) + " sec."
}

// errExpired: the signing time is older than now-window.
func errExpired(signed, now time.Time, window time.Duration) *Error {
	return invalid("Signature expired: " + fmtAmz(signed) + " is now earlier than " +
		fmtAmz(now.Add(-window)) + " (" + fmtAmz(now) + " - " + fmtDur(window) + ")")
}

// errNotYet: the signing time is later than now+window.
func errNotYet(signed, now time.Time, window time.Duration) *Error {
	return invalid("Signature not yet current: " + fmtAmz(signed) + " is still later than " +
		fmtAmz(now.Add(window)) + " (" + fmtAmz(now) + " + " + fmtDur(window) + ")")
}
