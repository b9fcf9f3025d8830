// Package archtest enforces the import rules of the module's layout (README
// "Layout"): data flows one way, ingest → engine → lsm; serve and cluster
// talk to the engine only; leaves stay leaves; test support and the
// composition root are imported only where they belong. It reads every Go
// file's imports with go/parser, tests included, so a forbidden import
// fails `make test` (and `make vet`, `make check`) wherever it appears.
package archtest

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/kvsedge/kvsedge"

// importEdge is one import: the importing package (module-relative
// directory, "" for the root) and the imported one (module-relative).
type importEdge struct {
	from, to string
	file     string
	test     bool
}

// moduleImports reads the module-internal imports of every Go file.
func moduleImports(t *testing.T) []importEdge {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(self), "..", "..")
	var edges []importEdge
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules" || name == "dist") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		from := filepath.ToSlash(rel)
		if from == "." {
			from = ""
		}
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			if p != module && !strings.HasPrefix(p, module+"/") {
				continue
			}
			to := strings.TrimPrefix(strings.TrimPrefix(p, module), "/")
			edges = append(edges, importEdge{from: from, to: to, file: filepath.Base(path), test: strings.HasSuffix(path, "_test.go")})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(edges) < 50 {
		t.Fatalf("found only %d module imports: is the walk looking at the module?", len(edges))
	}
	return edges
}

// within reports whether pkg is dir or below it.
func within(pkg, dir string) bool { return pkg == dir || strings.HasPrefix(pkg, dir+"/") }

func withinAny(pkg string, dirs ...string) bool {
	return slices.ContainsFunc(dirs, func(d string) bool { return within(pkg, d) })
}

// rule is one import rule: forbidden(e) says why e breaks it, or "".
type rule struct {
	name      string
	forbidden func(e importEdge) string
}

var rules = []rule{
	{"lsm is imported only by engine", func(e importEdge) string {
		if within(e.to, "lsm") && !withinAny(e.from, "lsm", "engine") {
			return "only engine may import lsm: use engine's API and internal/fragment's types"
		}
		return ""
	}},
	{"engine knows nothing of its callers", func(e importEdge) string {
		if withinAny(e.from, "engine") && withinAny(e.to, "serve", "ingest", "cluster", "producer", "internal/app", "internal/cli", "internal/config") {
			return "engine imports nothing of serve, ingest, cluster or the app"
		}
		return ""
	}},
	{"lsm imports only leaves", func(e importEdge) string {
		if within(e.from, "lsm") && !withinAny(e.to, "lsm", "internal/fragment", "internal/latency", "internal/fixture") {
			return "lsm imports only leaf packages"
		}
		return ""
	}},
	{"serve and ingest never import each other", func(e importEdge) string {
		if (within(e.from, "serve") && within(e.to, "ingest")) || (within(e.from, "ingest") && within(e.to, "serve")) {
			return "serve and ingest never import each other"
		}
		return ""
	}},
	{"serve and cluster talk to the engine only", func(e importEdge) string {
		if (within(e.from, "serve") && within(e.to, "cluster")) || (within(e.from, "cluster") && withinAny(e.to, "serve", "ingest")) {
			return "serve and cluster talk to the engine, not to each other or to ingest"
		}
		return ""
	}},
	{"leaves stay leaves", func(e importEdge) string {
		for _, leaf := range []string{"internal/fragment", "internal/latency", "internal/status", "hwprofiles", "engine/mkv", "serve/sigv4", "internal/tlsca", "internal/netcut", "internal/atomicfile"} {
			if within(e.from, leaf) && !within(e.to, leaf) && !(e.test && e.to == "internal/fixture") && e.to != "internal/atomicfile" {
				return leaf + " is a leaf: it imports no other package of the module but internal/atomicfile, itself a leaf (tests may load fixtures)"
			}
		}
		return ""
	}},
	{"the public producer library stands alone", func(e importEdge) string {
		if within(e.from, "producer") && !withinAny(e.to, "producer", "engine/mkv") && !(e.test && withinAny(e.to, "internal/fixture", "internal/app", "internal/config")) {
			return "producer is the one public library: it imports only engine/mkv (Matroska), so other programs get no server with it (its tests may run a whole box through internal/app)"
		}
		return ""
	}},
	{"test support only in tests", func(e importEdge) string {
		if !e.test && withinAny(e.to, "internal/fixture", "internal/rtsptest", "internal/netcut", "internal/archtest", "internal/mkvcheck", "internal/faultproxy") && !withinAny(e.from, "internal/rtsptest", "internal/netcut") {
			return "test support is imported by _test.go files only"
		}
		return ""
	}},
	{"the composition root is imported by the command line only", func(e importEdge) string {
		if within(e.to, "internal/cli") && e.from != "" && !within(e.from, "e2e") {
			return "only main imports internal/cli"
		}
		if within(e.to, "internal/app") && !withinAny(e.from, "internal/cli", "internal/app", "e2e") && !(e.test && within(e.from, "producer")) {
			return "only internal/cli (and end-to-end tests, and the producer's example) import internal/app"
		}
		return ""
	}},
	{"main is a thin root", func(e importEdge) string {
		if e.from == "" && !e.test && e.to != "internal/cli" {
			return "main imports internal/cli only"
		}
		return ""
	}},
}

func TestImportRules(t *testing.T) {
	edges := moduleImports(t)
	for _, r := range rules {
		for _, e := range edges {
			if why := r.forbidden(e); why != "" {
				t.Errorf("%s: %s/%s imports %s: %s", r.name, orRoot(e.from), e.file, e.to, why)
			}
		}
	}
}

// TestImportRulesCatchViolations feeds each rule an import it must refuse,
// so a rule that can no longer fail is noticed.
func TestImportRulesCatchViolations(t *testing.T) {
	bad := map[string]importEdge{
		"lsm is imported only by engine":                            {from: "serve", to: "lsm"},
		"engine knows nothing of its callers":                       {from: "engine", to: "serve"},
		"lsm imports only leaves":                                   {from: "lsm", to: "engine"},
		"serve and ingest never import each other":                  {from: "ingest", to: "serve/remux"},
		"serve and cluster talk to the engine only":                 {from: "cluster", to: "serve"},
		"leaves stay leaves":                                        {from: "internal/fragment", to: "lsm"},
		"the public producer library stands alone":                  {from: "producer", to: "serve", test: true},
		"test support only in tests":                                {from: "serve", to: "internal/fixture"},
		"the composition root is imported by the command line only": {from: "serve", to: "internal/app"},
		"main is a thin root":                                       {from: "", to: "engine"},
	}
	for _, r := range rules {
		e, ok := bad[r.name]
		if !ok {
			t.Errorf("rule %q has no violation to catch in this test", r.name)
			continue
		}
		if r.forbidden(e) == "" {
			t.Errorf("rule %q allows %s → %s", r.name, orRoot(e.from), e.to)
		}
	}
}

func orRoot(p string) string {
	if p == "" {
		return fmt.Sprintf("(root %s)", module)
	}
	return p
}
