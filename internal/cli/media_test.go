package cli

import "testing"

// TestExportNamesOnlyFragmentNumbers: export names files after the
// fragment numbers an endpoint lists; anything but digits is refused, so a
// hostile endpoint cannot write outside --dir.
func TestExportNamesOnlyFragmentNumbers(t *testing.T) {
	for _, s := range []string{"11795608187616000000000000000000", "91343852333181481915235394203149336554319348843"} {
		if !isFragmentNumber(s) {
			t.Errorf("%q refused", s)
		}
	}
	for _, s := range []string{"", "../../etc/passwd", "/etc/x", "123/456", "12 3", "1e9", "0x10", string(make([]byte, 65))} {
		if isFragmentNumber(s) {
			t.Errorf("%q accepted as a fragment number", s)
		}
	}
}
