package e2e

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/ingest"
	"github.com/kvsedge/kvsedge/internal/fixture"
	"github.com/kvsedge/kvsedge/internal/rtsptest"
)

// readmeBlock is one fenced code block of README.md.
type readmeBlock struct {
	line    int    // of the opening fence
	section string // the heading above it
	lang    string
	marker  string // the <!-- readme-test: … --> comment just before it
	text    string
}

var readmeMarker = regexp.MustCompile(`^<!-- readme-test: (.*?) -->$`)

// readmeBlocks returns README.md's fenced blocks in order.
func readmeBlocks(t *testing.T, readme string) []readmeBlock {
	t.Helper()
	var (
		blocks  []readmeBlock
		section string
		marker  string
		cur     *readmeBlock
	)
	sc := bufio.NewScanner(strings.NewReader(readme))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur != nil && line == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		case strings.HasPrefix(line, "```"):
			cur = &readmeBlock{line: n, section: section, lang: strings.TrimPrefix(line, "```"), marker: marker}
			marker = ""
		case strings.HasPrefix(line, "#"):
			section = strings.TrimSpace(strings.TrimLeft(line, "#"))
		case readmeMarker.MatchString(line):
			marker = readmeMarker.FindStringSubmatch(line)[1]
		case strings.TrimSpace(line) != "" && marker != "":
			t.Fatalf("README.md:%d: the marker %q is not followed by a code block", n, marker)
		}
	}
	if cur != nil {
		t.Fatalf("README.md:%d: unclosed code block", cur.line)
	}
	return blocks
}

// TestREADME runs README.md's shell blocks in order, as a reader would,
// against a fresh box started in a scratch directory the way `make run`
// starts it (./kvsedge serve on the defaults): the tour, media, playback,
// cameras, HTTPS and cluster sections. Stand-ins, so that the README's
// words run unchanged on a test machine:
//
//   - every 127.0.0.1:PORT written in the README is a free loopback port
//     (the box's default listen address through KVSEDGE_LISTEN);
//   - the cameras' 192.168.1.20 and .21 are one RTSP test server (viewer,
//     secret) publishing the demo clip on stream1 and stream2;
//   - video.mkv is testdata/real-producer-h264-absolute.mkv;
//   - the box ends GetMedia 2 s after the live edge instead of 50 s.
//
// Markers before a block (see the README's "Developing"): skip (with why),
// serve (stop the running box as Ctrl-C would, start this one and wait
// until it serves), file NAME (write the block to NAME). Shell blocks run
// in bash with -euo pipefail; variables carry from one block to the next as
// in one terminal. After some sections the test checks what the README
// promises there.
func TestREADME(t *testing.T) {
	fixture.Tool(t, "aws")
	ffprobe := fixture.Tool(t, "ffprobe")
	start := time.Now()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(t, string(raw))

	dir := t.TempDir()
	state := filepath.Join(t.TempDir(), "state.sh")
	if err := os.Symlink(kvsedgeBin, filepath.Join(dir, "kvsedge")); err != nil {
		t.Fatal(err)
	}
	video, err := os.ReadFile(fixture.Path("real-producer-h264-absolute.mkv"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "video.mkv"), video, 0o644); err != nil {
		t.Fatal(err)
	}

	// The cameras.
	d, err := ingest.NewDemoSource(ingest.DemoClip, ingest.DemoFPS)
	if err != nil {
		t.Fatal(err)
	}
	aus, sps, pps := d.AccessUnits()
	rl := rtsptest.StartRelay(t, "")
	rl.RequireAuth("viewer", "secret")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, path := range []string{"stream1", "stream2"} {
		go rtsptest.Publish(ctx, t, rl.URL(path), aus, sps, pps, 15, 0)
		rl.WaitPublished(t, path, 20*time.Second)
	}

	// Substitutions: the README's loopback ports and camera addresses.
	// Every README address gets its own port, free for TCP and UDP (some
	// are gossip addresses) and never handed out before (freeAddr).
	subst := map[string]string{"192.168.1.20": rl.Addr, "192.168.1.21": rl.Addr}
	for _, b := range blocks {
		for _, m := range regexp.MustCompile(`127\.0\.0\.1:\d{4,5}`).FindAllString(b.text, -1) {
			if _, ok := subst[m]; !ok {
				subst[m] = freeAddr(t)
			}
		}
	}
	// One pass, so a substituted port is never itself substituted again;
	// longer addresses first, so 127.0.0.1:80801 is not read as :8080.
	froms := slices.SortedFunc(maps.Keys(subst), func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	pairs := make([]string, 0, 2*len(subst))
	for _, from := range froms {
		pairs = append(pairs, from, subst[from])
	}
	apply := strings.NewReplacer(pairs...).Replace
	listen, ok := subst["127.0.0.1:8080"]
	if !ok {
		t.Fatal("the README never names the box's default address 127.0.0.1:8080")
	}
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "KVSEDGE_") && !strings.HasPrefix(e, "AWS_") {
			env = append(env, e)
		}
	}
	env = append(env, "KVSEDGE_CONFIG=", "KVSEDGE_LISTEN="+listen, "KVSEDGE_MEDIA__GET_MEDIA_IDLE_TIMEOUT=2s",
		"KVSEDGE_STORAGE__MIN_FREE_MIB=8", "KVSEDGE_LOG__LEVEL=info",
		// The reader's own aws configuration plays no part.
		"AWS_CONFIG_FILE="+filepath.Join(dir, ".aws-config"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, ".aws-credentials"))

	// The box in the first terminal.
	var box *proc
	serve := func(line string) {
		t.Helper()
		if box != nil {
			_ = box.cmd.Process.Signal(syscall.SIGINT) // Ctrl-C
			select {
			case <-box.exited:
			case <-time.After(15 * time.Second):
				t.Fatal("the box did not stop on Ctrl-C")
			}
		}
		cmd := exec.Command("bash", "-c", "exec "+line)
		cmd.Dir = dir
		box = startServing(t, cmd, env, 30*time.Second)
		t.Logf("serving (%s): %s", line, box.endpoint)
	}
	serve("./kvsedge serve") // what `make run` runs
	if !strings.Contains(box.logs.String(), "console: open http://"+listen+"/") {
		t.Fatalf("the box's first lines do not name the console:\n%s", box.logs.String())
	}

	ran := map[string]bool{}
	for _, b := range blocks {
		where := fmt.Sprintf("README.md:%d (%s)", b.line, b.section)
		switch {
		case strings.HasPrefix(b.marker, "skip"):
			if !strings.HasPrefix(b.marker, "skip (") {
				t.Errorf("%s: a skipped block must say why: <!-- readme-test: skip (why) -->", where)
			}
			continue
		case strings.HasPrefix(b.marker, "file "):
			name := strings.TrimPrefix(b.marker, "file ")
			if err := os.WriteFile(filepath.Join(dir, name), []byte(apply(b.text)), 0o600); err != nil {
				t.Fatal(err)
			}
			continue
		case b.marker == "serve":
			lines := strings.Split(strings.TrimSpace(b.text), "\n")
			if len(lines) != 1 {
				t.Fatalf("%s: a serve block holds one command line", where)
			}
			serve(apply(lines[0]))
			ran[b.section] = true
			continue
		case b.marker != "":
			t.Fatalf("%s: unknown marker %q", where, b.marker)
		case b.lang != "sh":
			continue // a configuration example, not a command
		}
		t0 := time.Now()
		out := runBlock(t, dir, state, env, apply(b.text))
		t1 := time.Now()
		ran[b.section] = true
		checkREADMESection(t, b.section, dir, out, ffprobe, env)
		t.Logf("%s: ran in %v, checked in %v", where, t1.Sub(t0).Round(10*time.Millisecond), time.Since(t1).Round(10*time.Millisecond))
	}
	for _, s := range []string{"A short tour with the aws CLI", "Media", "Playback", "Cameras", "HTTPS with the box's own CA", "A cluster of boxes"} {
		if !ran[s] {
			t.Errorf("no command of the README's %q section ran", s)
		}
	}
	t.Logf("the README ran in %v", time.Since(start).Round(100*time.Millisecond))
}

// runBlock runs one shell block in dir as one terminal would, variables
// kept in state from block to block; it fails the test with the block's
// output when a command fails. Background jobs it leaves are ended.
func runBlock(t *testing.T, dir, state string, env []string, text string) string {
	t.Helper()
	script := "set -a\n[ -f '" + state + "' ] && . '" + state + "'\nset -euo pipefail\n" + text + "\nset +a\nexport -p > '" + state + "'\n"
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir, cmd.Env = dir, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 15 * time.Second // background jobs still holding the output
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Start()
	if err == nil {
		defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err = cmd.Wait()
	}
	if err != nil {
		t.Fatalf("this README block failed (%v):\n%s\noutput:\n%s", err, text, out.String())
	}
	return out.String()
}

// checkREADMESection checks what a section's block promises beyond its
// commands' exit statuses.
func checkREADMESection(t *testing.T, section, dir, out, ffprobe string, env []string) {
	t.Helper()
	probe := func(path string) string {
		t.Helper()
		b, err := exec.Command(ffprobe, "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", path).CombinedOutput()
		if err != nil {
			t.Fatalf("ffprobe %s: %v %s", path, err, b)
		}
		return strings.TrimSpace(string(b))
	}
	switch section {
	case "Media":
		if st, err := os.Stat(filepath.Join(dir, "out.mkv")); err != nil || st.Size() < 10_000 {
			t.Errorf("get-media's out.mkv: %v", err)
		}
		mp4, _ := filepath.Glob(filepath.Join(dir, "export", "cam-2-*.mp4"))
		joined, _ := filepath.Glob(filepath.Join(dir, "export", "cam-2-*.mkv"))
		frags, _ := filepath.Glob(filepath.Join(dir, "export", "[0-9]*.mkv"))
		if len(mp4) != 1 || len(joined) != 1 || len(frags) < 1 {
			t.Fatalf("export/ holds mp4 %v, joined %v, fragments %v", mp4, joined, frags)
		}
		for _, f := range []string{mp4[0], joined[0]} {
			if c := probe(f); c != "h264" {
				t.Errorf("ffprobe %s: %q", f, c)
			}
		}
	case "Playback":
		if c := probe(filepath.Join(dir, "clip.mp4")); c != "h264" {
			t.Errorf("clip.mp4: %q", c)
		}
		if !strings.Contains(out, "codec_name=h264") {
			t.Errorf("ffprobe of the live session shows no H.264 stream:\n%s", out)
		}
	case "Cameras":
		// The file's cameras and the edge API's record, with their retention.
		deadline := time.Now().Add(30 * time.Second)
		for {
			cmd := exec.Command("./kvsedge", "cameras", "--json")
			cmd.Dir, cmd.Env = dir, env
			b, err := cmd.Output()
			var cs struct {
				Cameras []struct{ Stream, State, Retention string }
			}
			if err == nil && json.Unmarshal(b, &cs) == nil {
				got := map[string]string{}
				for _, c := range cs.Cameras {
					got[c.Stream] = c.State + " " + c.Retention
				}
				if got["lobby"] == "RECORDING 72 h" && got["yard"] == "RECORDING 24 h" && strings.HasSuffix(got["desk"], " 24 h") {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("cameras after the README's Cameras section: %v", got)
				}
			} else if time.Now().After(deadline) {
				t.Fatalf("kvsedge cameras: %v %s", err, b)
			}
			time.Sleep(500 * time.Millisecond)
		}
	case "A cluster of boxes":
		i := strings.Index(out, `"Members"`)
		if i < 0 {
			t.Fatalf("members printed nothing:\n%s", out)
		}
		var m struct {
			Members []struct{ Name, Status string }
		}
		if err := json.NewDecoder(strings.NewReader(out[strings.LastIndex(out[:i], "{"):])).Decode(&m); err != nil {
			t.Fatalf("members output: %v\n%s", err, out)
		}
		names := []string{}
		for _, x := range m.Members {
			if x.Status == "alive" {
				names = append(names, x.Name)
			}
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{"a", "b", "c"}) {
			t.Fatalf("alive members %v, want a, b and c:\n%s", names, out)
		}
		// The last command counted garage's fragments through b, after
		// its home a died and came back.
		// (the boxes' logs share the terminal: the count is the last line
		// that is a number).
		count := -1
		for _, l := range strings.Split(out, "\n") {
			if n, err := strconv.Atoi(strings.TrimSpace(l)); err == nil {
				count = n
			}
		}
		if count < 5 {
			t.Fatalf("garage's fragments listed through b: %d, want at least 5:\n%s", count, out)
		}
	}
}
