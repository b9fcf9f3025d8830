// Package ingest owns getting media into kvsedge from outside the KVS API:
// the cameras the box records itself. Camera ingest feeds the engine the
// same way PutMedia does (engine.IngestSession: numbering, the hot ring,
// persisting in order), with fragments built by engine/mkv exactly as a
// PutMedia upload would carry them.
//
// Files by job:
//
//	rtsp.go        RTSP/RTSPS pull with gortsplib: tracks, codecs, audio;
//	               transport auto asks for TCP first (UDP if the camera
//	               refuses it); the connection read through a 64 KiB
//	               buffer under gortsplib's 4 KiB one (fewer read system
//	               calls); the camera's clock from RTCP sender reports
//	readpace.go    paced reads under that buffer: every camera's TCP
//	               socket read on one box-wide clock, so one wake serves
//	               them all instead of one per packet burst: 40 ms for a
//	               camera watched live (WebRTC), 200 ms for the others
//	rtptap.go      the RTP tap: over RTSP/TCP, the video's RTP frames
//	               taken out of that buffer before gortsplib reads them
//	               (no per-packet buffer, packet or slice), the rest
//	               handed up whole; the camera's clock from RTCP sender
//	               reports read per RFC 3550 (gortsplib v4 misreads it)
//	rtcprr.go      the video's RTCP receiver reports over TCP (RFC 3550
//	               §6.4.2; gortsplib sends them over UDP only): counted
//	               without allocating, sent every 5 s
//	rtpvideo.go    RTP H.264/H.265 depacketised straight into the fragment
//	               being built: NAL units from the RTP payloads behind
//	               their lengths, fragmentation units appended in place,
//	               nothing allocated per frame (BenchmarkCameraPath)
//	usb.go         USB cameras through V4L2 (MJPEG or H.264), no cgo
//	demo.go        the built-in demo camera (DemoSource)
//	democlip.go    the demo camera's embedded footage (DemoClip,
//	               democlip.h264)
//	codecprivate.go  Matroska CodecPrivate from the codecs' parameter sets
//	timeline.go    producer timestamps: RTCP NTP or arrival, re-anchored
//	fragmenter.go  frames → Matroska fragments, cut at key frames; whole
//	               blocks, or video blocks streamed in (BeginVideo); the
//	               fragment's buffer comes from the engine's media memory
//	               (output.go's Buffers, as a camera), sized for one like
//	               the last plus its biggest access unit, and grows only
//	               through it; a growth the budget refuses drops the
//	               fragment in progress (RefusedFragments) and recording
//	               goes on at the next key frame
//	output.go      fragments → an engine ingest session, persisted in order;
//	               during a hand-back (the stream's home took the camera
//	               back) fragments are held until the home's first one is
//	               copied here, then those from its first key frame on
//	               (found by its bytes) are dropped (handback_test.go)
//	camera.go      one camera's supervisor: reconnects, stalls, state
//	               (RECORDING, RETRYING, STANDBY, PAUSED, …)
//	history.go     the cameras' state changes, bounded, kept across
//	               restarts in a small file of the data directory
//	               (Manager.KeepHistory, format in FORMAT.md;
//	               Manager.StateChanges: the console's outage markers)
//	manager.go     the configured cameras: groups (file, demo, API), the
//	               cluster gate, the box's camera limit
//	edge.go        EdgeAgent: applies the edge configurations stored in the
//	               engine (StartEdgeConfigurationUpdate) to the Manager and
//	               reports sync and recorder status back, as KVS's edge
//	               agent does
//
// Benchmarks (bench_test.go): BenchmarkCameraPath (one camera's packets to
// fragments, against the gortsplib-decoder path it replaced) and
// BenchmarkRecorder (N cameras against a bare gortsplib receiver,
// alternating in one run; CPU, memory, allocations, page faults and read
// calls per frame; steady-state CPU profiles of both sides with
// KVSEDGE_BENCH_PROFILE).
//
// Allocations of a recorded camera in steady state: none per packet or
// frame (TestTappedReadAllocatesNothing, TestPacedConnReadAllocatesNothing,
// TestCameraPathAllocatesNothing); per fragment, the engine's (its
// Fragment and the channel PERSISTED waits on); per second, gortsplib
// Client's read-timeout timer, made anew each second (3 allocations;
// TestGortsplibClientAllocatesEverySecond proves it; no option turns it
// off).
//
// Elsewhere: the Go PutMedia client is package producer (top level), and
// the RTSP relay and publishers the tests use are internal/rtsptest.
package ingest
