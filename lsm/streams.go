package lsm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// StreamRecord is one stored stream: its id and the engine's encoded record.
type StreamRecord struct {
	ID    StreamID
	Value []byte
}

// AllocStreamID reserves the next stream id. The reservation becomes durable
// with the first PutStream that uses it; an id reserved but never written may
// be handed out again after a restart, which is harmless because nothing was
// stored under it.
func (d *DB) AllocStreamID() (StreamID, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.nextStreamID == 0 {
		return 0, errors.New("lsm: stream ids exhausted")
	}
	id := d.mu.nextStreamID
	d.mu.nextStreamID++
	return id, nil
}

// PutStream writes a stream record and advances the persisted id counter past
// id, in one synced batch.
func (d *DB) PutStream(id StreamID, value []byte) error {
	if err := d.space.check(false); err != nil {
		return err
	}
	if id == 0 {
		return errors.New("lsm: stream id 0 is reserved")
	}
	b := d.db.NewBatch()
	defer b.Close()
	if err := b.Set(streamKey(id), value, nil); err != nil {
		return fmt.Errorf("lsm: staging stream %d: %w", id, err)
	}
	var next [4]byte
	d.mu.Lock()
	binary.BigEndian.PutUint32(next[:], uint32(d.mu.nextStreamID))
	d.mu.Unlock()
	if err := b.Set(metaKey(metaNextStreamID), next[:], nil); err != nil {
		return fmt.Errorf("lsm: staging id counter: %w", err)
	}
	// A new stream's replay checkpoint is its beginning (replay.go):
	// its first fragments' commits are not synced, and a stream without
	// one counts as wholly indexed at Open.
	if _, ok, err := d.checkpoint(id); err != nil {
		return err
	} else if !ok {
		if err := setCheckpoint(b, id, segmentRef{}); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("lsm: committing stream %d: %w", id, err)
	}
	return nil
}

// DeleteStream removes a stream record and, with range deletions, every
// fragment, index entry and header of the stream, in one synced batch.
func (d *DB) DeleteStream(id StreamID) error {
	if d.space.readOnly {
		return ErrNoSpace
	}
	if d.ckpt != nil {
		// No checkpoint of the stream is written after its deletion.
		d.ckpt.mu.Lock()
		defer d.ckpt.mu.Unlock()
		d.ckpt.forget(id)
	}
	b := d.db.NewBatch()
	defer b.Close()
	if err := b.Delete(streamKey(id), nil); err != nil {
		return fmt.Errorf("lsm: staging delete of stream %d: %w", id, err)
	}
	// The marker lets Open finish removing the media after a crash.
	if err := b.Set(metaKey(fmt.Sprintf("%s%08x", deletedPrefix, uint32(id))), nil, nil); err != nil {
		return fmt.Errorf("lsm: staging delete of stream %d: %w", id, err)
	}
	if err := b.Delete(uploadKey(id), nil); err != nil {
		return fmt.Errorf("lsm: staging delete of stream %d: %w", id, err)
	}
	for _, p := range streamTables {
		start, end := streamSpan(p, id)
		if err := b.DeleteRange(start, end, nil); err != nil {
			return fmt.Errorf("lsm: staging range delete of stream %d: %w", id, err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("lsm: deleting stream %d: %w", id, err)
	}
	d.bounds.forget(id)
	// The index is gone (synced); now the media, then the marker.
	if err := d.segs.removeStream(id); err != nil {
		return err
	}
	return d.db.Delete(metaKey(fmt.Sprintf("%s%08x", deletedPrefix, uint32(id))), pebble.NoSync)
}

// Streams returns every stored stream record in id order.
func (d *DB) Streams() ([]StreamRecord, error) {
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixStream}, UpperBound: []byte{prefixStream + 1}})
	if err != nil {
		return nil, fmt.Errorf("lsm: iterating streams: %w", err)
	}
	defer it.Close()
	var out []StreamRecord
	for ok := it.First(); ok; ok = it.Next() {
		id, err := parseStreamKey(it.Key())
		if err != nil {
			return nil, &CorruptionError{Key: append([]byte(nil), it.Key()...), Reason: err.Error()}
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("lsm: reading stream %d: %w", id, err)
		}
		out = append(out, StreamRecord{ID: id, Value: append([]byte(nil), v...)})
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("lsm: iterating streams: %w", err)
	}
	return out, nil
}
