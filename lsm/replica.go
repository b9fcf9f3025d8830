package lsm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// FragmentNumbers calls fn with the numbers of the stream's stored
// fragments after `after`, in order, until fn returns false. It reads keys
// only.
func (d *DB) FragmentNumbers(id StreamID, after fragment.Number, fn func(fragment.Number) bool) error {
	lower := fragmentKey(nil, id, after.Next())
	_, upper := streamSpan(prefixFragment, id)
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("lsm: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != 1+StreamIDLen+fragment.NumberLen {
			return &CorruptionError{Key: append([]byte(nil), k...), Reason: "fragment key of the wrong length"}
		}
		var n fragment.Number
		copy(n[:], k[1+StreamIDLen:])
		if !fn(n) {
			break
		}
	}
	return it.Error()
}

// Tombstones: a deleted stream's ARN and when it was deleted, so that a
// peer that still holds the stream learns of the deletion instead of
// giving the stream back (FORMAT.md, meta "tomb/<arn>").
const tombPrefix = "tomb/"

// PutTombstone records, synced, that the stream with this ARN was deleted
// at ms.
func (d *DB) PutTombstone(arn string, ms int64) error {
	if err := d.space.check(false); err != nil {
		return err
	}
	v := binary.BigEndian.AppendUint64(nil, uint64(ms))
	if err := d.db.Set(metaKey(tombPrefix+arn), v, pebble.Sync); err != nil {
		return fmt.Errorf("lsm: writing tombstone: %w", err)
	}
	return nil
}

// Tombstones returns every recorded deletion: ARN → epoch ms.
func (d *DB) Tombstones() (map[string]int64, error) {
	lower := metaKey(tombPrefix)
	upper := metaKey(tombPrefix[:len(tombPrefix)-1] + string(rune(tombPrefix[len(tombPrefix)-1]+1)))
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("lsm: %w", err)
	}
	defer it.Close()
	out := map[string]int64{}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("lsm: reading tombstone: %w", err)
		}
		if len(v) != 8 {
			return nil, &CorruptionError{Key: append([]byte(nil), it.Key()...), Reason: "tombstone of the wrong length"}
		}
		out[string(it.Key()[len(lower):])] = int64(binary.BigEndian.Uint64(v))
	}
	if err := it.Error(); err != nil && !errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("lsm: %w", err)
	}
	return out, nil
}
