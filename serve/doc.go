// Package serve is kvsedge's HTTP front end: the Kinesis Video Streams
// REST-JSON API over fasthttp, SigV4 authentication of every request, TLS, and
// the mapping of engine errors to KVS error shapes and status codes.
//
// Files by job:
//
//	server.go        Server, Options, listener (TLS when Options.TLS is
//	                 set), routing, request ids, body limits
//	conns.go         connection limits, the accept loop that survives
//	                 accept errors, and the lingering close of PutMedia
//	                 responses sent while a body still arrives
//	auth.go          the Authenticator hook and SigV4Auth (package sigv4)
//	errors.go        KVS error shapes: x-amzn-ErrorType header + JSON body;
//	                 engine errors mapped to them
//	validate.go      the botocore model's lengths, patterns and enums
//	controlplane.go  the kinesisvideo stream operations (create, describe,
//	                 list, update, delete, retention, data endpoint, tags)
//	controlplane_config.go  image-generation and notification
//	                 configurations (stored and echoed)
//	controlplane_edge.go    the KVS edge-agent configuration API
//	putmedia.go      PutMedia: full-duplex upload with a live ack stream
//	media.go         GetMedia, GetMediaForFragmentList (chunk streams written
//	                 to the hijacked connection), ListFragments, and
//	                 kvsedge's own reads (listCameras, listCameraChanges,
//	                 listClusterMembers, describeReplication,
//	                 describeCapacity, describeUploads)
//	clip.go          GetClip: a streamed fragmented MP4 of a time range;
//	                 getClipURL and its signed GET download (attachment)
//	streamed.go      a chunked answer written as it is sent, cut (no last
//	                 chunk) when it fails part-way
//	ranges.go        listRecordedRanges: a stream's recordings over a time
//	                 range as merged spans (the console's timeline)
//	hls.go, dash.go  playback sessions: signed session tokens, playlists,
//	                 manifests, fMP4 and MPEG-TS segments remuxed on request
//	hls_live.go      LIVE HLS media sequence numbers: a small per-session
//	                 record of each ingest term's offset, so numbers hold
//	                 across reloads and term changes
//	images.go        GetImages (ffmpeg decodes; MJPEG needs nothing)
//	whep.go          the WebRTC live view (WHEP, RFC 9725): routes, tokens
//	                 (getWHEPSessionURL), ICE settings, sessions
//	whep_media.go    a WHEP viewer: the engine's live tap → H.264/Opus/G.711
//	                 RTP (pion), catch-up at the live edge, PLI rewinds
//	whep_rtp.go      H.264 RTP payloads (RFC 6184) cut once per frame for
//	                 every viewer of a stream (the live frame's attachment)
//	forward.go       reads of streams this box does not hold, forwarded to
//	                 a cluster peer (JSON reads, and session GETs: HLS,
//	                 DASH, clip downloads); the node-to-node routes' entry
//	health.go        GET /metrics, /healthz, /readyz (unauthenticated)
//
// Sub-packages: sigv4 (request signature verification, a leaf), remux
// (stored Matroska fragments → fMP4 and MPEG-TS, with mediacommon) and
// console (the web console's embedded files, served at "/"). The local
// certificate authority behind `kvsedge cert` is internal/tlsca; serve
// only takes a *tls.Config.
//
// Wire rules (shared/kvs-api.md §1): every operation is POST to a fixed,
// case-sensitive path with a JSON body; responses are JSON; timestamps are
// JSON numbers of epoch seconds; every response carries x-amzn-RequestId;
// errors carry their shape name in x-amzn-ErrorType and in the body. The
// media wire formats (acks, chunks, tokens, WHEP) are in FORMAT.md.
package serve
