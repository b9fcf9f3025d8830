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
//     factor), and every holder holds every fragment this node holds, so
//     no fragment loses a copy it needs. Holders compare with holders
//     only, so a fragment a holder does not list (one only this node
//     held: what it recorded standing in as the home and its peers had
//     not yet copied when it left the placement; or one a holder keeps
//     another copy of, engine/resend.go) is offered: this node asks the
//     holder to pull it (the pull route, FORMAT.md), and the holder
//     fetches and imports it, which stores it or finds the copy it holds;
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
			missing, err := r.uncovered(info.Name, ref, p, local)
			if err == nil && len(missing) > 0 {
				err = r.askToPull(info.Name, ref, p, missing)
			}
			if err != nil {
				r.c.opts.Logger.Debug("checking a copy outside the placement", "stream", name, "peer", p.Name, "err", err)
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

// uncovered returns those of local (sorted) that peer does not list.
func (r *Replicator) uncovered(stream string, ref engine.StreamRef, peer status.Member, local []fragment.Number) ([]fragment.Number, error) {
	// Listing starts just before the first local number.
	var missing []fragment.Number
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
			return nil, err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 10000*fragment.NumberLen+1))
		more := resp.Header.Get("X-Kvsedge-More") != ""
		resp.Body.Close()
		cancel()
		if err != nil {
			return nil, err
		}
		clear(theirs)
		for j := 0; j+fragment.NumberLen <= len(body); j += fragment.NumberLen {
			var n fragment.Number
			copy(n[:], body[j:])
			theirs[n] = struct{}{}
			from = n
		}
		last := !more || len(body) == 0
		for i < len(local) && (local[i].Compare(from) <= 0 || last) {
			if _, ok := theirs[local[i]]; !ok {
				missing = append(missing, local[i])
			}
			i++
		}
		if last || i == len(local) {
			return missing, nil
		}
	}
}

// askToPull asks peer, a holder of the stream, to fetch nums from this
// node and import them (the pull route), maxPull at a time. Nil: peer
// holds each, or a copy of its frames.
func (r *Replicator) askToPull(stream string, ref engine.StreamRef, peer status.Member, nums []fragment.Number) error {
	for len(nums) > 0 {
		batch := nums[:min(len(nums), maxPull)]
		nums = nums[len(batch):]
		body := make([]byte, 0, len(batch)*fragment.NumberLen)
		for _, n := range batch {
			body = append(body, n[:]...)
		}
		ctx, cancel := context.WithTimeout(r.ctx, peerRequestTimeout+10*time.Second)
		resp, err := r.do(ctx, peer, http.MethodPost, "pull", url.Values{"stream": {stream}, "arn": {ref.ARN}}, body)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		cancel()
		if err != nil {
			return err
		}
		r.c.opts.Logger.Info("a holder pulled from this copy outside the placement the fragments it did not list", "stream", stream, "holder", peer.Name, "fragments", len(batch))
	}
	return nil
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
