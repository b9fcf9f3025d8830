// Command mkdeb builds kvsedge's Debian packages with nfpm (as a library):
//
//	go run ./internal/mkdeb -version 1.2.3 -out dist amd64=dist/kvsedge-linux-amd64 arm64=… armhf=…
//
// Each ARCH=BINARY argument gives one package, dist/kvsedge_<version>_<arch>.deb,
// described by packaging/nfpm.yaml (${ARCH}, ${VERSION}, ${BINARY} and
// ${UNIT} filled in). The systemd unit is packaging/kvsedge.service with the
// binary at /usr/bin/kvsedge (the unit file itself names /usr/local/bin, where
// a hand install puts it). `make release` runs it from the module's root.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
)

func main() {
	version := flag.String("version", "", "package version (a Debian version: starts with a digit)")
	out := flag.String("out", "dist", "output directory")
	conf := flag.String("config", "packaging/nfpm.yaml", "nfpm configuration")
	unit := flag.String("unit", "packaging/kvsedge.service", "systemd unit to package")
	flag.Parse()
	if err := run(*version, *out, *conf, *unit, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
}

// debVersion turns a `git describe` version (v1.2.3-4-gabc, or a bare
// commit when there is no tag) into a Debian version: a dotted number
// first (0.0.0~<commit> without a tag, sorting before any release).
func debVersion(v string) string {
	v = strings.TrimPrefix(v, "v")
	if !regexp.MustCompile(`^[0-9]+\.[0-9]`).MatchString(v) {
		v = "0.0.0~" + v
	}
	return regexp.MustCompile(`[^A-Za-z0-9.+~-]`).ReplaceAllString(v, "~")
}

func run(version, out, conf, unitPath string, args []string) error {
	if len(args) == 0 {
		return errors.New("no ARCH=BINARY arguments")
	}
	version = debVersion(version)
	unit, err := os.ReadFile(unitPath)
	if err != nil {
		return err
	}
	if !strings.Contains(string(unit), "/usr/local/bin/kvsedge ") {
		return fmt.Errorf("%s: its ExecStart does not run /usr/local/bin/kvsedge", unitPath)
	}
	tmp, err := os.MkdirTemp("", "mkdeb")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	debUnit := filepath.Join(tmp, "kvsedge.service")
	if err := os.WriteFile(debUnit, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/kvsedge", "/usr/bin/kvsedge")), 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, a := range args {
		arch, bin, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("%q is not ARCH=BINARY", a)
		}
		vars := map[string]string{"ARCH": arch, "VERSION": version, "BINARY": bin, "UNIT": debUnit}
		cfg, err := nfpm.ParseFileWithEnvMapping(conf, func(k string) string { return vars[k] })
		if err != nil {
			return fmt.Errorf("%s: %w", conf, err)
		}
		info, err := cfg.Get("deb")
		if err != nil {
			return err
		}
		info = nfpm.WithDefaults(info)
		if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
			return err
		}
		pkg, err := nfpm.Get("deb")
		if err != nil {
			return err
		}
		target := filepath.Join(out, pkg.ConventionalFileName(info))
		f, err := os.Create(target)
		if err != nil {
			return err
		}
		info.Target = target
		err = pkg.Package(info, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(target)
			return fmt.Errorf("%s: %w", target, err)
		}
		fmt.Println(target)
	}
	return nil
}
