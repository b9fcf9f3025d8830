package config

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kvsedge/kvsedge/internal/atomicfile"
	yamlv3 "go.yaml.in/yaml/v3"
)

// GeneratedCredentialsFile is where a key pair generated on first start is
// kept, inside the data directory, mode 0600.
const GeneratedCredentialsFile = "credentials.yaml"

// EffectiveCredentials returns the configured key pairs, or, when none are
// configured and auth is on, the pair generated once for this data
// directory (creating it if needed). generated reports the latter.
func EffectiveCredentials(cfg *Config) (creds []Credential, generated bool, err error) {
	if creds = cfg.AllCredentials(); len(creds) > 0 || cfg.Auth.Disabled {
		return creds, false, nil
	}
	path := filepath.Join(cfg.DataDir, GeneratedCredentialsFile)
	if key := cfg.Cluster.DecodedKey(); len(key) > 0 && cfg.Cluster.Bind != "" {
		// One cluster, one set of keys: every box with this cluster key
		// generates the same pair. A pair this box generated before it
		// was clustered is kept aside (and named in the log by the app).
		want := ClusterCredential(key)
		c, err := readCredentialsFile(path)
		if err == nil && c == want {
			return []Credential{c}, true, nil
		}
		if err == nil {
			if rerr := os.Rename(path, path+".standalone"); rerr != nil {
				return nil, false, rerr
			}
		}
		if err := writeCredentials(path, want); err != nil {
			return nil, false, err
		}
		return []Credential{want}, true, nil
	}
	c, err := readCredentialsFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		c, err = writeNewCredentials(path)
	}
	if err != nil {
		return nil, false, err
	}
	return []Credential{c}, true, nil
}

// ClusterCredential is the key pair every box of a cluster generates from
// the cluster key (HMAC-SHA256 of the key over fixed labels), so that a
// key working on one box works on all; it is as secret as the cluster key.
func ClusterCredential(clusterKey []byte) Credential {
	derive := func(label string, n int, alphabet string) string {
		m := hmac.New(sha256.New, clusterKey)
		m.Write([]byte("kvsedge credentials: " + label))
		sum := m.Sum(nil)
		out := make([]byte, n)
		for i := range out {
			out[i] = alphabet[int(sum[i%len(sum)]^byte(i/len(sum)*31))%len(alphabet)]
		}
		return string(out)
	}
	return Credential{
		AccessKeyID:     "AKKVSEDGE" + derive("access key id", 11, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"),
		SecretAccessKey: derive("secret access key", 40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+"),
	}
}

// CredentialFingerprint identifies a set of key pairs without revealing
// them: the first 8 bytes (hex) of HMAC-SHA256 under the cluster key of
// the sorted pairs. Boxes gossip it; a box whose set differs from the
// cluster's is kept out (package cluster).
func CredentialFingerprint(clusterKey []byte, creds []Credential) string {
	lines := make([]string, len(creds))
	for i, c := range creds {
		lines[i] = c.AccessKeyID + "\x00" + c.SecretAccessKey
	}
	sort.Strings(lines)
	m := hmac.New(sha256.New, clusterKey)
	m.Write([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// ErrNoCredentials: the data directory holds no generated key pair (the
// box has not been served from it).
var ErrNoCredentials = errors.New("no key pair")

// ExistingCredentials is EffectiveCredentials for the client commands: it
// never creates a key pair (only serve does). With none configured and none
// generated in the data directory, the error (ErrNoCredentials) says where
// it looked and how to point at the box's data directory.
func ExistingCredentials(cfg *Config) ([]Credential, error) {
	if creds := cfg.AllCredentials(); len(creds) > 0 || cfg.Auth.Disabled {
		return creds, nil
	}
	path := filepath.Join(cfg.DataDir, GeneratedCredentialsFile)
	c, err := readCredentialsFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		abs, _ := filepath.Abs(cfg.DataDir)
		return nil, fmt.Errorf("%w in %s: it is created by `kvsedge serve` on its first start. Is %s the box's data directory? "+
			"Give this command the --config or --data-dir the box runs with (or set KVSEDGE_CONFIG or KVSEDGE_DATA_DIR)", ErrNoCredentials, path, abs)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("%w (the box's data directory is private to the user the box runs as: try sudo)", err)
	case err != nil:
		return nil, err
	}
	return []Credential{c}, nil
}

func readCredentialsFile(path string) (Credential, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Credential{}, err
	}
	var c Credential
	if err := yamlv3.Unmarshal(b, &c); err != nil {
		return Credential{}, fmt.Errorf("reading %s: %w", path, err)
	}
	if !accessKeyPattern.MatchString(c.AccessKeyID) || c.SecretAccessKey == "" {
		return Credential{}, fmt.Errorf("%s does not hold access_key_id and secret_access_key", path)
	}
	return c, nil
}

func writeNewCredentials(path string) (Credential, error) {
	c := Credential{
		AccessKeyID:     "AKKVSEDGE" + randomString(11, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"),
		SecretAccessKey: randomString(40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+"),
	}
	return c, writeCredentials(path, c)
}

// writeCredentials writes c to path (0600) atomically.
func writeCredentials(path string, c Credential) error {
	b, err := yamlv3.Marshal(&c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, append([]byte("# generated by kvsedge on first start; `kvsedge credentials` prints it for the aws CLI\n"), b...), 0o600)
}

func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
