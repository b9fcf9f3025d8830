package cluster

import (
	"bytes"
	"strings"
	"testing"
)

// TestOptionsValidateReportsEveryField: Start refuses bad options with
// each one named.
func TestOptionsValidateReportsEveryField(t *testing.T) {
	o := Options{Bind: "nowhere", Advertise: "10.0.0.1:99999", Seeds: []string{"10.0.0.2"}, Key: make([]byte, 7)}
	_, err := Start(o)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, what := range []string{"bind", "advertise", "seed", "the gossip key"} {
		if !strings.Contains(err.Error(), "cluster: "+what) {
			t.Errorf("%q does not name %s", err, what)
		}
	}
	good := Options{Bind: "127.0.0.1:7946", Seeds: []string{"10.0.0.2:7946"}, Key: make([]byte, 32)}
	if err := good.Validate(); err != nil {
		t.Fatalf("good options refused: %v", err)
	}
}

// TestSessionKey: the session-token key is the same for one cluster key,
// differs between cluster keys, and is neither the gossip key nor the
// peer key; no cluster key, no session key (the box keeps its own).
func TestSessionKey(t *testing.T) {
	k1, k2 := []byte("0123456789abcdef0123456789abcdef"), []byte("fedcba9876543210fedcba9876543210")
	a, b := SessionKey(k1), SessionKey(append([]byte(nil), k1...))
	if len(a) != 32 || !bytes.Equal(a, b) {
		t.Fatalf("SessionKey of one key: %x, %x", a, b)
	}
	if bytes.Equal(a, SessionKey(k2)) || bytes.Equal(a, k1) || bytes.Equal(a, PeerKey(k1)) {
		t.Fatal("SessionKey equals another key's, the gossip key or the peer key")
	}
	if SessionKey(nil) != nil {
		t.Fatal("SessionKey without a cluster key")
	}
}
