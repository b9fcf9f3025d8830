package ingest

import _ "embed"

// DemoClip is the built-in demo camera's footage: 10 s of ffmpeg's testsrc2
// pattern, H.264 Main 640x360 at DemoFPS, a key frame every second, SPS/PPS
// repeated on each, no B-frames (testdata/README.md says how it was made).
// It plays in a loop, stamped with the current time. Tests use it as a
// camera too.
//
//go:embed democlip.h264
var DemoClip []byte

// DemoFPS is DemoClip's frame rate.
const DemoFPS = 15
