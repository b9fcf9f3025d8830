package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

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
	if r.Replayable > 0 {
		fmt.Fprintf(stdout, "  %d of them were stored just before an unclean stop and are not in the index yet: the next start indexes them\n"+
			"  from their segments (checked here as it will index them)\n", r.Replayable)
	}
	if r.ReplayDamaged > 0 || r.ReplayUnreachable > 0 {
		fmt.Fprintf(stdout, "  among the records written just before an unclean stop, %d fail their checksum and %d record headers are torn, with\n"+
			"  intact records after them (a write torn by the stop, or damage since): the next start leaves them out, and the\n"+
			"  records after a torn header too; kvsedge repair indexes every intact record\n", r.ReplayDamaged, r.ReplayUnreachable)
	}
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

// runRepair rebuilds the box's index while the box is stopped (lsm.Repair
// through engine.RepairStore): what the old index still reads plus every
// intact record of the media segments. Nothing is deleted: the old index
// goes to index.damaged-<time>/, bytes that cannot be indexed to
// lost+found/.
func runRepair(args []string, stdout, stderr io.Writer) error {
	cfg, _, err := parseConfig("repair", args, stderr, nil)
	if err != nil {
		return err
	}
	release, err := app.ClaimDataDir(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("%w (stop the box first: repair rewrites the index alone)", err)
	}
	defer release()
	r, err := engine.RepairStore(engine.StoreOptions{Dir: cfg.DataDir, CacheBytes: 8 << 20, MemTableBytes: 4 << 20}, slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("repairing %s: %w", cfg.DataDir, err)
	}
	fmt.Fprintf(stdout, "data directory %s: the index was rebuilt\n", cfg.DataDir)
	if r.OldIndexError != "" {
		fmt.Fprintf(stdout, "  the old index could not be opened (%s)\n", r.OldIndexError)
	}
	if r.OldIndex != "" {
		fmt.Fprintf(stdout, "  the old index was moved to %s (kept; delete it when satisfied)\n", r.OldIndex)
	}
	fmt.Fprintf(stdout, "  %d streams (%s), %d fragments indexed: %d kept from the old index, %d found in %d segment files\n",
		r.Streams, strings.Join(r.StreamNames, ", "), r.Fragments, r.FromOldIndex, r.FromSegments, r.SegmentFiles)
	if r.Replaced > 0 {
		fmt.Fprintf(stdout, "  %d partial copies left out: a whole re-send of each replaced it\n", r.Replaced)
	}
	if r.Unframed > 0 {
		fmt.Fprintf(stdout, "  %d segment files were written by an older kvsedge without records: only the old index knows their fragments\n", r.Unframed)
	}
	for _, a := range r.Aside {
		fmt.Fprintf(stdout, "  set aside: %s (%d bytes): %s\n", a.Path, a.Bytes, a.Why)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(stdout, "  note: %s\n", n)
	}
	return nil
}
