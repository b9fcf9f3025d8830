package cli

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/kvsedge/kvsedge/internal/tlsca"
	"github.com/spf13/pflag"
)

// runCert creates (once) the box's CA and issues a server certificate for
// its names, then says how to serve and trust it. The names are the box's
// own (tlsca.DefaultNames: localhost, its host name, loopback and interface
// addresses), those of the certificate it replaces, and --name; only
// --remove-name takes one away. So adding a name never breaks a client that
// uses another (a running server picks the new certificate up at once).
func runCert(args []string, stdout, stderr io.Writer) error {
	var (
		dir         string
		add, remove []string
		days        int
	)
	cfg, _, err := parseConfig("cert", args, stderr, func(fs *pflag.FlagSet) {
		fs.StringVar(&dir, "dir", "", "directory for the CA and server files (default <data-dir>/tls)")
		fs.StringArrayVar(&add, "name", nil, "a DNS name or IP address to add to the certificate's names (repeatable); "+
			"the box's own names (localhost, host name, every interface address) and the current certificate's are kept")
		fs.StringArrayVar(&remove, "remove-name", nil, "a name to take off the certificate (repeatable)")
		fs.IntVar(&days, "days", 825, "server certificate validity in days")
	})
	if err != nil {
		return err
	}
	if dir == "" {
		dir = filepath.Join(cfg.DataDir, "tls")
	}
	if days <= 0 {
		return fmt.Errorf("--days must be positive, not %d", days)
	}
	current, err := tlsca.ServerNames(dir)
	if err != nil {
		return err
	}
	names := certNames(tlsca.DefaultNames(), current, add, remove)
	if len(names) == 0 {
		return errors.New("no names left for the certificate")
	}
	ca, created, err := tlsca.EnsureCA(dir)
	if err != nil {
		return err
	}
	chain, key, err := ca.IssueServer(names, time.Duration(days)*24*time.Hour)
	if err != nil {
		return err
	}
	certPath, keyPath, err := tlsca.WriteServer(dir, chain, key)
	if err != nil {
		return err
	}
	caPath := filepath.Join(dir, tlsca.CAFile)
	state := "existing"
	if created {
		state = "new"
	}
	fmt.Fprintf(stdout, "CA (%s):            %s\nserver certificate: %s\nserver key:         %s\nnames:              %v\n\n",
		state, caPath, certPath, keyPath, names)
	fmt.Fprintf(stdout, "serve HTTPS:  kvsedge serve --tls-cert %s --tls-key %s\n", certPath, keyPath)
	fmt.Fprintf(stdout, "trust it:     aws --ca-bundle %s --endpoint-url https://<name>:<port> kinesisvideo list-streams\n", caPath)
	return nil
}

// certNames is defaults, then current, then added, each once, without the
// removed ones.
func certNames(defaults, current, added, removed []string) []string {
	skip := map[string]bool{}
	for _, n := range removed {
		skip[strings.ToLower(n)] = true
	}
	var out []string
	for _, list := range [][]string{defaults, current, added} {
		for _, n := range list {
			k := strings.ToLower(n)
			if n == "" || skip[k] {
				continue
			}
			skip[k] = true
			out = append(out, n)
		}
	}
	return out
}
