package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/config"
	"github.com/kvsedge/kvsedge/internal/status"
	"github.com/kvsedge/kvsedge/producer"
	"github.com/spf13/pflag"
)

// mediaClient is what the media subcommands need to talk to a KVS
// endpoint (this box by default, or any other with --endpoint).
type mediaClient struct {
	endpoint string
	region   string
	creds    aws.CredentialsProvider
	http     *http.Client
}

type clientFlags struct {
	endpoint, caBundle, stream string
}

func (c *clientFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&c.stream, "stream", "", "stream name (required)")
	c.addEndpoint(fs)
}

func (c *clientFlags) addEndpoint(fs *pflag.FlagSet) {
	fs.StringVar(&c.endpoint, "endpoint", "", "the box's URL (default: from its configuration's data_endpoint or listen and TLS)")
	fs.StringVar(&c.caBundle, "ca-bundle", "", "PEM CA file to trust for an https endpoint")
}

// newMediaClient builds a client from the configuration: credentials from
// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY when set, else the box's own
// (never created here: config.ExistingCredentials).
func newMediaClient(cfg *config.Config, cf *clientFlags) (*mediaClient, error) {
	if cf.stream == "" {
		return nil, errors.New("--stream is required")
	}
	ep := cf.endpoint
	if ep == "" {
		ep = cfg.DataEndpoint
	}
	if ep == "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("listen %q: %w", cfg.Listen, err)
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		scheme := "http"
		if cfg.TLS.CertFile != "" {
			scheme = "https"
		}
		ep = scheme + "://" + net.JoinHostPort(host, port)
	}
	var prov aws.CredentialsProvider
	if id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"); id != "" && secret != "" {
		prov = credentials.NewStaticCredentialsProvider(id, secret, os.Getenv("AWS_SESSION_TOKEN"))
	} else {
		creds, err := config.ExistingCredentials(cfg)
		if err != nil {
			return nil, err
		}
		if len(creds) == 0 {
			creds = []config.Credential{{AccessKeyID: "anonymous", SecretAccessKey: "anonymous"}} // auth is off
		}
		prov = credentials.NewStaticCredentialsProvider(creds[0].AccessKeyID, creds[0].SecretAccessKey, "")
	}
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 16}
	if cf.caBundle != "" {
		pem, err := os.ReadFile(cf.caBundle)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", cf.caBundle)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &mediaClient{endpoint: strings.TrimRight(ep, "/"), region: cfg.Region, creds: prov, http: &http.Client{Transport: tr}}, nil
}

// post sends a signed JSON request and returns the response (the caller
// closes its body). A non-200 answer is an error carrying KVS's message.
func (c *mediaClient) post(ctx context.Context, path string, in any) (*http.Response, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	creds, err := c.creds.Retrieve(ctx)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "kinesisvideo", c.region, time.Now()); err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, newAPIErr(path, resp)
	}
	return resp, nil
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// runPutMedia uploads an MKV file (or stdin) with the producer package.
func runPutMedia(args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	var fragment time.Duration
	var keep bool
	cfg, fs, err := parseConfigArgs("put-media", args, stderr, func(fs *pflag.FlagSet) {
		cf.add(fs)
		fs.DurationVar(&fragment, "fragment-duration", 2*time.Second,
			"re-cluster the input into fragments at video key frames at least this long (any Matroska or WebM)")
		fs.BoolVar(&keep, "keep-clusters", false,
			"send the input's clusters as they are, one fragment each, with their Tags (input written by a KVS producer)")
	})
	if err != nil {
		return err
	}
	if keep {
		fragment = 0
	} else if fragment < time.Second || fragment > 10*time.Second {
		return fmt.Errorf("--fragment-duration %v is outside 1s…10s", fragment)
	}
	if fs.NArg() != 1 {
		return errors.New("usage: kvsedge put-media --stream NAME FILE.mkv (or - for stdin)")
	}
	cl, err := newMediaClient(cfg, &cf)
	if err != nil {
		return err
	}
	in := io.Reader(os.Stdin)
	if name := fs.Arg(0); name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	p, err := producer.New(producer.Config{Endpoint: cl.endpoint, StreamName: cf.stream, Region: cl.region, Credentials: cl.creds, HTTPClient: cl.http})
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	tty := isTerminal(os.Stderr)
	var persisted, errs atomic.Int64
	start := time.Now()
	st, err := p.Put(ctx, in, producer.Options{FragmentDuration: fragment, OnAck: func(a producer.Ack) {
		switch a.EventType {
		case "PERSISTED":
			n := persisted.Add(1)
			if tty {
				fmt.Fprintf(stderr, "\r%d fragments persisted, last %s", n, a.FragmentNumber)
			}
		case "ERROR":
			errs.Add(1)
			fmt.Fprintf(stderr, "\nERROR ack: fragment %d, ErrorId %d %s\n", a.FragmentTimecode, a.ErrorId, a.ErrorCode)
		}
	}})
	if tty {
		fmt.Fprintln(stderr)
	}
	fmt.Fprintf(stdout, "%d fragments, %d persisted, %d bytes in %s, %d reconnects\n",
		st.Fragments, st.Persisted, st.Bytes, time.Since(start).Round(time.Millisecond), st.Reconnects)
	return err
}

// runGetMedia reads a stream with GetMedia into a file or stdout; with
// --follow it resumes with the continuation token whenever the server
// ends the session at the live edge.
func runGetMedia(args []string, stdout, stderr io.Writer) error {
	var (
		cf     clientFlags
		start  string
		output string
		follow bool
	)
	cfg, _, err := parseConfig("get-media", args, stderr, func(fs *pflag.FlagSet) {
		cf.add(fs)
		fs.StringVar(&start, "start", "EARLIEST", "NOW, EARLIEST, FRAGMENT_NUMBER=<n>, CONTINUATION_TOKEN=<t>, SERVER_TIMESTAMP=<RFC3339> or PRODUCER_TIMESTAMP=<RFC3339>")
		fs.StringVarP(&output, "output", "o", "-", "output file (- for stdout)")
		fs.BoolVar(&follow, "follow", false, "keep following live, resuming after the server ends a session")
	})
	if err != nil {
		return err
	}
	sel, err := parseStartSelector(start)
	if err != nil {
		return err
	}
	cl, err := newMediaClient(cfg, &cf)
	if err != nil {
		return err
	}
	out := stdout
	if output != "-" {
		f, err := os.Create(output)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	ctx, cancel := signalContext()
	defer cancel()
	for {
		resp, err := cl.post(ctx, "/getMedia", map[string]any{"StreamName": cf.stream, "StartSelector": sel})
		if err != nil {
			return err
		}
		tok := &tokenTracker{}
		_, err = io.Copy(io.MultiWriter(out, tok), resp.Body)
		resp.Body.Close()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && !follow {
			return err
		}
		if !follow {
			return nil
		}
		if t := tok.last(); t != "" {
			sel = map[string]any{"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": t}
		}
	}
}

func parseStartSelector(s string) (map[string]any, error) {
	typ, val, _ := strings.Cut(s, "=")
	sel := map[string]any{"StartSelectorType": typ}
	switch typ {
	case "NOW", "EARLIEST":
	case "FRAGMENT_NUMBER":
		sel["AfterFragmentNumber"] = val
	case "CONTINUATION_TOKEN":
		sel["ContinuationToken"] = val
	case "SERVER_TIMESTAMP", "PRODUCER_TIMESTAMP":
		t, err := time.Parse(time.RFC3339Nano, val)
		if err != nil {
			return nil, fmt.Errorf("--start %s: %w", s, err)
		}
		sel["StartTimestamp"] = float64(t.UnixMilli()) / 1000
	default:
		return nil, fmt.Errorf("--start %q: unknown selector", s)
	}
	return sel, nil
}

// tokenTracker watches a GetMedia body for continuation tokens, across
// write boundaries.
type tokenTracker struct {
	tail  []byte
	token string
}

func (t *tokenTracker) Write(p []byte) (int, error) {
	t.tail = append(t.tail, p...)
	name := []byte(mkv.TagContinuationToken)
	for {
		i := bytes.Index(t.tail, name)
		if i < 0 {
			break
		}
		v := t.tail[i+len(name):]
		if len(v) < 6 {
			t.tail = t.tail[i:]
			return len(p), nil
		}
		n := int(v[2]&0x0F)<<24 | int(v[3])<<16 | int(v[4])<<8 | int(v[5])
		if n > 128 {
			t.tail = v
			continue
		}
		if len(v) < 6+n {
			t.tail = t.tail[i:]
			return len(p), nil
		}
		t.token = string(v[6 : 6+n])
		t.tail = v[6+n:]
	}
	if keep := len(name) + 140; len(t.tail) > keep {
		t.tail = append(t.tail[:0], t.tail[len(t.tail)-keep:]...)
	}
	return len(p), nil
}

func (t *tokenTracker) last() string { return t.token }

// runExport fetches a time range of a stream into files, in one of three
// formats:
//
//   - mkv: ListFragments over the range, then GetMediaForFragmentList in
//     parallel batches, each batch one file of KVS fragments (one Matroska
//     segment each, as GetMedia sends them);
//   - mkv-joined: the same fragments joined into one playable Matroska file
//     (one header, then every cluster), a new file only where the track
//     header changes (export.go);
//   - mp4: the box's GetClip (the same remuxer as the API) for the range,
//     one MP4 per range (GetClip ranges are at most 24 h: a longer one is
//     cut at each day).
func runExport(args []string, stdout, stderr io.Writer) error {
	var (
		cf              clientFlags
		from, to, byStr string
		dir, format     string
		workers, batch  int
	)
	cfg, _, err := parseConfig("export", args, stderr, func(fs *pflag.FlagSet) {
		cf.add(fs)
		fs.StringVar(&from, "from", "", "range start, RFC3339 (required)")
		fs.StringVar(&to, "to", "", "range end, RFC3339 (default: now)")
		fs.StringVar(&byStr, "by", "SERVER_TIMESTAMP", "SERVER_TIMESTAMP or PRODUCER_TIMESTAMP")
		fs.StringVar(&dir, "dir", ".", "output directory")
		fs.StringVar(&format, "format", "mkv", "mkv (KVS fragments, --batch per file), mkv-joined (one playable Matroska file) or mp4 (one MP4 per range, as GetClip)")
		fs.IntVar(&workers, "workers", 4, "parallel GetMediaForFragmentList requests (format mkv)")
		fs.IntVar(&batch, "batch", 100, "fragments per output file (1…1000; format mkv) or per request (mkv-joined)")
	})
	if err != nil {
		return err
	}
	if workers < 1 || batch < 1 || batch > 1000 {
		return errors.New("--workers must be ≥ 1 and --batch within 1…1000")
	}
	if format != "mkv" && format != "mkv-joined" && format != "mp4" {
		return fmt.Errorf("--format %q is not mkv, mkv-joined or mp4", format)
	}
	if byStr != "SERVER_TIMESTAMP" && byStr != "PRODUCER_TIMESTAMP" {
		return fmt.Errorf("--by %q is not SERVER_TIMESTAMP or PRODUCER_TIMESTAMP", byStr)
	}
	start, err := time.Parse(time.RFC3339Nano, from)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	end := time.Now()
	if to != "" {
		if end, err = time.Parse(time.RFC3339Nano, to); err != nil {
			return fmt.Errorf("--to: %w", err)
		}
	}
	if !end.After(start) {
		return errors.New("--to must be after --from")
	}
	cl, err := newMediaClient(cfg, &cf)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if format == "mp4" {
		return exportMP4(ctx, cl, cf.stream, byStr, start, end, dir, stdout)
	}
	var frags []frag
	req := map[string]any{"StreamName": cf.stream, "FragmentSelector": map[string]any{
		"FragmentSelectorType": byStr,
		"TimestampRange":       map[string]any{"StartTimestamp": float64(start.UnixMilli()) / 1000, "EndTimestamp": float64(end.UnixMilli()) / 1000},
	}}
	for {
		resp, err := cl.post(ctx, "/listFragments", req)
		if err != nil {
			return err
		}
		var page struct {
			Fragments []frag
			NextToken string
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return err
		}
		frags = append(frags, page.Fragments...)
		if page.NextToken == "" {
			break
		}
		req = map[string]any{"StreamName": cf.stream, "NextToken": page.NextToken}
	}
	// ListFragments promises no order: export in fragment-number order
	// (fixed-width numbers compare as strings).
	sortFragments := func(a, b frag) int { return strings.Compare(a.FragmentNumber, b.FragmentNumber) }
	slices.SortFunc(frags, sortFragments)
	if format == "mkv-joined" {
		return exportJoined(ctx, cl, cf.stream, frags, batch, dir, stdout)
	}
	var total int64
	for _, f := range frags {
		total += f.FragmentSizeInBytes
	}
	jobs := make(chan []frag)
	var (
		done    atomic.Int64
		bytesIn atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	tty := isTerminal(os.Stderr)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range jobs {
				nums := make([]string, len(b))
				for i, f := range b {
					nums[i] = f.FragmentNumber
				}
				err := func() error {
					// File names come from the endpoint's answer: only a
					// fragment number (digits) may name a file, so a hostile
					// endpoint cannot write outside --dir.
					if !isFragmentNumber(nums[0]) {
						return fmt.Errorf("the endpoint listed %q, which is not a fragment number", nums[0])
					}
					resp, err := cl.post(ctx, "/getMediaForFragmentList", map[string]any{"StreamName": cf.stream, "Fragments": nums})
					if err != nil {
						return err
					}
					defer resp.Body.Close()
					path := filepath.Join(dir, nums[0]+".mkv")
					f, err := os.Create(path + ".part")
					if err != nil {
						return err
					}
					n, err := io.Copy(f, resp.Body)
					bytesIn.Add(n)
					if cerr := f.Close(); err == nil {
						err = cerr
					}
					if err != nil {
						return err
					}
					return os.Rename(path+".part", path)
				}()
				if err != nil {
					errOnce.Do(func() { first = err; cancel() })
					continue
				}
				n := done.Add(int64(len(b)))
				if tty {
					fmt.Fprintf(stderr, "\r%s %d/%d fragments, %d MB", progressBar(n, int64(len(frags))), n, len(frags), bytesIn.Load()>>20)
				}
			}
		}()
	}
	for i := 0; i < len(frags); i += batch {
		select {
		case jobs <- frags[i:min(i+batch, len(frags))]:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	if tty {
		fmt.Fprintln(stderr)
	}
	if first != nil {
		return first
	}
	fmt.Fprintf(stdout, "exported %d fragments (%d bytes) into %d files in %s\n", len(frags), bytesIn.Load(), (len(frags)+batch-1)/batch, dir)
	return nil
}

func progressBar(n, total int64) string {
	const width = 30
	if total == 0 {
		total = 1
	}
	fill := int(n * width / total)
	return "[" + strings.Repeat("#", fill) + strings.Repeat(".", width-fill) + "]"
}

// frag is one fragment of a ListFragments answer.
type frag struct {
	FragmentNumber      string
	FragmentSizeInBytes int64
}

// runCameras prints the state of every camera the box records: a table,
// or the API's JSON with --json.
func runCameras(args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	var asJSON bool
	cfg, _, err := parseConfig("cameras", args, stderr, func(fs *pflag.FlagSet) {
		cf.addEndpoint(fs)
		fs.BoolVar(&asJSON, "json", false, "print the listCameras answer as JSON")
	})
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(cfg, &cf, "/listCameras", stdout)
	}
	cf.stream = "-" // not used
	cl, err := newMediaClient(cfg, &cf)
	if err != nil {
		return err
	}
	resp, err := cl.post(context.Background(), "/listCameras", map[string]any{})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct{ Cameras []status.Camera }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return err
	}
	return printCameras(stdout, out.Cameras, time.Now())
}

// printCameras writes one line per camera; a stream that keeps nothing
// says status.LiveOnly in its RETENTION column.
func printCameras(w io.Writer, cams []status.Camera, now time.Time) error {
	if len(cams) == 0 {
		_, err := fmt.Fprintln(w, "no cameras (add them under cameras: in the configuration file, or with the edge configuration API)")
		return err
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tSTATE\tRETENTION\tFPS\tKBIT/S\tFRAGMENTS\tLAST FRAME\tSOURCE\tLAST ERROR")
	for _, c := range cams {
		last := "-"
		if !c.LastFrame.IsZero() {
			last = now.Sub(c.LastFrame).Round(100*time.Millisecond).String() + " ago"
		}
		ret := c.Retention
		if ret == "" {
			ret = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%.0f\t%d\t%s\t%s\t%s\n", c.Stream, c.State, ret, c.FPS, c.BitrateBps/1000, c.Fragments,
			last, c.Source, c.LastError)
	}
	return tw.Flush()
}

// runCapacity prints the capacity controller's last report.
func runCapacity(args []string, stdout, stderr io.Writer) error {
	return printAPI("capacity", "/describeCapacity", args, stdout, stderr)
}

// runReplication prints the box's replication state per stream.
func runReplication(args []string, stdout, stderr io.Writer) error {
	return printAPI("replication", "/describeReplication", args, stdout, stderr)
}

// runUploads prints the box's uploads to its upstream KVS, per stream.
func runUploads(args []string, stdout, stderr io.Writer) error {
	return printAPI("uploads", "/describeUploads", args, stdout, stderr)
}

// runMembers prints the members of the box's cluster.
func runMembers(args []string, stdout, stderr io.Writer) error {
	return printAPI("members", "/listClusterMembers", args, stdout, stderr)
}

// printAPI posts {} to one of kvsedge's own listing operations and prints
// the answer.
func printAPI(name, path string, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	cfg, _, err := parseConfig(name, args, stderr, cf.addEndpoint)
	if err != nil {
		return err
	}
	return printJSON(cfg, &cf, path, stdout)
}

// printJSON posts {} to path and prints the answer, indented.
func printJSON(cfg *config.Config, cf *clientFlags, path string, stdout io.Writer) error {
	cf.stream = "-" // not used
	cl, err := newMediaClient(cfg, cf)
	if err != nil {
		return err
	}
	resp, err := cl.post(context.Background(), path, map[string]any{})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var v any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// isFragmentNumber reports whether s is a KVS fragment number: 1 to 64
// decimal digits (kvsedge's are 32, KVS's 47).
func isFragmentNumber(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
