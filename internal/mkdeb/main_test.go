package main

import "testing"

// TestDebVersion: git describe's versions become Debian versions (digits
// first, no leading v, only characters dpkg accepts).
func TestDebVersion(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3":                 "1.2.3",
		"v1.2.3-4-gabcdef":       "1.2.3-4-gabcdef",
		"v1.2.3-4-gabcdef-dirty": "1.2.3-4-gabcdef-dirty",
		"49df27d":                "0.0.0~49df27d",
		"49df27d-dirty":          "0.0.0~49df27d-dirty",
		"dev":                    "0.0.0~dev",
		"1.0 beta/2":             "1.0~beta~2",
	} {
		if got := debVersion(in); got != want {
			t.Errorf("debVersion(%q) = %q, want %q", in, got, want)
		}
	}
}
