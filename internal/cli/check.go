package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/app"
)

// errProblemsFound: check found damage (exit status 1, after the report).
var errProblemsFound = errors.New("the store has problems (listed above)")

// runCheck verifies the box's store while the box is stopped: every
// fragment's index entries and media, the index's own checksums, and the
// segment bytes the index accounts for; it writes nothing.
func runCheck(args []string, stdout, stderr io.Writer) error {
	cfg, _, err := parseConfig("check", args, stderr, nil)
	if err != nil {
		return err
	}
	release, err := app.ClaimDataDir(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("%w (stop the box first: check reads the store alone)", err)
	}
	defer release()
	r, err := engine.CheckStore(engine.StoreOptions{Dir: cfg.DataDir, CacheBytes: 8 << 20, MemTableBytes: 4 << 20}, slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("the index in %s cannot be opened: %w", cfg.DataDir, err)
	}
	fmt.Fprintf(stdout, "data directory %s\n", cfg.DataDir)
	fmt.Fprintf(stdout, "  %d streams, %d fragments, %.1f MiB of media, in %d segment files (%.1f MiB)\n",
		r.Streams, r.Fragments, float64(r.MediaBytes)/(1<<20), r.SegmentFiles, float64(r.SegmentBytes)/(1<<20))
	if r.UnreferencedBytes > 0 {
		fmt.Fprintf(stdout, "  %.1f MiB of segment bytes are not referenced by the index (media retention removed from segments still in use,\n"+
			"  replaced partial copies, or bytes written just before a crash; all of it if the index was lost)\n", float64(r.UnreferencedBytes)/(1<<20))
	}
	if len(r.Problems) == 0 {
		fmt.Fprintln(stdout, "  no problems: every fragment is indexed and its media reads back intact")
		return nil
	}
	fmt.Fprintf(stdout, "  %d problems:\n", len(r.Problems))
	for _, p := range r.Problems {
		where := p.Stream
		if where == "" {
			where = "index"
		}
		if !p.Number.IsZero() {
			where += ", fragment " + p.Number.String()
		}
		fmt.Fprintf(stdout, "    %s: %s\n", where, p.What)
	}
	return errProblemsFound
}
