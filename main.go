// Command kvsedge is an on-premises Amazon Kinesis Video Streams-compatible
// video store in one static Go binary. `kvsedge help` lists its commands;
// internal/cli runs them and internal/app is the appliance itself.
package main

import (
	"os"

	"github.com/kvsedge/kvsedge/internal/cli"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(cli.Run(version, os.Args[1:], os.Stdout, os.Stderr))
}
