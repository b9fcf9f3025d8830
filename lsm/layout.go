package lsm

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"path/filepath"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The data directory (FORMAT.md, "Data directory"):
//
//	<data>/index/            the Pebble index (every file Pebble owns)
//	<data>/media/<sid>/      segment files (segments.go)
//	<data>/index.rebuild/    a repair's new index, until it is swapped in
//	<data>/index.damaged-*/  an index a repair replaced (kept, never read)
//	<data>/lost+found/       bytes a repair could not index (kept)
//	<data>/reserve           the disk-full reserve (space.go)
//
// Stores made before the index had a directory of its own keep Pebble's
// files in the data directory itself; Open moves them into index/ first.

const (
	indexDirName   = "index"
	rebuildDirName = "index.rebuild"
	// migratingDirName holds Pebble files being moved out of the data
	// directory's root; it becomes index/ with one rename.
	migratingDirName = "index.migrating"
	// repairedMarker, inside index.rebuild, says the rebuilt index is
	// complete and synced: Open swaps it in if a crash came first.
	repairedMarker = "REPAIRED"
	lostFoundDir   = "lost+found"
)

// isPebbleFile reports whether a name in the data directory's root is one of
// Pebble's (a store from before index/).
func isPebbleFile(name string) bool {
	switch {
	case name == "LOCK", name == "CURRENT":
		return true
	case strings.HasPrefix(name, "MANIFEST-"), strings.HasPrefix(name, "OPTIONS-"), strings.HasPrefix(name, "marker."),
		strings.HasPrefix(name, "temporary."):
		return true
	}
	switch filepath.Ext(name) {
	case ".sst", ".log", ".blob", ".dbtmp":
		return true
	}
	return false
}

// prepareIndexDir returns the directory Pebble opens. It finishes what a
// crash interrupted: a repair's swap (index.rebuild complete, index/ gone)
// and the move of an old store's files into index/. Every rename is
// followed by a sync of the data directory.
func prepareIndexDir(fs vfs.FS, dataDir string, readOnly bool) (string, error) {
	index := fs.PathJoin(dataDir, indexDirName)
	if exists(fs, index) {
		return index, nil
	}
	rebuild := fs.PathJoin(dataDir, rebuildDirName)
	if exists(fs, fs.PathJoin(rebuild, repairedMarker)) {
		if readOnly {
			return rebuild, nil
		}
		if err := fs.Rename(rebuild, index); err != nil {
			return "", fmt.Errorf("lsm: finishing a repair: %w", err)
		}
		return index, syncDir(fs, dataDir)
	}
	names, err := fs.List(dataDir)
	if err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return "", fmt.Errorf("lsm: listing %s: %w", dataDir, err)
	}
	var old []string
	for _, n := range names {
		if isPebbleFile(n) {
			old = append(old, n)
		}
	}
	migrating := fs.PathJoin(dataDir, migratingDirName)
	if len(old) == 0 && !exists(fs, migrating) {
		if readOnly {
			return index, nil
		}
		// A new store: the directory's entry is durable before Pebble
		// relies on it.
		if err := fs.MkdirAll(index, 0o700); err != nil {
			return "", fmt.Errorf("lsm: %w", err)
		}
		return index, syncDir(fs, dataDir)
	}
	if readOnly {
		if len(old) > 0 {
			return dataDir, nil // an old layout, opened where it is
		}
		return migrating, nil
	}
	if err := fs.MkdirAll(migrating, 0o700); err != nil {
		return "", fmt.Errorf("lsm: %w", err)
	}
	for _, n := range old {
		if err := fs.Rename(fs.PathJoin(dataDir, n), fs.PathJoin(migrating, n)); err != nil {
			return "", fmt.Errorf("lsm: moving the index into %s: %w", index, err)
		}
	}
	if err := syncDir(fs, migrating); err != nil {
		return "", err
	}
	if err := fs.Rename(migrating, index); err != nil {
		return "", fmt.Errorf("lsm: moving the index into %s: %w", index, err)
	}
	return index, syncDir(fs, dataDir)
}

func exists(fs vfs.FS, path string) bool {
	_, err := fs.Stat(path)
	return err == nil
}
