package cli

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/trace"
	"syscall"

	"github.com/kvsedge/kvsedge/internal/app"
	"github.com/kvsedge/kvsedge/internal/config"
)

// runServe runs the appliance until SIGINT or SIGTERM.
func runServe(args []string, stdout, stderr io.Writer) error {
	cfg, fs, err := parseServerConfig("serve", args, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	slog.SetDefault(log)
	if p := os.Getenv("KVSEDGE_EXEC_TRACE"); p != "" {
		stopTrace, err := startExecTrace(p)
		if err != nil {
			return err
		}
		defer stopTrace()
		log.Warn("writing a Go execution trace of the whole run (diagnostics; it grows with the box's activity, ~50 kB a second for one camera and 20 viewers)", "file", p)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	path, _ := fs.GetString("config")
	for {
		a, err := app.Open(app.Options{Config: cfg, Logger: log, Version: version, ConfigFile: path,
			Reload: func() (*config.Config, error) { return config.Load(fs, os.Environ()) }})
		if err != nil {
			return err
		}
		// A reopen listens where this one did (also when it was port 0).
		cfg.Listen = a.Addr().String()
		err = a.Run(ctx)
		if cerr := a.Close(); !errors.Is(err, app.ErrReopen) || cerr != nil {
			return errors.Join(err, cerr)
		}
		// The store was read-only on a full disk and has room now: the
		// whole appliance is opened again, in this process.
	}
}

func newLogger(c config.LogConfig, w io.Writer) *slog.Logger {
	ho := &slog.HandlerOptions{Level: c.SlogLevel()}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// runCredentials prints the box's first key pair as shell exports:
// eval "$(kvsedge credentials)". It never creates one: only serve does, in
// the data directory it serves (found from --config, --data-dir or the
// environment, as serve finds it).
func runCredentials(args []string, stdout, stderr io.Writer) error {
	cfg, _, err := parseConfig("credentials", args, stderr, nil)
	if err != nil {
		return err
	}
	if cfg.Auth.Disabled {
		return errors.New("authentication is disabled: any key pair is accepted")
	}
	creds, err := config.ExistingCredentials(cfg)
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, "export AWS_ACCESS_KEY_ID="+creds[0].AccessKeyID+"\nexport AWS_SECRET_ACCESS_KEY="+
		creds[0].SecretAccessKey+"\nexport AWS_DEFAULT_REGION="+cfg.Region+"\n")
	return err
}

// runWitness runs a cluster witness (no store, no cameras, no API) until
// SIGINT or SIGTERM.
func runWitness(args []string, _, stderr io.Writer) error {
	cfg, _, err := parseConfig("witness", args, stderr, nil)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return app.RunWitness(ctx, cfg, log)
}

// startExecTrace writes a Go execution trace (go tool trace) of the
// process to path until stop: $KVSEDGE_EXEC_TRACE, for finding where a
// box's latency goes (scheduling, syscalls, GC) without a debug endpoint.
func startExecTrace(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := trace.Start(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		trace.Stop()
		f.Close()
	}, nil
}
