// Package ingest will own camera ingest: RTSP pull (gortsplib) and USB (V4L2)
// sources turned into access units and handed to the engine, the same path
// PutMedia fragments take. It is empty until the camera-ingest issue fills it.
package ingest
