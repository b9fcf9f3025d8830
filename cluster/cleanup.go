package cluster

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/internal/status"
)

// Copies outside the placement. A node that stood in for a failed holder
// (it became a replica and copied the stream) holds a copy nobody reads
// once the holder is back. dropCopies deletes it, but only when:
//
//   - the node has been outside the stream's placement for DropAfter
//     (membership that flaps must not delete and copy again);
//   - the placement is whole (as many alive holders as the stream's
//     factor), and every holder lists every fragment this node holds, so
//     no fragment loses a copy it needs (what only this node held is
//     fetched by the holders' anti-entropy first);
//   - the stream is not on hold (engine.DropCopy keeps held media).
//
// It runs after each anti-entropy round.

// dropRetry is how long dropCopies waits after finding a copy not yet
// covered by the holders before it looks again.
const dropRetry = 10 * time.Minute

// dropCopies deletes the copies of streams this node no longer holds.
func (r *Replicator) dropCopies() {
	for _, info := range r.eng.Streams() {
		name := info.Name
		pl := r.placement(info)
		inside := slices.ContainsFunc(pl, func(m status.Member) bool { return m.Self })
		r.mu.Lock()
		if inside || len(pl) < r.factor(info) {
			delete(r.outside, name)
			delete(r.dropNext, name)
			if inside {
				delete(r.dropped, name) // it copies the stream again
			}
			r.mu.Unlock()
			continue
		}
		since, known := r.outside[name]
		if !known {
			r.outside[name] = time.Now()
		}
		dropped := r.dropped[name]
		next := r.dropNext[name]
		r.mu.Unlock()
		if !known || time.Since(since) < r.opts.DropAfter || info.DataRetentionInHours == 0 || time.Now().Before(next) {
			continue
		}
		ref := engine.StreamRef{ARN: info.ARN}
		var local []fragment.Number
		if err := r.eng.FragmentNumbers(ref, dropped, func(n fragment.Number) bool { local = append(local, n); return true }); err != nil || len(local) == 0 {
			continue
		}
		covered := true
		for _, p := range pl {
			ok, err := r.covers(info.Name, ref, p, local)
			if err != nil {
				r.c.opts.Logger.Debug("checking a copy outside the placement", "stream", name, "peer", p.Name, "err", err)
			}
			if !ok {
				covered = false
				break
			}
		}
		if !covered {
			// Each look lists the whole copy here and at every holder:
			// not every anti-entropy round while a holder still lacks
			// something (it may never fetch it: holders compare with
			// holders only).
			r.mu.Lock()
			r.dropNext[name] = time.Now().Add(r.opts.dropRetry)
			r.mu.Unlock()
			continue
		}
		last := local[len(local)-1]
		n, err := r.eng.DropCopy(ref, last)
		if err != nil {
			r.c.opts.Logger.Warn("deleting a copy outside the placement", "stream", name, "err", err)
			continue
		}
		r.mu.Lock()
		r.dropped[name] = last
		r.mu.Unlock()
		if n > 0 {
			r.c.opts.Logger.Info("deleted this node's copy of a stream it no longer holds (its holders have every fragment)",
				"stream", name, "fragments", n, "holders", len(pl))
		}
	}
}

// covers reports whether peer lists every one of local (sorted).
func (r *Replicator) covers(stream string, ref engine.StreamRef, peer status.Member, local []fragment.Number) (bool, error) {
	// Listing starts just before the first local number.
	i := 0
	theirs := map[fragment.Number]struct{}{}
	from := fragment.Number{}
	if first := local[0]; !first.IsZero() {
		from = prev(first)
	}
	for {
		q := url.Values{"stream": {stream}, "arn": {ref.ARN}, "after": {from.String()}, "limit": {"10000"}}
		ctx, cancel := context.WithTimeout(r.ctx, peerRequestTimeout)
		resp, err := r.do(ctx, peer, http.MethodGet, "numbers", q, nil)
		if err != nil {
			cancel()
			return false, err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 10000*fragment.NumberLen+1))
		more := resp.Header.Get("X-Kvsedge-More") != ""
		resp.Body.Close()
		cancel()
		if err != nil {
			return false, err
		}
		for j := 0; j+fragment.NumberLen <= len(body); j += fragment.NumberLen {
			var n fragment.Number
			copy(n[:], body[j:])
			theirs[n] = struct{}{}
			from = n
		}
		for i < len(local) && (local[i].Compare(from) <= 0 || !more) {
			if _, ok := theirs[local[i]]; !ok {
				return false, nil
			}
			i++
		}
		if !more || len(body) == 0 || i == len(local) {
			return i == len(local), nil
		}
	}
}

// prev is the largest number before n (n not zero).
func prev(n fragment.Number) fragment.Number {
	for i := len(n) - 1; i >= 0; i-- {
		n[i]--
		if n[i] != 0xff {
			break
		}
	}
	return n
}
