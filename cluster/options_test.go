package cluster

import (
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
