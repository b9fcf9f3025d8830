package sigv4

import (
	"bytes"
	"crypto/sha256"
	"slices"
	"strings"
)

// This file builds the pieces of the SigV4 canonical request. Everything
// appends into caller-owned buffers (the pooled scratch) so the hot path
// does not allocate.

const upperHex = "0123456789ABCDEF"

// unreserved reports the RFC 3986 unreserved set, the only bytes SigV4
// leaves unescaped (besides '/' in paths).
func unreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// appendURIEncode appends s with every byte outside the unreserved set
// percent-encoded (upper-case hex); '/' is kept when keepSlash.
func appendURIEncode(dst []byte, s []byte, keepSlash bool) []byte {
	for _, c := range s {
		if unreserved(c) || (keepSlash && c == '/') {
			dst = append(dst, c)
		} else {
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return dst
}

// appendCanonicalURI appends the canonical URI of a raw (as received,
// still percent-encoded) path. Services other than S3 sign the path
// URI-encoded once more than it travels on the wire, segment by segment, so
// "%2F" becomes "%252F" and "/" stays "/". The path is not normalised
// (no dot-segment removal): the SDKs used with KVS sign it verbatim.
func appendCanonicalURI(dst []byte, path string) []byte {
	if path == "" {
		return append(dst, '/')
	}
	for i := 0; i < len(path); i++ {
		c := path[i]
		if unreserved(c) || c == '/' {
			dst = append(dst, c)
		} else {
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return dst
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// appendQueryUnescape appends the decoded form of one query component:
// "+" is a space, "%XX" a byte; a '%' not followed by two hex digits is
// kept literally (so it re-encodes as "%25"), never an error.
func appendQueryUnescape(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '+':
			dst = append(dst, ' ')
		case '%':
			if i+2 < len(s) {
				hi, ok1 := unhex(s[i+1])
				lo, ok2 := unhex(s[i+2])
				if ok1 && ok2 {
					dst = append(dst, hi<<4|lo)
					i += 2
					continue
				}
			}
			dst = append(dst, c)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// qparam locates one query parameter in a queryParams' buffers:
// dec[dk:dv] is the decoded key, dec[dv:de] the decoded value,
// enc[ek:ev] the encoded key, enc[ev:ee] the encoded value.
type qparam struct {
	dk, dv, de int
	ek, ev, ee int
}

// queryParams is a parsed query string. Offsets rather than slices are
// kept because the buffers grow while parsing.
type queryParams struct {
	dec, enc []byte
	ps       []qparam
}

func (q *queryParams) reset() {
	q.dec, q.enc, q.ps = q.dec[:0], q.enc[:0], q.ps[:0]
}

// parse splits raw on '&' (empty pieces are skipped, as url.ParseQuery
// does), decodes each key and value and re-encodes them the SigV4 way.
func (q *queryParams) parse(raw string) {
	for len(raw) > 0 {
		piece := raw
		if i := strings.IndexByte(raw, '&'); i >= 0 {
			piece, raw = raw[:i], raw[i+1:]
		} else {
			raw = ""
		}
		if piece == "" {
			continue
		}
		key, val := piece, ""
		if i := strings.IndexByte(piece, '='); i >= 0 {
			key, val = piece[:i], piece[i+1:]
		}
		var p qparam
		p.dk = len(q.dec)
		q.dec = appendQueryUnescape(q.dec, key)
		p.dv = len(q.dec)
		q.dec = appendQueryUnescape(q.dec, val)
		p.de = len(q.dec)
		p.ek = len(q.enc)
		q.enc = appendURIEncode(q.enc, q.dec[p.dk:p.dv], false)
		p.ev = len(q.enc)
		q.enc = appendURIEncode(q.enc, q.dec[p.dv:p.de], false)
		p.ee = len(q.enc)
		q.ps = append(q.ps, p)
	}
}

func (q *queryParams) key(p *qparam) []byte   { return q.dec[p.dk:p.dv] }
func (q *queryParams) value(p *qparam) []byte { return q.dec[p.dv:p.de] }

// lookup returns the decoded value of the parameter named name and how
// many times it occurs.
func (q *queryParams) lookup(name string) (val []byte, n int) {
	for i := range q.ps {
		p := &q.ps[i]
		if string(q.key(p)) == name {
			if n == 0 {
				val = q.value(p)
			}
			n++
		}
	}
	return val, n
}

// appendCanonical sorts the parameters by encoded key, then encoded value
// (SigV4 sorts after encoding), and appends "k=v&k=v". A parameter whose
// decoded key equals skip (X-Amz-Signature for presigned requests) is left
// out.
func (q *queryParams) appendCanonical(dst []byte, skip string) []byte {
	enc := q.enc
	slices.SortFunc(q.ps, func(a, b qparam) int {
		if c := bytes.Compare(enc[a.ek:a.ev], enc[b.ek:b.ev]); c != 0 {
			return c
		}
		return bytes.Compare(enc[a.ev:a.ee], enc[b.ev:b.ee])
	})
	first := true
	for i := range q.ps {
		p := &q.ps[i]
		if skip != "" && string(q.key(p)) == skip {
			continue
		}
		if !first {
			dst = append(dst, '&')
		}
		first = false
		dst = append(dst, enc[p.ek:p.ev]...)
		dst = append(dst, '=')
		dst = append(dst, enc[p.ev:p.ee]...)
	}
	return dst
}

// appendHeaderValue appends one header value in canonical form: leading
// and trailing spaces/tabs trimmed, inner runs of spaces collapsed to one.
func appendHeaderValue(dst []byte, v string) []byte {
	i, j := 0, len(v)
	for i < j && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	for j > i && (v[j-1] == ' ' || v[j-1] == '\t') {
		j--
	}
	prevSpace := false
	for k := i; k < j; k++ {
		c := v[k]
		if c == ' ' {
			if prevSpace {
				continue
			}
			prevSpace = true
		} else {
			prevSpace = false
		}
		dst = append(dst, c)
	}
	return dst
}

// decodeHexSig decodes a 64-digit hex signature (either case).
func decodeHexSig(s string) (out [sha256.Size]byte, ok bool) {
	if len(s) != 2*sha256.Size {
		return out, false
	}
	for i := 0; i < sha256.Size; i++ {
		hi, ok1 := unhex(s[2*i])
		lo, ok2 := unhex(s[2*i+1])
		if !ok1 || !ok2 {
			return out, false
		}
		out[i] = hi<<4 | lo
	}
	return out, true
}

const lowerHex = "0123456789abcdef"

func appendHex(dst []byte, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, lowerHex[c>>4], lowerHex[c&15])
	}
	return dst
}

// hmacSHA256 computes HMAC-SHA256(key, msg) (RFC 2104) using tmp as
// scratch, without allocating; tmp is returned (possibly grown) for reuse.
// crypto/hmac allocates its state on every call, which the per-request
// signature would pay for.
func hmacSHA256(key, msg, tmp []byte) (sum [sha256.Size]byte, _ []byte) {
	const block = 64
	var k [block]byte
	if len(key) > block {
		h := sha256.Sum256(key)
		copy(k[:], h[:])
	} else {
		copy(k[:], key)
	}
	tmp = tmp[:0]
	for _, c := range k {
		tmp = append(tmp, c^0x36)
	}
	tmp = append(tmp, msg...)
	inner := sha256.Sum256(tmp)
	tmp = tmp[:0]
	for _, c := range k {
		tmp = append(tmp, c^0x5c)
	}
	tmp = append(tmp, inner[:]...)
	return sha256.Sum256(tmp), tmp
}
