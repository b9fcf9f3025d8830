package cluster

import (
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/hashicorp/serf/serf"
	"github.com/kvsedge/kvsedge/internal/status"
)

// Options configures a node.
type Options struct {
	// NodeName is unique in the cluster (default: the host name).
	NodeName string
	// Bind is the gossip address (host:port, UDP and TCP).
	Bind string
	// Advertise is the gossip address peers use, when it differs from Bind.
	Advertise string
	// Seeds are gossip addresses of members to join; none: a cluster of
	// one until others join this node.
	Seeds []string
	// Key encrypts gossip (16, 24 or 32 bytes); every member needs it.
	Key []byte
	// APIURL is this node's KVS endpoint, gossiped to peers.
	APIURL string
	// Profile names the node's hardware profile.
	Profile string
	// FreeBytes reports free storage, gossiped to peers (nil: not
	// reported).
	FreeBytes func() uint64
	// FastFailureDetection tunes serf for a LAN of a few boxes: failures
	// are detected in about a second (shared/library-notes.md) instead of
	// about six.
	FastFailureDetection bool
	// NodeID is this node's id in fragment numbers, gossiped so peers
	// can ask for the fragments this node ingested.
	NodeID uint16
	// SnapshotPath, when set, is where serf keeps the members it knew, so
	// that a node restarted during a partition still counts them (and
	// does not think itself a majority of one).
	SnapshotPath string
	// Witness makes this node a tie-breaker (kvsedge witness): it counts
	// for quorum but is never a stream's home or replica and serves no
	// API (a two-box site with a witness has one side with a majority
	// when the boxes are cut apart).
	Witness bool
	// startedMs is set by Start (tagStarted).
	startedMs int64
	// CredentialFingerprint identifies this box's API key set
	// (config.CredentialFingerprint). Boxes whose set differs from the
	// longest-running box's are kept out: never a home or replica, and a
	// kept-out box records nothing and says why (one cluster, one set of
	// keys).
	CredentialFingerprint string
	// MaxCameras is how many cameras this box records at once
	// (media.max_cameras; 0: no limit), gossiped so that camera placement
	// passes over full boxes (Placement).
	MaxCameras int
	Logger     *slog.Logger
}

// Cluster is this node's view of the cluster.
type Cluster struct {
	opts Options
	// keptOutLogged is when KeptOut was last logged (unix ns).
	keptOutLogged atomic.Int64
	serf          *serf.Serf
	events        chan serf.Event
	done          chan struct{}
	wg            sync.WaitGroup
	started       time.Time
	// joined: this node reached a seed (or has none to reach); until then
	// it has no quorum.
	joined atomic.Bool
	// seen remembers each member's api and nid tags, so that only changes
	// that matter to replication notify subscribers (the free-space tag
	// changes every minute).
	seenMu sync.Mutex
	seen   map[string]string
	repl   *Replicator
	peer   *PeerServer
	// handBackSince: when this node, recording a stream it does not hold,
	// first saw the stream's home back (view.go, Owns).
	quorumMu      sync.Mutex
	handBackSince map[string]time.Time
	// heard's last answer (view.go).
	heardMu   sync.Mutex
	heardAt   time.Time
	heardLast heardAnswer

	subMu sync.Mutex
	subs  []chan struct{}

	// cameras are the streams with a camera configured (the same on every
	// box: SetCameraStreams), sorted; nil: none known.
	cameras atomic.Pointer[[]string]
}

// Tag names gossiped with each member.
const (
	tagAPI     = "api"
	tagProfile = "profile"
	tagFree    = "free"
	tagNodeID  = "nid"
	// tagRole is "witness" for a tie-breaker; absent for a box.
	tagRole     = "role"
	roleWitness = "witness"
	// tagCred is the API key set's fingerprint; tagStarted the process
	// start (epoch ms), which orders boxes when their key sets differ.
	tagCred    = "cred"
	tagStarted = "t0"
	// tagCameras is media.max_cameras (absent: no limit).
	tagCameras = "cams"
)

// Start creates the node, starts gossip and joins the seeds (retrying in
// the background until one answers).
func Start(opts Options) (*Cluster, error) {
	opts.startedMs = time.Now().UnixMilli()
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	host, portStr, _ := net.SplitHostPort(opts.Bind)
	port, _ := strconv.Atoi(portStr)
	conf := serf.DefaultConfig()
	conf.Init()
	if opts.NodeName != "" {
		conf.NodeName = opts.NodeName
	}
	conf.MemberlistConfig.BindAddr, conf.MemberlistConfig.BindPort = host, port
	if opts.Advertise != "" {
		ah, ap, _ := net.SplitHostPort(opts.Advertise)
		conf.MemberlistConfig.AdvertiseAddr = ah
		conf.MemberlistConfig.AdvertisePort, _ = strconv.Atoi(ap)
	}
	if len(opts.Key) > 0 {
		conf.MemberlistConfig.SecretKey = opts.Key
	}
	if opts.FastFailureDetection {
		m := conf.MemberlistConfig
		m.ProbeInterval = 200 * time.Millisecond
		m.ProbeTimeout = 100 * time.Millisecond
		m.SuspicionMult = 2
		m.GossipInterval = 50 * time.Millisecond
		// Members that failed (a network cut) are retried every second
		// instead of every 30 s, so a healed cut rejoins promptly.
		conf.ReconnectInterval = time.Second
	}
	// No TCP fallback for failed UDP probes: on a one-way failure (this box
	// can send but hears nothing back) the fallback's own TCP connection
	// carries the answer, so this box would go on seeing its peers alive
	// and keep recording while they, not hearing it, take its cameras
	// over. Found by TestClusterNetworkCut. (Boxes must reach each other
	// over UDP, as serf requires anyway.)
	conf.MemberlistConfig.DisableTcpPings = true
	// serf and memberlist log through the standard logger; send it to slog
	// at debug level.
	stdlog := log.New(slogWriter{l: opts.Logger, lastKey: new(atomic.Int64)}, "", 0)
	conf.Logger, conf.MemberlistConfig.Logger = stdlog, stdlog
	events := make(chan serf.Event, 64)
	conf.EventCh = events
	conf.Tags = opts.tags()
	conf.SnapshotPath = opts.SnapshotPath
	s, err := serf.Create(conf)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c := &Cluster{opts: opts, serf: s, events: events, done: make(chan struct{}), started: time.Now(), seen: map[string]string{},
		handBackSince: map[string]time.Time{}}
	c.joined.Store(len(opts.Seeds) == 0)
	c.wg.Add(2)
	go c.drainEvents()
	go c.joinLoop()
	return c, nil
}

// Validate reports every invalid option.
func (o *Options) Validate() error {
	var errs []error
	hostPort := func(name, v string) {
		_, p, err := net.SplitHostPort(v)
		if err == nil {
			var n int
			if n, err = strconv.Atoi(p); err == nil && (n < 0 || n > 65535) {
				err = errors.New("port out of range")
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster: %s %q is not host:port: %w", name, v, err))
		}
	}
	hostPort("bind", o.Bind)
	if o.Advertise != "" {
		hostPort("advertise", o.Advertise)
	}
	for _, s := range o.Seeds {
		if _, _, err := net.SplitHostPort(s); err != nil {
			errs = append(errs, fmt.Errorf("cluster: seed %q is not host:port: %w", s, err))
		}
	}
	if len(o.Key) != 0 && len(o.Key) != 16 && len(o.Key) != 24 && len(o.Key) != 32 {
		errs = append(errs, fmt.Errorf("cluster: the gossip key is %d bytes, not 16, 24 or 32", len(o.Key)))
	}
	return errors.Join(errs...)
}

func (o *Options) tags() map[string]string {
	t := map[string]string{tagAPI: o.APIURL, tagProfile: o.Profile, tagNodeID: strconv.Itoa(int(o.NodeID))}
	if o.Witness {
		t[tagRole] = roleWitness
	}
	if o.CredentialFingerprint != "" {
		t[tagCred] = o.CredentialFingerprint
	}
	t[tagStarted] = strconv.FormatInt(o.startedMs, 10)
	if o.MaxCameras > 0 {
		t[tagCameras] = strconv.Itoa(o.MaxCameras)
	}
	if o.FreeBytes != nil {
		t[tagFree] = strconv.FormatUint(o.FreeBytes(), 10)
	}
	return t
}

// slogWriter takes serf's and memberlist's log lines at debug level, except
// the one an operator must see: a peer whose gossip this box cannot
// decrypt has another cluster.key (logged as a warning, at most once a
// minute).
type slogWriter struct {
	l       *slog.Logger
	lastKey *atomic.Int64
}

func (w slogWriter) Write(p []byte) (int, error) {
	line := string(p)
	if strings.Contains(line, "decrypt") || strings.Contains(line, "Encryption is configured but remote state is not encrypted") {
		now := time.Now().UnixNano()
		if last := w.lastKey.Load(); now-last > int64(time.Minute) && w.lastKey.CompareAndSwap(last, now) {
			w.l.Warn("a box with a different cluster.key (or none) tried to talk to this one; it is kept out: give every box the same key",
				"detail", strings.TrimSpace(line))
			return len(p), nil
		}
	}
	w.l.Debug(line, "component", "serf")
	return len(p), nil
}

var _ io.Writer = slogWriter{}

func (c *Cluster) drainEvents() {
	defer c.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case e := <-c.events:
			if me, ok := e.(serf.MemberEvent); ok {
				relevant := me.EventType() != serf.EventMemberUpdate
				c.seenMu.Lock()
				for _, m := range me.Members {
					key := m.Tags[tagAPI] + "|" + m.Tags[tagNodeID] + "|" + m.Status.String()
					if c.seen[m.Name] != key {
						relevant = true
						c.seen[m.Name] = key
					}
				}
				c.seenMu.Unlock()
				if relevant {
					for _, m := range me.Members {
						c.opts.Logger.Info("cluster member "+me.EventType().String(), "member", m.Name, "addr", net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))))
					}
					c.notify()
				}
			}
		}
	}
}

// joinLoop joins the seeds, retrying with backoff until one answers, and
// refreshes the free-capacity tag every minute.
func (c *Cluster) joinLoop() {
	defer c.wg.Done()
	backoff := time.Second
	joined := len(c.opts.Seeds) == 0
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		if !joined {
			if n, err := c.serf.Join(c.opts.Seeds, true); err == nil && n > 0 {
				joined = true
				c.joined.Store(true)
				c.opts.Logger.Info("joined the cluster", "contacted", n)
			} else {
				c.opts.Logger.Debug("joining the cluster", "err", err, "retry_in", backoff.String())
			}
		}
		wait := tick.C
		var retry <-chan time.Time
		if !joined {
			retry = time.After(backoff)
			backoff = min(backoff*2, 30*time.Second)
		}
		select {
		case <-c.done:
			return
		case <-retry:
		case <-wait:
			if c.opts.FreeBytes != nil {
				_ = c.serf.SetTags(c.opts.tags())
			}
		}
	}
}

// Name is this node's name.
func (c *Cluster) Name() string { return c.serf.LocalMember().Name }

// Members returns every member serf knows, by name.
func (c *Cluster) Members() []status.Member {
	self := c.serf.LocalMember().Name
	var out []status.Member
	for _, m := range c.serf.Members() {
		free, _ := strconv.ParseUint(m.Tags[tagFree], 10, 64)
		nid, _ := strconv.ParseUint(m.Tags[tagNodeID], 10, 16)
		out = append(out, status.Member{
			NodeID: uint16(nid),
			Name:   m.Name, Addr: net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))),
			Status: m.Status.String(), APIURL: m.Tags[tagAPI], Profile: m.Tags[tagProfile], FreeBytes: free,
			Self: m.Name == self, Witness: m.Tags[tagRole] == roleWitness,
			Credentials: m.Tags[tagCred], StartedMs: parseInt(m.Tags[tagStarted]),
			MaxCameras: int(parseInt(m.Tags[tagCameras])),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	markKeptOut(out)
	return out
}

// Subscribe returns a channel signalled after membership changes (a
// member joined, left, failed or changed its tags); a receiver that was
// busy gets one signal for several changes.
func (c *Cluster) Subscribe() <-chan struct{} {
	ch := make(chan struct{}, 1)
	c.subMu.Lock()
	c.subs = append(c.subs, ch)
	c.subMu.Unlock()
	return ch
}

func (c *Cluster) notify() {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	for _, ch := range c.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// HasQuorum reports whether this node may record cameras: it has reached
// the cluster (joined a seed, when it has seeds) and sees at least half of
// the members alive (members that left gracefully do not count; failed
// ones do; serf's snapshot keeps them across a restart). A node cut off
// from a majority stops instead of recording what the majority has taken
// over. Exactly half is enough: two boxes, the commonest cluster, cannot
// tell the other's death from a cut and the survivor must record; during
// such an even split both halves record a camera (twice, never lost).
func (c *Cluster) HasQuorum() bool { return c.joined.Load() && hasQuorum(c.Members()) }

func hasQuorum(ms []status.Member) bool {
	alive, total := 0, 0
	for _, m := range ms {
		if m.Status == "left" {
			continue
		}
		total++
		if m.Status == "alive" {
			alive++
		}
	}
	return alive*2 >= total
}

// Placement returns the stream's home node and then its replicas, n
// members in all (fewer if fewer are alive), by rendezvous hashing over
// the alive members: each node ranks members by a hash of (stream,
// member), so every node agrees, and losing a member moves only the
// streams it held. A stream with a camera is homed on the first box of
// its ranking with room for one more camera (CameraHomes), so a box never
// homes more cameras than its media.max_cameras while another has room.
func (c *Cluster) Placement(stream string, n int) []status.Member {
	var alive []status.Member
	for _, m := range c.Members() {
		if m.Status == "alive" && !m.Witness && !m.KeptOut {
			alive = append(alive, m)
		}
	}
	ranked := Rank(stream, alive, len(alive))
	if cams := c.cameras.Load(); cams != nil {
		if home, ok := CameraHomes(*cams, alive)[stream]; ok {
			for i, m := range ranked {
				if m.Name == home {
					copy(ranked[1:i+1], ranked[:i])
					ranked[0] = m
					break
				}
			}
		}
	}
	return ranked[:min(n, len(ranked))]
}

// SetCameraStreams tells the cluster which streams have a camera
// configured (every box has the same cameras), for camera placement.
func (c *Cluster) SetCameraStreams(streams []string) {
	s := slices.Clone(streams)
	slices.Sort(s)
	if old := c.cameras.Load(); old != nil && slices.Equal(*old, s) {
		return
	}
	c.cameras.Store(&s)
}

// CameraHomes assigns each camera stream (sorted by name) to the first
// member of its rendezvous ranking that has room (media.max_cameras, as
// gossiped; 0: no limit) after the streams before it; when no member has
// room, to the first of its ranking (which then holds it in STANDBY).
// Every node computes the same from the same members and cameras.
func CameraHomes(streams []string, members []status.Member) map[string]string {
	out := make(map[string]string, len(streams))
	load := make(map[string]int, len(members))
	for _, s := range streams {
		ranked := Rank(s, members, len(members))
		if len(ranked) == 0 {
			break
		}
		home := ranked[0]
		for _, m := range ranked {
			if m.MaxCameras == 0 || load[m.Name] < m.MaxCameras {
				home = m
				break
			}
		}
		load[home.Name]++
		out[s] = home.Name
	}
	return out
}

// Rank orders members for a stream by rendezvous score and keeps n.
func Rank(stream string, members []status.Member, n int) []status.Member {
	type scored struct {
		m     status.Member
		score uint64
	}
	ss := make([]scored, len(members))
	for i, m := range members {
		ss[i] = scored{m, xxhash.Sum64String(stream + "\x00" + m.Name)}
	}
	sort.Slice(ss, func(i, j int) bool {
		if ss[i].score != ss[j].score {
			return ss[i].score > ss[j].score
		}
		return ss[i].m.Name < ss[j].m.Name
	})
	if n > len(ss) {
		n = len(ss)
	}
	out := make([]status.Member, n)
	for i := range out {
		out[i] = ss[i].m
	}
	return out
}

// Home is the API URL of the stream's home node ("" when no member is
// alive).
func (c *Cluster) Home(stream string) string {
	p := c.Placement(stream, 1)
	if len(p) == 0 {
		return ""
	}
	return p[0].APIURL
}

// NodeID derives the 16-bit node id used in fragment numbers from the
// node name (lsm/FORMAT.md); nodes of one cluster need distinct ids, so
// a collision (1 in 65,536 per pair) is for the operator to resolve with
// an explicit id.
func NodeID(name string) uint16 { return uint16(xxhash.Sum64String(name)) }

// Close leaves the cluster gracefully (peers mark this node left, not
// failed) and stops gossip.
func (c *Cluster) Close() error {
	if c.repl != nil {
		c.repl.Close()
	}
	close(c.done)
	c.wg.Wait()
	err := c.serf.Leave()
	if serr := c.serf.Shutdown(); err == nil {
		err = serr
	}
	return err
}

func parseInt(s string) int64 {
	v, _ := strconv.ParseInt(s, 10, 64)
	return v
}

// markKeptOut marks the boxes whose API key set differs from the cluster's:
// the set of the longest-running alive box (ties by name), which every node
// computes alike from the gossip.
func markKeptOut(ms []status.Member) {
	var ref *status.Member
	for i := range ms {
		m := &ms[i]
		if m.Witness || m.Status != "alive" || m.Credentials == "" {
			continue
		}
		if ref == nil || m.StartedMs < ref.StartedMs || (m.StartedMs == ref.StartedMs && m.Name < ref.Name) {
			ref = m
		}
	}
	if ref == nil {
		return
	}
	for i := range ms {
		m := &ms[i]
		m.KeptOut = !m.Witness && m.Credentials != "" && m.Credentials != ref.Credentials
	}
}

// KeptOut says why this box is kept out of the cluster ("" when it is not):
// its API key set differs from the cluster's.
func (c *Cluster) KeptOut() string {
	ms := c.Members()
	var self *status.Member
	var others []string
	for i := range ms {
		if ms[i].Self {
			self = &ms[i]
		} else if !ms[i].Witness && !ms[i].KeptOut && ms[i].Status == "alive" {
			others = append(others, ms[i].Name)
		}
	}
	if self == nil || !self.KeptOut {
		return ""
	}
	return fmt.Sprintf("this box's API keys differ from the cluster's (those of %s): it records nothing and holds no stream. "+
		"Give every box the same credentials (or none: boxes with one cluster.key generate the same pair)", strings.Join(others, ", "))
}
