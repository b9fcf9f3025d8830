package app

import (
	"github.com/kvsedge/kvsedge/cluster"
	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/ingest"
	"github.com/kvsedge/kvsedge/internal/status"
	"github.com/kvsedge/kvsedge/serve"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// boxCollector exports the appliance's state as Prometheus metrics at
// scrape time (nothing is counted twice: every value is read from the
// part that owns it).
type boxCollector struct {
	eng   *engine.Engine
	cams  *ingest.Manager
	peers *cluster.Cluster // nil without a cluster
	conns func() serve.ConnStats
	// uploads reports the uploader's streams (nil without an upstream).
	uploads func() []status.Upload
}

var (
	mIngestFragments   = prometheus.NewDesc("kvsedge_ingest_fragments_total", "Fragments received from producers and cameras.", nil, nil)
	mIngestBytes       = prometheus.NewDesc("kvsedge_ingest_bytes_total", "Media bytes received from producers and cameras.", nil, nil)
	mPersistedFrags    = prometheus.NewDesc("kvsedge_persisted_fragments_total", "Ingested fragments made durable (PERSISTED).", nil, nil)
	mPersistedBytes    = prometheus.NewDesc("kvsedge_persisted_bytes_total", "Media bytes of ingested fragments made durable.", nil, nil)
	mPersistLatency    = prometheus.NewDesc("kvsedge_persist_latency_seconds", "From a fragment complete to durable: when its PERSISTED ack may go.", nil, nil)
	mReplicaFrags      = prometheus.NewDesc("kvsedge_replica_fragments_total", "Fragments stored here as copies from peers.", nil, nil)
	mReplicaBytes      = prometheus.NewDesc("kvsedge_replica_bytes_total", "Media bytes stored here as copies from peers.", nil, nil)
	mRingBytes         = prometheus.NewDesc("kvsedge_ring_bytes", "Media held by the hot rings of all streams.", nil, nil)
	mMediaBudget       = prometheus.NewDesc("kvsedge_media_memory_budget_bytes", "The media memory budget (media.memory_budget_mib): every media byte held counts against it.", nil, nil)
	mMediaUsed         = prometheus.NewDesc("kvsedge_media_memory_used_bytes", "Media memory held, by holder: upload (PutMedia, replicas), camera, read (archive reads).", []string{"holder"}, nil)
	mMediaAssembling   = prometheus.NewDesc("kvsedge_media_memory_assembling_bytes", "Media memory of fragments still arriving (part of the used bytes).", nil, nil)
	mMediaCached       = prometheus.NewDesc("kvsedge_media_memory_cached_bytes", "Free media buffers kept for reuse (within the budget).", nil, nil)
	mMediaRefusals     = prometheus.NewDesc("kvsedge_media_memory_refusals_total", "Requests for media memory refused because the budget was full, by holder (PutMedia answered ERROR 5000, cameras dropped a fragment).", []string{"holder"}, nil)
	mMediaShed         = prometheus.NewDesc("kvsedge_media_memory_shed_bytes_total", "Ring media evicted early to make room in the budget.", nil, nil)
	mCameraState       = prometheus.NewDesc("kvsedge_camera_state", "1 for each camera's current state.", []string{"stream", "state"}, nil)
	mCameraFPS         = prometheus.NewDesc("kvsedge_camera_fps", "Frames per second received from the camera.", []string{"stream"}, nil)
	mCameraBitrate     = prometheus.NewDesc("kvsedge_camera_bitrate_bits_per_second", "Bit rate received from the camera.", []string{"stream"}, nil)
	mCameraFragments   = prometheus.NewDesc("kvsedge_camera_fragments_total", "Fragments recorded from the camera since it started.", []string{"stream"}, nil)
	mDiskFree          = prometheus.NewDesc("kvsedge_disk_free_bytes", "Free space on the data directory's filesystem.", nil, nil)
	mDiskSize          = prometheus.NewDesc("kvsedge_disk_size_bytes", "Size of the data directory's filesystem.", nil, nil)
	mDiskMinFree       = prometheus.NewDesc("kvsedge_disk_min_free_bytes", "Free space the box keeps (storage.min_free_mib).", nil, nil)
	mDiskForecast      = prometheus.NewDesc("kvsedge_disk_full_forecast_seconds", "Time until free space reaches the minimum at the recent rate of stored media (absent when not filling).", nil, nil)
	mStoredBytes       = prometheus.NewDesc("kvsedge_stored_media_bytes", "Media the index holds.", nil, nil)
	mRefusing          = prometheus.NewDesc("kvsedge_storage_refusing_new_media", "1 while new media is refused for lack of space.", nil, nil)
	mCapacityDeleted   = prometheus.NewDesc("kvsedge_capacity_deleted_bytes", "Media the last capacity sweep deleted.", nil, nil)
	mWriteAmp          = prometheus.NewDesc("kvsedge_store_write_amplification", "Bytes written to disk (segments, WAL, flushes, compactions) over bytes given to the store, since start.", nil, nil)
	mStoreWriteSeconds = prometheus.NewDesc("kvsedge_store_write_seconds", "The steps of storing fragments, in order, which a PERSISTED ack waits for: append (media to its segment), media_sync (the segment fdatasync), index_commit (the index batch, not synced: the fragment's segment record holds its entries).", []string{"step"}, nil)
	mStoreWritten      = prometheus.NewDesc("kvsedge_store_written_bytes_total", "Bytes the store wrote, by kind.", []string{"kind"}, nil)
	mPebbleCompactions = prometheus.NewDesc("kvsedge_pebble_compactions_total", "Pebble compactions.", nil, nil)
	mPebbleFlushes     = prometheus.NewDesc("kvsedge_pebble_flushes_total", "Pebble memtable flushes.", nil, nil)
	mPebbleCache       = prometheus.NewDesc("kvsedge_pebble_block_cache_total", "Pebble block cache lookups by result.", []string{"result"}, nil)
	mPebbleMemtable    = prometheus.NewDesc("kvsedge_pebble_memtable_bytes", "Pebble memtables' size.", nil, nil)
	mUnreadable        = prometheus.NewDesc("kvsedge_store_unreadable_fragments_total", "Stored fragments readers found damaged and skipped (kvsedge check reports them).", nil, nil)
	mCorruptions       = prometheus.NewDesc("kvsedge_store_corruptions_total", "On-disk corruption the index met since start (reads of the damaged part fail; kvsedge check, kvsedge repair).", nil, nil)
	mReplayed          = prometheus.NewDesc("kvsedge_store_replayed_fragments", "Fragments indexed at start from their segment records: their index commits had not reached the disk when the box stopped (lsm/FORMAT.md, Replay).", nil, nil)
	mUnknownMedia      = prometheus.NewDesc("kvsedge_store_unknown_media_dirs", "Streams' media directories the index does not know (the index was lost: kvsedge repair).", nil, nil)
	mIndexFatal        = prometheus.NewDesc("kvsedge_store_index_failed_read_only", "1 while the index is open read-only after repeated fatal errors.", nil, nil)
	mUploadLag         = prometheus.NewDesc("kvsedge_upload_lag_seconds", "Age of the oldest stored fragment not yet PERSISTED upstream (0: caught up).", []string{"stream"}, nil)
	mUploadFragments   = prometheus.NewDesc("kvsedge_upload_fragments_total", "Fragments the upstream KVS acknowledged PERSISTED since start.", []string{"stream"}, nil)
	mUploadBytes       = prometheus.NewDesc("kvsedge_upload_bytes_total", "Bytes sent to the upstream KVS since start (re-sends included).", []string{"stream"}, nil)
	mUploadLost        = prometheus.NewDesc("kvsedge_upload_lost_fragments_total", "Fragments retention or the capacity controller deleted before the upstream persisted them, since start.", []string{"stream"}, nil)
	mUploadRetries     = prometheus.NewDesc("kvsedge_upload_retries_total", "Upload sessions that failed and were started again.", []string{"stream"}, nil)
	mConnsOpen         = prometheus.NewDesc("kvsedge_http_connections_open", "API connections open now.", nil, nil)
	mConnsAccepted     = prometheus.NewDesc("kvsedge_http_connections_accepted_total", "API connections accepted.", nil, nil)
	mAcceptErrors      = prometheus.NewDesc("kvsedge_http_accept_errors_total", "Failed accepts (file limit reached, …), each retried after a pause.", nil, nil)
	mMembers           = prometheus.NewDesc("kvsedge_cluster_members", "Cluster members by serf status.", []string{"status"}, nil)
	mReplLag           = prometheus.NewDesc("kvsedge_replication_lag_seconds", "Replication lag of the stream's copy here, over recent fragments.", []string{"stream", "quantile"}, nil)
	mReplMissing       = prometheus.NewDesc("kvsedge_replication_missing_fragments", "Fragments other holders have and this box lacks (last comparison).", []string{"stream"}, nil)
	mDurableAcks       = prometheus.NewDesc("kvsedge_durability_acks_total", "Fragments this box ingested and made durable, by what their PERSISTED meant: replicated (a replica confirmed it), local (the stream asks for local durability), fallback (replicated asked, acknowledged on this box's durability alone); camera fragments counted alike.", []string{"stream", "durability"}, nil)
	mDurableLocal      = prometheus.NewDesc("kvsedge_durability_local_only", "1 while a stream that asks for replicated durability acknowledges on local durability alone (no replica alive or confirming).", []string{"stream"}, nil)
	mDurableConfirm    = prometheus.NewDesc("kvsedge_durability_confirm_seconds", "From a fragment durable here to a replica's report that it is durable there, over recent fragments.", []string{"stream", "quantile"}, nil)
	mReplUnder         = prometheus.NewDesc("kvsedge_replication_under_replicated_fragments", "Fragments this box holds that another holder lacked (last comparison).", []string{"stream"}, nil)
)

func (c *boxCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mIngestFragments, mIngestBytes, mPersistedFrags, mPersistedBytes, mPersistLatency, mStoreWriteSeconds, mReplicaFrags,
		mReplicaBytes, mRingBytes, mMediaBudget, mMediaUsed, mMediaAssembling, mMediaCached, mMediaRefusals, mMediaShed, mCameraState, mCameraFPS, mCameraBitrate, mCameraFragments, mDiskFree, mDiskSize, mDiskMinFree,
		mDiskForecast, mStoredBytes, mRefusing, mCapacityDeleted, mWriteAmp, mStoreWritten, mPebbleCompactions, mPebbleFlushes,
		mPebbleCache, mPebbleMemtable, mUnreadable, mCorruptions, mReplayed, mUnknownMedia, mIndexFatal, mUploadLag, mUploadFragments, mUploadBytes, mUploadRetries, mUploadLost, mConnsOpen, mConnsAccepted, mAcceptErrors, mMembers, mReplLag, mReplMissing, mReplUnder,
		mDurableAcks, mDurableLocal, mDurableConfirm} {
		ch <- d
	}
}

func (c *boxCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	st := c.eng.Stats()
	counter(mIngestFragments, float64(st.FragmentsReceived))
	counter(mIngestBytes, float64(st.BytesReceived))
	counter(mPersistedFrags, float64(st.FragmentsPersisted))
	counter(mPersistedBytes, float64(st.BytesPersisted))
	counter(mUnreadable, float64(st.UnreadableFragments))
	sh := c.eng.StoreHealth()
	counter(mCorruptions, float64(sh.Corruptions))
	gauge(mUnknownMedia, float64(sh.UnknownMediaDirs))
	gauge(mIndexFatal, b2f(sh.FatalReadOnly != ""))
	for name, n := range c.eng.LostBeforeUpload() {
		counter(mUploadLost, float64(n), name)
	}
	if c.uploads != nil {
		for _, u := range c.uploads() {
			gauge(mUploadLag, u.LagSeconds, u.Stream)
			counter(mUploadFragments, float64(u.Fragments), u.Stream)
			counter(mUploadBytes, float64(u.Bytes), u.Stream)
			counter(mUploadRetries, float64(u.Retries), u.Stream)
		}
	}
	counter(mReplicaFrags, float64(st.FragmentsImported))
	counter(mReplicaBytes, float64(st.BytesImported))
	ch <- latencyHistogram(mPersistLatency, st.PersistLatency)
	gauge(mRingBytes, float64(c.eng.RingBytes()))
	ms := c.eng.Media().Stats()
	gauge(mMediaBudget, float64(ms.BudgetBytes))
	for _, h := range engine.MediaClasses {
		gauge(mMediaUsed, float64(ms.UsedBytes[h]), h.String())
		counter(mMediaRefusals, float64(ms.Refusals[h]), h.String())
	}
	gauge(mMediaAssembling, float64(ms.AssemblingBytes))
	gauge(mMediaCached, float64(ms.CachedBytes))
	counter(mMediaShed, float64(ms.ShedBytes))

	for _, cs := range c.cams.States() {
		gauge(mCameraState, 1, cs.Stream, cs.State)
		gauge(mCameraFPS, cs.FPS, cs.Stream)
		gauge(mCameraBitrate, cs.BitrateBps, cs.Stream)
		counter(mCameraFragments, float64(cs.Fragments), cs.Stream)
	}

	cp := c.eng.Capacity()
	if cp.TotalBytes > 0 {
		gauge(mDiskFree, float64(cp.FreeBytes))
		gauge(mDiskSize, float64(cp.TotalBytes))
		if cp.SecondsToFull >= 0 {
			gauge(mDiskForecast, cp.SecondsToFull)
		}
	}
	gauge(mDiskMinFree, float64(cp.MinFreeBytes))
	gauge(mStoredBytes, float64(c.eng.StoredBytes()))
	refusing := 0.0
	if cp.Refusing {
		refusing = 1
	}
	gauge(mRefusing, refusing)
	gauge(mCapacityDeleted, float64(cp.DeletedBytes))

	ss := c.eng.StoreStats()
	gauge(mWriteAmp, ss.WriteAmplification())
	counter(mStoreWritten, float64(ss.MediaBytes), "media")
	counter(mStoreWritten, float64(ss.WALBytes), "wal")
	counter(mStoreWritten, float64(ss.FlushBytes), "flush")
	counter(mStoreWritten, float64(ss.CompactionBytes), "compaction")
	counter(mPebbleCompactions, float64(ss.Compactions))
	counter(mPebbleFlushes, float64(ss.Flushes))
	counter(mPebbleCache, float64(ss.CacheHits), "hit")
	counter(mPebbleCache, float64(ss.CacheMisses), "miss")
	gauge(mPebbleMemtable, float64(ss.MemtableBytes))
	gauge(mReplayed, float64(ss.ReplayedFragments))
	ch <- latencyHistogram(mStoreWriteSeconds, ss.Append, "append")
	ch <- latencyHistogram(mStoreWriteSeconds, ss.MediaSync, "media_sync")
	ch <- latencyHistogram(mStoreWriteSeconds, ss.IndexCommit, "index_commit")

	if c.conns != nil {
		cs := c.conns()
		gauge(mConnsOpen, float64(cs.Open))
		counter(mConnsAccepted, float64(cs.Accepted))
		counter(mAcceptErrors, float64(cs.AcceptErrors))
	}

	if c.peers != nil {
		byStatus := map[string]int{}
		for _, m := range c.peers.Members() {
			byStatus[m.Status]++
		}
		for s, n := range byStatus {
			gauge(mMembers, float64(n), s)
		}
		for _, r := range c.peers.Replication() {
			if r.Samples > 0 {
				gauge(mReplLag, float64(r.LagP50Ms)/1000, r.Stream, "0.5")
				gauge(mReplLag, float64(r.LagP99Ms)/1000, r.Stream, "0.99")
			}
			gauge(mReplMissing, float64(r.MissingHere), r.Stream)
			gauge(mReplUnder, float64(r.UnderReplicated), r.Stream)
			if r.Durability != "" {
				counter(mDurableAcks, float64(r.AcksReplicated), r.Stream, "replicated")
				counter(mDurableAcks, float64(r.AcksLocal), r.Stream, "local")
				counter(mDurableAcks, float64(r.AcksFallback), r.Stream, "fallback")
				gauge(mDurableLocal, b2f(r.LocalAcksSince != ""), r.Stream)
				if r.ConfirmP99Ms > 0 || r.AcksReplicated > 0 {
					gauge(mDurableConfirm, float64(r.ConfirmP50Ms)/1000, r.Stream, "0.5")
					gauge(mDurableConfirm, float64(r.ConfirmP99Ms)/1000, r.Stream, "0.99")
				}
			}
		}
	}
}

// newMetricsRegistry is the /metrics registry: the box's collector plus
// Go runtime and process metrics.
func newMetricsRegistry(c *boxCollector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// latencyHistogram is a Prometheus histogram (seconds) of l.
func latencyHistogram(d *prometheus.Desc, l engine.Latency, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(engine.LatencyBucketsMs))
	var cum uint64
	for i, le := range engine.LatencyBucketsMs {
		cum += l.Counts[i]
		buckets[le/1000] = cum
	}
	return prometheus.MustNewConstHistogram(d, l.Count(), l.SumMs/1000, buckets, labels...)
}
