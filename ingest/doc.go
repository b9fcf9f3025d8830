// Package ingest owns getting media into kvsedge from outside the KVS API.
//
// Sub-packages:
//
//	producer  a Go PutMedia client (any KVS endpoint): MKV in, fragments
//	          uploaded with live acks, re-sent after a reconnect
//
// Camera ingest (RTSP pull with gortsplib, USB via V4L2) arrives with the
// camera issue and feeds the engine the same way PutMedia does.
package ingest
