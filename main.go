// Command kvsedge is an on-premises Amazon Kinesis Video Streams-compatible
// video store in one static binary. `kvsedge help` lists its commands.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
