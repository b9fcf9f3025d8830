package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/spf13/pflag"
)

// exportMP4 writes [start, end) as MP4 with the box's GetClip, one file per
// range of at most 24 h (GetClip's limit), named
// <stream>-<start, UTC>.mp4. A range without media writes no file.
func exportMP4(ctx context.Context, cl *mediaClient, stream, by string, start, end time.Time, dir string, stdout io.Writer) error {
	const maxRange = 24 * time.Hour
	files, total := 0, int64(0)
	for from := start; from.Before(end); from = from.Add(maxRange) {
		to := from.Add(maxRange)
		if to.After(end) {
			to = end
		}
		resp, err := cl.post(ctx, "/getClip", map[string]any{"StreamName": stream, "ClipFragmentSelector": map[string]any{
			"FragmentSelectorType": by,
			"TimestampRange":       map[string]any{"StartTimestamp": float64(from.UnixMilli()) / 1000, "EndTimestamp": float64(to.UnixMilli()) / 1000},
		}})
		var ae *apiErr
		if errors.As(err, &ae) && ae.typ == "ResourceNotFoundException" {
			continue // nothing recorded in this range
		}
		if err != nil {
			return err
		}
		path := filepath.Join(dir, stream+"-"+from.UTC().Format("20060102T150405Z")+".mp4")
		n, err := writeFile(path, resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		files++
		total += n
		fmt.Fprintf(stdout, "%s (%d bytes)\n", path, n)
	}
	if files == 0 {
		return fmt.Errorf("stream %s has no media between %s and %s", stream, start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	fmt.Fprintf(stdout, "exported %d MP4 files (%d bytes) into %s\n", files, total, dir)
	return nil
}

// exportJoined writes frags (in fragment-number order) as one playable
// Matroska file: the first fragment's EBML header, Segment (unknown size),
// Info and Tracks, then every fragment's Cluster, without the per-fragment
// segments and tags GetMediaForFragmentList wraps them in. Where the track
// header changes (a camera's new resolution) a new file starts. Files are
// named <stream>-<first fragment number>.mkv. Fragments are fetched batch
// by batch, in order, and streamed: memory holds one fragment.
func exportJoined(ctx context.Context, cl *mediaClient, stream string, frags []frag, batch int, dir string, stdout io.Writer) error {
	if len(frags) == 0 {
		return fmt.Errorf("stream %s has no fragments in the range", stream)
	}
	j := &joiner{dir: dir, stream: stream, stdout: stdout}
	for i := 0; i < len(frags); i += batch {
		b := frags[i:min(i+batch, len(frags))]
		nums := make([]string, len(b))
		for k, f := range b {
			if !isFragmentNumber(f.FragmentNumber) {
				return fmt.Errorf("the endpoint listed %q, which is not a fragment number", f.FragmentNumber)
			}
			nums[k] = f.FragmentNumber
		}
		resp, err := cl.post(ctx, "/getMediaForFragmentList", map[string]any{"StreamName": stream, "Fragments": nums})
		if err != nil {
			return errors.Join(err, j.close())
		}
		err = j.add(resp.Body, nums)
		resp.Body.Close()
		if err != nil {
			return errors.Join(err, j.close())
		}
	}
	if err := j.close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "exported %d fragments into %d Matroska files in %s\n", j.frags, j.files, dir)
	return nil
}

// joiner appends clusters to the current joined file.
type joiner struct {
	dir, stream string
	stdout      io.Writer
	f           *os.File
	path        string
	header      []byte // the current file's header (mkv.Header.Raw)
	frags       int
	files       int
}

// add reads one GetMediaForFragmentList body; nums names its fragments in
// order (the first names a new file).
func (j *joiner) add(body io.Reader, nums []string) error {
	r := mkv.NewReader(body, mkv.Options{MaxFragmentBytes: 200 << 20, MaxFragmentDuration: time.Hour})
	i := 0
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading GetMediaForFragmentList: %w", err)
		}
		if ev != mkv.EventFragmentEnd {
			continue
		}
		fr := r.TakeFragment()
		if j.f == nil || !bytes.Equal(fr.Header.Raw, j.header) {
			if err := j.close(); err != nil {
				return err
			}
			name := fmt.Sprintf("fragment-%d", j.frags)
			if i < len(nums) {
				name = nums[i]
			}
			if err := j.open(filepath.Join(j.dir, j.stream+"-"+name+".mkv"), fr.Header.Raw); err != nil {
				return err
			}
		}
		if _, err := j.f.Write(fr.Buf[:fr.ClusterLen]); err != nil {
			return err
		}
		j.frags++
		i++
	}
}

func (j *joiner) open(path string, header []byte) error {
	f, err := os.Create(path + ".part")
	if err != nil {
		return err
	}
	if _, err := f.Write(header); err != nil {
		f.Close()
		return err
	}
	j.f, j.path, j.header = f, path, bytes.Clone(header)
	return nil
}

// close finishes the current file (written as .part, renamed when whole).
func (j *joiner) close() error {
	if j.f == nil {
		return nil
	}
	f := j.f
	j.f = nil
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(j.path+".part", j.path); err != nil {
		return err
	}
	j.files++
	fmt.Fprintln(j.stdout, j.path)
	return nil
}

// writeFile writes r to path (as path.part, renamed when whole).
func writeFile(path string, r io.Reader) (int64, error) {
	f, err := os.Create(path + ".part")
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(path+".part", path)
	}
	if err != nil {
		os.Remove(path + ".part")
	}
	return n, err
}

// runHLSURL prints an HLS session URL of a stream. Unlike the API's
// default (DiscontinuityMode ALWAYS, as KVS), the session it asks for uses
// NEVER: one initialization segment until the track header changes, which
// VLC needs (it stops after the first segment of an ALWAYS session) and
// every other player plays.
func runHLSURL(args []string, stdout, stderr io.Writer) error {
	var (
		cf             clientFlags
		mode, from, to string
		disc           string
		expires        int
	)
	cfg, _, err := parseConfig("hls-url", args, stderr, func(fs *pflag.FlagSet) {
		cf.add(fs)
		fs.StringVar(&mode, "mode", "LIVE", "LIVE, LIVE_REPLAY (from --from on) or ON_DEMAND (--from to --to)")
		fs.StringVar(&from, "from", "", "start, RFC3339 (LIVE_REPLAY and ON_DEMAND)")
		fs.StringVar(&to, "to", "", "end, RFC3339 (ON_DEMAND; default: now)")
		fs.StringVar(&disc, "discontinuity-mode", "NEVER", "NEVER (plays in VLC), ON_DISCONTINUITY or ALWAYS (the API's default)")
		fs.IntVar(&expires, "expires", 3600, "seconds the URL stays valid (300…43200)")
	})
	if err != nil {
		return err
	}
	in := map[string]any{"StreamName": cf.stream, "PlaybackMode": mode, "DiscontinuityMode": disc, "Expires": expires}
	if mode != "LIVE" {
		if from == "" {
			return fmt.Errorf("--mode %s needs --from", mode)
		}
		start, err := time.Parse(time.RFC3339Nano, from)
		if err != nil {
			return fmt.Errorf("--from: %w", err)
		}
		rng := map[string]any{"StartTimestamp": float64(start.UnixMilli()) / 1000}
		end := time.Now()
		if to != "" {
			if end, err = time.Parse(time.RFC3339Nano, to); err != nil {
				return fmt.Errorf("--to: %w", err)
			}
		}
		if mode == "ON_DEMAND" || to != "" {
			rng["EndTimestamp"] = float64(end.UnixMilli()) / 1000
		}
		in["HLSFragmentSelector"] = map[string]any{"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": rng}
	}
	cl, err := newMediaClient(cfg, &cf)
	if err != nil {
		return err
	}
	resp, err := cl.post(context.Background(), "/getHLSStreamingSessionURL", in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct{ HLSStreamingSessionURL string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, out.HLSStreamingSessionURL)
	return err
}

// apiErr is a KVS error answer: its x-amzn-ErrorType and message.
type apiErr struct {
	path, typ, msg string
	status         int
}

func (e *apiErr) Error() string {
	return fmt.Sprintf("%s: %s %s", strings.TrimPrefix(e.path, "/"), e.typ, e.msg)
}

// newAPIErr reads a non-200 answer.
func newAPIErr(path string, resp *http.Response) *apiErr {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	msg := strings.TrimSpace(string(b))
	var m struct{ Message string } // KVS sends message or Message
	if json.Unmarshal(b, &m) == nil && m.Message != "" {
		msg = m.Message
	}
	return &apiErr{path: path, typ: resp.Header.Get("x-amzn-ErrorType"), msg: msg, status: resp.StatusCode}
}
