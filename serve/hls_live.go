package serve

import (
	"slices"
	"sync"
	"time"

	"github.com/kvsedge/kvsedge/internal/fragment"
)

// LIVE media sequence numbers. In a media playlist the segments' numbers
// are implicit: EXT-X-MEDIA-SEQUENCE for the first, +1 for each next. A
// client requires the same segment to keep its number from one reload to
// the next, and numbers never to go back. A fragment number's seq cannot
// serve: it restarts at 0 in each ingest term (cluster failover and
// hand-back move a camera's ingest to another box), and the LIVE window
// lists fragments in number order, term by term.
//
// So each LIVE session has a small record in memory (liveSeqs, keyed by
// the token's signature; a session is served by the one box that made its
// token): for every ingest term (term, node) its window has listed, the
// offset that turns a seq into a media sequence number (offset + seq: a
// term's fragments are numbered consecutively) and the highest seq listed.
// A reload numbers its window from the first fragment of a known term;
// when none is known (a new session, or a window wholly past the last one)
// it starts after the last number given. Lists only grow at their end:
// once a newer term has been listed, later-arriving fragments of an older
// term (a box still recording during a hand-over's overlap, a late copy)
// are left out of this session's LIVE playlists, as inserting them would
// renumber the segments after them. (Other reads list them.)
//
// Bounds: records of expired sessions go at the next sweep (at most a
// minute later, and whenever the table is full); at most maxLiveSessions
// records (the least recently used goes first) and maxLiveTerms terms per
// record.
//
// On a box restart (or an evicted record) the numbering is lost: the
// session's next playlist re-anchors its first segment at its producer
// time in ms after the session's base (0 for a session's first playlist).
// Numbers given before grew by one per segment from such an anchor while
// producer time grew by the segments' durations (hundreds of ms each; a
// hand-over's overlap takes back at most about one), so the new numbers
// are above the old: a client sees the sequence jump ahead (the same
// segment under a larger number), never go back.
type liveSeqs struct {
	mu        sync.Mutex
	sessions  map[string]*liveSeqState
	lastSweep time.Time
}

const (
	maxLiveSessions = 4096
	maxLiveTerms    = 32
)

type liveSeqState struct {
	expires int64 // unix seconds: the session's end
	used    time.Time
	next    int64      // the number after the last segment listed
	terms   []liveTerm // in number order
}

// liveTerm is what a session has listed of one ingest term.
type liveTerm struct {
	term   uint64
	node   uint16
	offset int64  // media sequence number = offset + seq
	last   uint32 // highest seq listed
}

func termCmp(t liveTerm, n fragment.Number) int {
	switch {
	case t.term < n.Term():
		return -1
	case t.term > n.Term():
		return 1
	case t.node < n.Node():
		return -1
	case t.node > n.Node():
		return 1
	}
	return 0
}

func (st *liveSeqState) find(n fragment.Number) (int, bool) {
	return slices.BinarySearchFunc(st.terms, n, termCmp)
}

// window numbers a LIVE playlist of the session id (expiring at expires,
// unix s; producer time base baseMs) over all, the newest fragments in
// number order. It returns the fragments to list and the media sequence
// number of the first.
func (l *liveSeqs) window(id string, expires, baseMs int64, all []fragment.Meta, now time.Time) ([]fragment.Meta, uint64) {
	if len(all) == 0 {
		return all, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.sessions[id]
	if st == nil {
		l.sweep(now)
		st = &liveSeqState{expires: expires, next: -1}
		if l.sessions == nil {
			l.sessions = make(map[string]*liveSeqState)
		}
		l.sessions[id] = st
	} else if now.Sub(l.lastSweep) > time.Minute {
		l.sweep(now)
	}
	st.used = now

	frags := all
	if len(st.terms) > 0 {
		// Append only: past the newest listed term, everything; before it,
		// only what was listed already.
		newest := st.terms[len(st.terms)-1]
		frags = make([]fragment.Meta, 0, len(all))
		for _, m := range all {
			if termCmp(newest, m.Number) > 0 {
				i, ok := st.find(m.Number)
				if !ok || m.Number.Seq() > st.terms[i].last {
					continue
				}
			}
			frags = append(frags, m)
		}
		if len(frags) == 0 {
			return frags, uint64(max(st.next, 0))
		}
	}

	start := int64(-1)
	for i, m := range frags {
		if j, ok := st.find(m.Number); ok {
			start = st.terms[j].offset + int64(m.Number.Seq()) - int64(i)
			break
		}
	}
	if start < 0 {
		start = max(frags[0].ProducerMs-baseMs, 0) // the anchor of a session without a record
		if st.next >= 0 {
			start = max(st.next, start)
		}
	}
	for i, m := range frags {
		msn := start + int64(i)
		j, ok := st.find(m.Number)
		if !ok {
			st.terms = slices.Insert(st.terms, j, liveTerm{term: m.Number.Term(), node: m.Number.Node(), last: m.Number.Seq()})
		}
		// The current playlist is what clients see: its positions win
		// (they differ from a known offset only where a term has a gap).
		st.terms[j].offset = msn - int64(m.Number.Seq())
		st.terms[j].last = max(st.terms[j].last, m.Number.Seq())
	}
	if n := len(st.terms) - maxLiveTerms; n > 0 {
		st.terms = slices.Delete(st.terms, 0, n)
	}
	st.next = max(st.next, start+int64(len(frags)))
	return frags, uint64(start)
}

// sweep drops the records of expired sessions and, while the table is
// full, the least recently used. l.mu is held.
func (l *liveSeqs) sweep(now time.Time) {
	l.lastSweep = now
	for id, st := range l.sessions {
		if now.Unix() > st.expires {
			delete(l.sessions, id)
		}
	}
	for len(l.sessions) >= maxLiveSessions {
		var oldest string
		var at time.Time
		for id, st := range l.sessions {
			if oldest == "" || st.used.Before(at) {
				oldest, at = id, st.used
			}
		}
		delete(l.sessions, oldest)
	}
}

// len is the number of session records (tests).
func (l *liveSeqs) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sessions)
}
