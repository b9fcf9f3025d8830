package main

import (
	_ "embed"
)

// demoClip is the built-in demo camera's footage: 10 s of ffmpeg's
// testsrc2 pattern, H.264 Main 640x360 at 15 fps, a key frame every
// second, SPS/PPS repeated on each (testdata/README.md says how it was
// made). It plays in a loop, stamped with the current time.
//
//go:embed testdata/demo.h264
var demoClip []byte

const demoFPS = 15
