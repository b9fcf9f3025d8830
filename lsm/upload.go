package lsm

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// Upload progress (FORMAT.md, meta "upload/<sid>"): the newest fragment of
// the stream that the upstream KVS acknowledged PERSISTED, so an upload
// resumes after it across restarts.

const uploadPrefix = "upload/"

func uploadKey(id StreamID) []byte { return metaKey(fmt.Sprintf("%s%08x", uploadPrefix, uint32(id))) }

// UploadProgress returns the stream's upload progress (zero: nothing
// uploaded yet).
func (d *DB) UploadProgress(id StreamID) (fragment.Number, error) {
	var n fragment.Number
	v, closer, err := d.db.Get(uploadKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return n, nil
	}
	if err != nil {
		return n, fmt.Errorf("lsm: reading upload progress: %w", err)
	}
	defer closer.Close()
	if len(v) != 1+fragment.NumberLen || v[0] != 1 {
		return n, &CorruptionError{Key: uploadKey(id), Reason: "upload progress of unknown version"}
	}
	copy(n[:], v[1:])
	return n, nil
}

// PutUploadProgress records, synced, that the upstream PERSISTED every
// fragment of the stream up to n.
func (d *DB) PutUploadProgress(id StreamID, n fragment.Number) error {
	if err := d.space.check(false); err != nil {
		return err
	}
	v := append([]byte{1}, n[:]...)
	if err := d.db.Set(uploadKey(id), v, pebble.Sync); err != nil {
		return fmt.Errorf("lsm: writing upload progress: %w", err)
	}
	return nil
}

// FragmentMeta returns a stored fragment's meta, without reading its media.
func (d *DB) FragmentMeta(id StreamID, n fragment.Number) (fragment.Meta, error) {
	key := fragmentKey(nil, id, n)
	v, closer, err := d.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return fragment.Meta{}, ErrNotFound
	}
	if err != nil {
		return fragment.Meta{}, fmt.Errorf("lsm: reading fragment: %w", err)
	}
	defer closer.Close()
	m, _, err := decodeFragment(key, v)
	return m, err
}
