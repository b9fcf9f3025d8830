// Package cli is kvsedge's command line: `serve` (the appliance, package
// app) and the client commands that talk to a box over its API
// (put-media, get-media, hls-url, export, cameras, …) or read its
// configuration (config, credentials, cert, profiles).
//
// Every command finds the box as serve does (loadConfig): --config, else
// $KVSEDGE_CONFIG, else config.DefaultFile when it exists, with --data-dir
// and KVSEDGE_… variables over the file. Only serve creates the data
// directory and the key pair; the others read them. Each command's --help
// shows its summary, its own flags (serve and config: every configuration
// flag; the others: boxFlags and their own) and one example (examples).
//
// Files: commands.go (the command table, help, flag parsing, config,
// version, profiles), serve.go (serve, credentials), cert.go, media.go (the
// API client, put-media, get-media, export in KVS fragments, cameras and
// the other listings), export.go (export as MP4 and joined Matroska,
// hls-url), check.go.
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
		{"credentials", "print the box's API key pair as shell exports for the aws CLI", runCredentials},
		{"cert", "create a local CA and a server certificate for HTTPS", runCert},
		{"put-media", "upload an MKV file (or stdin) to a stream with PutMedia", runPutMedia},
		{"get-media", "read a stream with GetMedia into a file or stdout (--follow: live)", runGetMedia},
		{"hls-url", "print an HLS session URL of a stream that any player plays (VLC, ffplay, mpv)", runHLSURL},
		{"cameras", "print the state of every camera the box records", runCameras},
		{"uploads", "print the state of each stream's upload to the upstream KVS", runUploads},
		{"witness", "run a cluster witness: it joins the gossip and breaks ties (two-box sites), holding no media", runWitness},
		{"members", "print the members of the box's cluster", runMembers},
		{"replication", "print each stream's home, replicas, replication lag and missing fragments on the box", runReplication},
		{"export", "fetch a time range of a stream into Matroska or MP4 files", runExport},
		{"capacity", "print the box's disk and capacity state: free space, minimum, forecast, alarm", runCapacity},
		{"check", "verify the stopped box's store: every fragment's index entries and media, and the index's checksums", runCheck},
		{"repair", "rebuild the stopped box's index from its media segments; the old index and unindexable bytes are kept aside", runRepair},
		{"profiles", "list the hardware profiles, and the one --profile auto picks on this box", runProfiles},
		{"version", "print the version", runVersion},
	}
}

// examples holds one example per command, the last lines of its --help.
var examples = map[string]string{
	"serve":       "kvsedge serve --config /etc/kvsedge/kvsedge.yaml",
	"config":      "kvsedge config --config kvsedge.yaml",
	"credentials": `eval "$(kvsedge credentials)"   # then: aws --endpoint-url http://127.0.0.1:8080 kinesisvideo list-streams`,
	"cert":        "kvsedge cert --name camera-box.lan   # adds camera-box.lan to this box's names",
	"put-media":   "kvsedge put-media --stream cam-2 video.mkv",
	"get-media":   "kvsedge get-media --stream demo --start NOW --follow -o - | ffplay -",
	"hls-url":     `vlc "$(kvsedge hls-url --stream demo)"`,
	"cameras":     "kvsedge cameras",
	"members":     "kvsedge members",
	"replication": "kvsedge replication",
	"export":      "kvsedge export --stream cam-2 --from 2026-11-25T00:00:00Z --format mp4 --dir export/",
	"capacity":    "kvsedge capacity",
	"check":       "sudo systemctl stop kvsedge && sudo kvsedge check",
	"repair":      "sudo systemctl stop kvsedge && sudo kvsedge repair && sudo systemctl start kvsedge",
	"uploads":     "kvsedge uploads",
	"witness":     "kvsedge witness --config witness.yaml   # cluster: {bind: 0.0.0.0:7946, seeds: [box-a:7946, box-b:7946], key: …}",
	"profiles":    "kvsedge profiles",
	"version":     "kvsedge version",
}

// usages holds the positional arguments of the commands that take some.
var usages = map[string]string{
	"put-media": "FILE.mkv (or - for stdin)",
}

// errUsage marks an error already explained by a usage message.
var errUsage = errors.New("usage")

// Run runs the command line args (without the program name) and returns
// the process's exit code. ver is the build's version.
func Run(ver string, args []string, stdout, stderr io.Writer) int {
	version = ver
	helpOut = stdout
	if len(args) > 0 {
		switch args[0] {
		case "help", "-h", "--help", "-help":
			if len(args) > 1 && args[0] == "help" {
				// kvsedge help COMMAND is COMMAND --help.
				args = []string{args[1], "--help"}
				break
			}
			usage(stdout)
			return 0
		}
	}
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
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
	fmt.Fprintln(w, "kvsedge: an on-premises Kinesis Video Streams–compatible video store.\n\nusage: kvsedge [command] [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nWithout a command kvsedge serves. `kvsedge <command> --help` shows a command's flags and an example.")
	fmt.Fprintln(w, "Every command finds the box as serve does: --config, else $KVSEDGE_CONFIG, else "+config.DefaultFile+" if it exists;")
	fmt.Fprintln(w, "--data-dir and KVSEDGE_… variables override the file.")
}

// newFlagSet is a command's flag set. Its --help (printHelp) shows the
// command's summary, its own flags and its example.
func newFlagSet(name string, stderr io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet("kvsedge "+name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintf(stderr, "`kvsedge %s --help` shows its flags and an example\n", name) }
	return fs
}

// printHelp writes a command's help: summary, usage, flags, example.
func printHelp(w io.Writer, name string, fs *pflag.FlagSet) {
	summary := ""
	for _, c := range commands() {
		if c.name == name {
			summary = c.summary
		}
	}
	args := "[flags]"
	if u := usages[name]; u != "" {
		args += " " + u
	}
	fmt.Fprintf(w, "kvsedge %s: %s\n\nusage: kvsedge %s %s\n", name, summary, name, args)
	if fs.HasFlags() {
		fmt.Fprintf(w, "\nflags:\n%s", fs.FlagUsages())
	}
	if ex := examples[name]; ex != "" {
		fmt.Fprintf(w, "\nexample:\n  %s\n", ex)
	}
}

// helpOut is where --help writes: Run's stdout.
var helpOut io.Writer = os.Stdout

// parseFlags parses args into fs. --help (or -h) prints the command's help
// to helpOut and returns pflag.ErrHelp; a bad flag is explained on stderr
// (errUsage).
func parseFlags(name string, fs *pflag.FlagSet, args []string) error {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "--help" || a == "-help" {
			printHelp(helpOut, name, fs)
			return pflag.ErrHelp
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

// boxFlags are the flags that find the box: its configuration file and
// data directory (what serve was started with).
func boxFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "the box's YAML configuration file (default: $KVSEDGE_CONFIG, else "+config.DefaultFile+" if it exists)")
	fs.String("data-dir", config.Default().DataDir, "the box's data directory (else the configuration file's data_dir, else this default)")
}

// loadConfig loads the configuration the way serve does. Without --config,
// the file is $KVSEDGE_CONFIG (set but empty: none), else
// config.DefaultFile when it exists (the Debian package's).
func loadConfig(fs *pflag.FlagSet) (*config.Config, error) {
	found := false
	if f := fs.Lookup("config"); f != nil && !f.Changed {
		if v, ok := os.LookupEnv("KVSEDGE_CONFIG"); ok {
			_ = fs.Set("config", v)
		} else if _, err := os.Stat(config.DefaultFile); err == nil {
			_ = fs.Set("config", config.DefaultFile)
			found = true
		}
	}
	cfg, err := config.Load(fs, os.Environ())
	if err != nil && found {
		err = fmt.Errorf("%w (%s is read when no --config is given; KVSEDGE_CONFIG= reads no file)", err, config.DefaultFile)
	}
	return cfg, err
}

// parseConfig parses the flags of a command that reads the box's
// configuration (boxFlags, plus extra) and loads it.
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
	fs := newFlagSet(name, stderr)
	boxFlags(fs)
	if extra != nil {
		extra(fs)
	}
	if err := parseFlags(name, fs, args); err != nil {
		return nil, nil, err
	}
	cfg, err := loadConfig(fs)
	return cfg, fs, err
}

// parseServerConfig parses every configuration flag (config.Flags: what
// serve and config take).
func parseServerConfig(name string, args []string, stderr io.Writer) (*config.Config, *pflag.FlagSet, error) {
	fs := newFlagSet(name, stderr)
	config.Flags(fs)
	if err := parseFlags(name, fs, args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg, err := loadConfig(fs)
	return cfg, fs, err
}

func runConfig(args []string, stdout, stderr io.Writer) error {
	cfg, _, err := parseServerConfig("config", args, stderr)
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

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", stderr)
	if err := parseFlags("version", fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
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
	fs := newFlagSet("profiles", stderr)
	if err := parseFlags("profiles", fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("profiles takes no arguments")
	}
	board := hwprofiles.ReadBoard()
	auto, why := hwprofiles.Detect(board)
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROFILE\tRAM\tCACHE\tMEMTABLE\tRING\tMEDIA\tCAMERAS\tSTORAGE\tSYNC WINDOW\tGO LIMIT\t")
	for _, p := range hwprofiles.All {
		mark := ""
		if p.Name == auto.Name {
			mark = "  ← auto here"
		}
		fmt.Fprintf(tw, "%s\t%d MiB\t%d MiB\t%d MiB\t%d s\t%d MiB\t%d\t%s\t%v\t%d MiB\t%s\n", p.Name, p.MemoryMiB, p.CacheMiB, p.MemtableMiB,
			p.RingSeconds, p.MediaMemoryMiB, p.MaxCameras, p.Storage, p.SyncWindow, p.MemoryLimitMiB, mark)
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
