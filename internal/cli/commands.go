// Package cli is kvsedge's command line: `serve` (the appliance, package
// app) and the client commands that talk to a box over its API
// (put-media, get-media, export, cameras, …) or read its configuration
// (config, credentials, cert, profiles).
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"text/tabwriter"

	"github.com/kvsedge/kvsedge/hwprofiles"
	"github.com/kvsedge/kvsedge/internal/config"
	"github.com/spf13/pflag"
	yamlv3 "go.yaml.in/yaml/v3"
)

// version is what `kvsedge version` prints and the server logs (Run's
// argument: main sets it at build time).
var version = "dev"

// command is one subcommand.
type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the appliance (what a bare `kvsedge` does)", runServe},
		{"config", "print the effective configuration, secrets redacted", runConfig},
		{"credentials", "print the API key pair as shell exports for the aws CLI", runCredentials},
		{"cert", "create a local CA and a server certificate for HTTPS", runCert},
		{"put-media", "upload an MKV file (or stdin) to a stream with PutMedia", runPutMedia},
		{"get-media", "read a stream with GetMedia into a file or stdout (--follow: live)", runGetMedia},
		{"cameras", "print the state of every camera the box records", runCameras},
		{"uploads", "print the state of each stream's upload to the upstream KVS", runUploads},
		{"witness", "run a cluster witness: it joins the gossip and breaks ties (two-box sites), holding no media", runWitness},
		{"members", "print the members of the box's cluster", runMembers},
		{"replication", "print each stream's home, replicas, replication lag and missing fragments on the box", runReplication},
		{"export", "fetch a time range of a stream into files with parallel GetMediaForFragmentList", runExport},
		{"capacity", "print the box's disk and capacity state: free space, minimum, forecast, alarm", runCapacity},
		{"check", "verify the stopped box's store: every fragment's index entries and media, and the index's checksums", runCheck},
		{"repair", "rebuild the stopped box's index from its media segments; the old index and unindexable bytes are kept aside", runRepair},
		{"profiles", "list the hardware profiles, and the one --profile auto picks on this box", runProfiles},
		{"version", "print the version", runVersion},
	}
}

// errUsage marks an error already explained by a usage message.
var errUsage = errors.New("usage")

// Run runs the command line args (without the program name) and returns
// the process's exit code. ver is the build's version.
func Run(ver string, args []string, stdout, stderr io.Writer) int {
	version = ver
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if name == "help" || name == "-h" || name == "--help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == name {
			if err := c.run(args, stdout, stderr); err != nil {
				if errors.Is(err, pflag.ErrHelp) {
					return 0
				}
				if !errors.Is(err, errUsage) {
					fmt.Fprintf(stderr, "kvsedge %s: %v\n", name, err)
				}
				return 1
			}
			return 0
		}
	}
	fmt.Fprintf(stderr, "kvsedge: unknown command %q\n", name)
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: kvsedge [command] [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\n`kvsedge <command> --help` lists a command's flags.")
}

// parseConfig parses flags for a command that reads the configuration.
func parseConfig(name string, args []string, stderr io.Writer, extra func(*pflag.FlagSet)) (*config.Config, *pflag.FlagSet, error) {
	cfg, fs, err := parseConfigArgs(name, args, stderr, extra)
	if err == nil && fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return cfg, fs, err
}

// parseConfigArgs is parseConfig for commands that take positional
// arguments (fs.Args()).
func parseConfigArgs(name string, args []string, stderr io.Writer, extra func(*pflag.FlagSet)) (*config.Config, *pflag.FlagSet, error) {
	fs := pflag.NewFlagSet("kvsedge "+name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	config.Flags(fs)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, nil, err
		}
		return nil, nil, errUsage
	}
	cfg, err := config.Load(fs, os.Environ())
	return cfg, fs, err
}

func runConfig(args []string, stdout, stderr io.Writer) error {
	cfg, _, err := parseConfig("config", args, stderr, nil)
	if err != nil {
		return err
	}
	r := cfg.Redacted()
	enc := yamlv3.NewEncoder(stdout)
	enc.SetIndent(2)
	if err := enc.Encode(&r); err != nil {
		return err
	}
	return enc.Close()
}

func runVersion(args []string, stdout, _ io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("version takes no arguments")
	}
	rev := ""
	goVersion := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
	}
	fmt.Fprintf(stdout, "kvsedge %s%s %s\n", version, rev, goVersion)
	return nil
}

// runProfiles lists the hardware profiles and the one auto picks here.
func runProfiles(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("profiles", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	board := hwprofiles.ReadBoard()
	auto, why := hwprofiles.Detect(board)
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROFILE\tRAM\tCACHE\tMEMTABLE\tRING/STREAM\tCAMERAS\tSTORAGE\tSYNC WINDOW\tGO LIMIT\t")
	for _, p := range hwprofiles.All {
		mark := ""
		if p.Name == auto.Name {
			mark = "  ← auto here"
		}
		fmt.Fprintf(tw, "%s\t%d MiB\t%d MiB\t%d MiB\t%d MiB\t%d\t%s\t%v\t%d MiB\t%s\n", p.Name, p.MemoryMiB, p.CacheMiB, p.MemtableMiB,
			p.RingMiBPerStream, p.MaxCameras, p.Storage, p.SyncWindow, p.MemoryLimitMiB, mark)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nauto picks %s on this box: %s\n\n", auto.Name, why)
	for _, p := range hwprofiles.All {
		fmt.Fprintf(stdout, "%s — %s\n  derived from: %s\n", p.Name, p.Description, p.DerivedFrom)
	}
	return nil
}
