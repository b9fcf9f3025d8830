// Package ingest owns getting media into kvsedge from outside the KVS API.
//
// Sub-packages:
//
//	producer  a Go PutMedia client (any KVS endpoint): MKV in, fragments
//	          uploaded with live acks, re-sent after a reconnect
//
// Camera ingest feeds the engine the same way PutMedia does:
//
//	rtsp.go        RTSP/RTSPS pull with gortsplib: depacketising, codecs
//	usb.go         USB cameras through V4L2 (MJPEG or H.264), no cgo
//	demo.go        the built-in demo camera
//	codecprivate.go  Matroska CodecPrivate from the codecs' parameter sets
//	timeline.go    producer timestamps: RTCP NTP or arrival, re-anchored
//	fragmenter.go  frames → Matroska fragments, cut at key frames
//	output.go      fragments → an engine ingest session, persisted in order
//	camera.go      one camera's supervisor: reconnects, stalls, state
//	               (RECORDING, RETRYING, STANDBY, PAUSED, …)
//	manager.go     the configured cameras: groups, the cluster gate, the
//	               box's camera limit
//
// Sub-package rtsptest is the RTSP relay and publishers the tests use.
package ingest
