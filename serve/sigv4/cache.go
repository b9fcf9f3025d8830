package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"strings"
	"sync"
)

// keyCacheSize bounds the derived-key cache. A signing key is valid for one
// (access key, day, region, service), so even a busy server needs a few
// entries per key per day; at the bound an arbitrary entry is evicted.
const keyCacheSize = 1024

// keyEntry is one derived signing key.
//
// Invariant: every string in an entry is owned by the cache (copied or
// obtained from the CredentialStore), never a view of request memory,
// because callers may pass zero-copy strings that die with the request.
type keyEntry struct {
	accessKeyID string // copy of the access key id, returned by Verify
	date        string
	region      string
	service     string
	secret      string // secret the key was derived from; a rotated secret misses
	key         [sha256.Size]byte
}

type keyCache struct {
	mu sync.RWMutex
	m  map[string]*keyEntry // key: akid NUL date NUL region NUL service
}

// appendCacheKey builds the map key. Elements could contain NUL, so a hit
// is confirmed against the entry's own fields before use (see get).
func appendCacheKey(dst []byte, akid, date, region, service string) []byte {
	dst = append(dst, akid...)
	dst = append(dst, 0)
	dst = append(dst, date...)
	dst = append(dst, 0)
	dst = append(dst, region...)
	dst = append(dst, 0)
	return append(dst, service...)
}

// get returns the entry holding the signing key for (akid, date, region,
// service) derived from secret, and the cache's own copy of akid. ck is the prebuilt cache
// key (appendCacheKey); looking it up as string(ck) does not allocate.
func (c *keyCache) get(ck []byte, akid, secret, date, region, service string) *keyEntry {
	c.mu.RLock()
	e := c.m[string(ck)]
	c.mu.RUnlock()
	if e != nil && e.secret == secret && e.accessKeyID == akid &&
		e.date == date && e.region == region && e.service == service {
		return e
	}
	e = &keyEntry{
		accessKeyID: strings.Clone(akid), // copies: inputs may view request memory
		date:        strings.Clone(date),
		region:      strings.Clone(region),
		service:     strings.Clone(service),
		secret:      secret,
		key:         deriveSigningKey(secret, date, region, service),
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]*keyEntry)
	}
	if _, ok := c.m[string(ck)]; !ok && len(c.m) >= keyCacheSize {
		for k := range c.m { // evict one arbitrary entry
			delete(c.m, k)
			break
		}
	}
	c.m[string(ck)] = e
	c.mu.Unlock()
	return e
}

// deriveSigningKey is the SigV4 key derivation:
// HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request").
func deriveSigningKey(secret, date, region, service string) (out [sha256.Size]byte) {
	k := []byte("AWS4" + secret)
	for _, part := range [...]string{date, region, service, "aws4_request"} {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(part))
		k = m.Sum(nil)
	}
	copy(out[:], k)
	return out
}
