// Package console is kvsedge's web console, built into the binary: static
// files (HTML, CSS, the app's JavaScript, and vendored hls.js and
// aws4fetch with their licences) served at "/" and "/console/". The app
// calls the same KVS API as every other client, signed with SigV4 in the
// browser with the user's access key: there is one authentication model.
package console

import (
	"embed"
	"io/fs"
	"mime"
	"path"
	"strings"
)

//go:embed static
var files embed.FS

// File returns the content and MIME type of a console path ("/" is the
// page; "/console/…" its assets), and whether it exists.
func File(p string) ([]byte, string, bool) {
	name := "static/index.html"
	if p != "/" && p != "/index.html" {
		rest, ok := strings.CutPrefix(p, "/console/")
		if !ok || rest == "" || strings.Contains(rest, "..") {
			return nil, "", false
		}
		name = "static/" + rest
	}
	b, err := fs.ReadFile(files, name)
	if err != nil {
		return nil, "", false
	}
	typ := mime.TypeByExtension(path.Ext(name))
	if typ == "" {
		typ = "application/octet-stream"
	}
	return b, typ, true
}
