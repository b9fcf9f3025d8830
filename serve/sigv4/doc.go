// Package sigv4 verifies AWS Signature Version 4 on incoming requests.
//
// It owns the server side of SigV4 only: parsing the Authorization header
// (or presigned X-Amz-* query parameters), rebuilding the canonical request
// from the request as received, deriving and caching signing keys, checking
// the signing time against a skew window, and comparing signatures in
// constant time. It knows nothing of HTTP servers: callers describe a
// request with a Request value (method, raw path, raw query, a header
// lookup and the payload hash they want checked).
//
// Failures are *Error values whose Code is the AWS error type the SDKs
// recognise (MissingAuthenticationTokenException,
// IncompleteSignatureException, UnrecognizedClientException,
// InvalidSignatureException); every one maps to HTTP 403.
//
// Client shapes it accepts (shared/kvs-api.md §1.4): botocore signs
// content-type;host;x-amz-date, aws-sdk-go-v2 adds amz-sdk-* and
// content-length, the KVS C producer signs Host without the port, signs
// PutMedia with the SHA-256 of the empty string and adds
// X-Amz-Security-Token after signing (so it is not required to be signed).
package sigv4
