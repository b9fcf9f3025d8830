package cli

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/kvsedge/kvsedge/internal/tlsca"
	"github.com/spf13/pflag"
)

// runCert creates (once) the box's CA and issues a server certificate for
// its names, then says how to serve and trust it.
func runCert(args []string, stdout, stderr io.Writer) error {
	var (
		dir   string
		names []string
		days  int
	)
	cfg, _, err := parseConfig("cert", args, stderr, func(fs *pflag.FlagSet) {
		fs.StringVar(&dir, "dir", "", "directory for the CA and server files (default <data-dir>/tls)")
		fs.StringArrayVar(&names, "name", nil, "DNS name or IP address for the server certificate (repeatable; default: localhost, host name, every interface address)")
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
	if len(names) == 0 {
		names = tlsca.DefaultNames()
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
