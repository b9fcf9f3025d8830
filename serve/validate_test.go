package serve

import (
	"strings"
	"testing"
)

// TestOptionsValidateReportsEveryField: New refuses options with every bad
// field named, not only the first.
func TestOptionsValidateReportsEveryField(t *testing.T) {
	o := Options{DataEndpoint: "ftp://x/path", GetMediaIdleTimeout: 1, PutMediaIdleClose: 1, MaxJSONBodyBytes: 1}
	o.ensureDefaults()
	_, err := New(nil, o)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, field := range []string{"DataEndpoint", "GetMediaIdleTimeout", "PutMediaIdleClose", "MaxJSONBodyBytes"} {
		if !strings.Contains(err.Error(), "serve: "+field+" ") {
			t.Errorf("%q does not name %s", err, field)
		}
	}
	ok := Options{DataEndpoint: "https://box.lan:8443"}
	ok.ensureDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
}
