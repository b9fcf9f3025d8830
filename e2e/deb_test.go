package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/kvsedge/kvsedge/internal/fixture"
)

// TestDebPackageInstallsRunsAndLeavesTheData builds this machine's Debian
// package the way `make release` does (internal/mkdeb, packaging/nfpm.yaml)
// around the test binary and installs it with dpkg into a scratch root
// (dpkg --root, maintainer scripts run outside a chroot with DPKG_ROOT, as
// dpkg supports), so the machine's own /etc and /usr are never touched.
// Then: the kvsedge system user exists, /var/lib/kvsedge is its own and
// 0700, /etc/kvsedge/kvsedge.yaml is a conffile readable by the group
// only; the unit's ExecStart command line runs as the service user
// (chroot --userspec) and serves the API; `kvsedge credentials` finds the
// box through /etc/kvsedge/kvsedge.yaml; an edited conffile survives a
// reinstall; removing the package removes the binary and keeps the data.
// dpkg needs root: elsewhere the test is skipped (CI runs as root).
func TestDebPackageInstallsRunsAndLeavesTheData(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("installing a package with dpkg needs root (CI runs as root)")
	}
	for _, tool := range []string{"dpkg", "dpkg-deb", "useradd", "usermod", "chroot"} {
		fixture.Tool(t, tool)
	}
	arch := map[string]string{"amd64": "amd64", "arm64": "arm64", "arm": "armhf"}[runtime.GOARCH]
	if arch == "" {
		t.Skipf("no Debian package for GOARCH %s", runtime.GOARCH)
	}
	start := time.Now()
	work := t.TempDir()
	// A root readable by the unprivileged service user (TempDir is 0700).
	if err := os.Chmod(work, 0o755); err != nil {
		t.Fatal(err)
	}
	dist := filepath.Join(work, "dist")
	mk := exec.Command("go", "run", "./internal/mkdeb", "-version", "1.2.3", "-out", dist, arch+"="+kvsedgeBin)
	mk.Dir = ".." // the module's root, as make release runs it
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("mkdeb: %v\n%s", err, out)
	}
	deb := filepath.Join(dist, "kvsedge_1.2.3_"+arch+".deb")
	info, err := exec.Command("dpkg-deb", "--info", deb).CombinedOutput()
	if err != nil || !strings.Contains(string(info), "Package: kvsedge") || !strings.Contains(string(info), "Architecture: "+arch) {
		t.Fatalf("dpkg-deb --info %s: %v\n%s", deb, err, info)
	}
	t.Logf("built %s in %v", filepath.Base(deb), time.Since(start).Round(time.Millisecond))

	// The scratch root: an empty dpkg database and a user database with
	// root and the group video.
	root := filepath.Join(work, "root")
	for _, d := range []string{"etc", "var/lib/dpkg/info", "var/lib/dpkg/updates", "usr/sbin", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range map[string]string{
		"var/lib/dpkg/status": "",
		"etc/passwd":          "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":           "root:x:0:\nvideo:x:44:\n",
		"etc/shadow":          "root:*:19000:0:99999:7:::\n",
		"etc/gshadow":         "root:*::\nvideo:!::\n",
	} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dpkg := func(args ...string) string {
		t.Helper()
		// --force-depends: the scratch database knows no packages (passwd).
		cmd := exec.Command("dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--force-depends"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	dpkg("-i", deb)

	// The system user and the files' owners and modes.
	uid, gid, shell := userEntry(t, filepath.Join(root, "etc/passwd"), "kvsedge")
	if uid == 0 || uid >= 1000 || shell != "/usr/sbin/nologin" {
		t.Fatalf("kvsedge user: uid %d shell %q, want a system user without a login shell", uid, shell)
	}
	group, _ := os.ReadFile(filepath.Join(root, "etc/group"))
	if !strings.Contains(string(group), "video:x:44:kvsedge") {
		t.Errorf("kvsedge is not in the group video:\n%s", group)
	}
	checkOwner(t, filepath.Join(root, "var/lib/kvsedge"), uid, gid, os.ModeDir|0o700)
	checkOwner(t, filepath.Join(root, "etc/kvsedge/kvsedge.yaml"), 0, gid, 0o640)
	checkOwner(t, filepath.Join(root, "usr/bin/kvsedge"), 0, 0, 0o755)
	if cf, _ := os.ReadFile(filepath.Join(root, "var/lib/dpkg/info/kvsedge.conffiles")); strings.TrimSpace(string(cf)) != "/etc/kvsedge/kvsedge.yaml" {
		t.Errorf("conffiles: %q", cf)
	}

	// The unit's ExecStart, as the service user.
	unit, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/kvsedge.service"))
	if err != nil {
		t.Fatal(err)
	}
	var execStart []string
	for _, line := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = strings.Fields(v)
		}
		if v, ok := strings.CutPrefix(line, "User="); ok && v != "kvsedge" {
			t.Errorf("the unit runs as %q", v)
		}
	}
	if len(execStart) < 2 || execStart[0] != "/usr/bin/kvsedge" || !strings.Contains(strings.Join(execStart, " "), "--config /etc/kvsedge/kvsedge.yaml") {
		t.Fatalf("ExecStart %q", execStart)
	}
	user := strconv.Itoa(uid) + ":" + strconv.Itoa(gid)
	serve := exec.Command("chroot", append([]string{"--userspec=" + user, root}, execStart...)...)
	// The packaged file listens on 0.0.0.0:8080: the test box takes a free
	// loopback port instead (the environment overrides the file).
	p := startServing(t, serve, []string{"KVSEDGE_LISTEN=127.0.0.1:0", "KVSEDGE_STORAGE__MIN_FREE_MIB=8", "KVSEDGE_PROFILE=none"}, 30*time.Second)
	if !strings.Contains(p.logs.String(), "sudo kvsedge credentials") {
		t.Errorf("start-up does not say how to get the key pair:\n%s", p.logs.String())
	}

	// `kvsedge credentials` as root (sudo) and as the service user, without
	// --config: both find the box through /etc/kvsedge/kvsedge.yaml.
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "KVSEDGE_") && !strings.HasPrefix(e, "AWS_") {
			env = append(env, e)
		}
	}
	var akid, secret string
	for _, as := range []string{"0:0", user} {
		cmd := exec.Command("chroot", "--userspec="+as, root, "/usr/bin/kvsedge", "credentials")
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kvsedge credentials as %s: %v\n%s", as, err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(line, "export AWS_ACCESS_KEY_ID="); ok {
				akid = v
			}
			if v, ok := strings.CutPrefix(line, "export AWS_SECRET_ACCESS_KEY="); ok {
				secret = v
			}
		}
	}
	c := newSDKWith(t, p.endpoint, sdkOptions{AKID: akid, Secret: secret})
	if _, err := c.KV.CreateStream(sdkCtx(t), &kinesisvideo.CreateStreamInput{StreamName: aws.String("from-the-package"), DataRetentionInHours: aws.Int32(1)}); err != nil {
		t.Fatalf("CreateStream on the packaged box: %v", err)
	}
	l, err := c.KV.ListStreams(sdkCtx(t), &kinesisvideo.ListStreamsInput{})
	if err != nil || len(l.StreamInfoList) < 1 {
		t.Fatalf("ListStreams on the packaged box: %v %+v", err, l)
	}
	p.stop(t)
	// Everything the box wrote is the service user's.
	err = filepath.Walk(filepath.Join(root, "var/lib/kvsedge"), func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: uid %d mode %v, want %d and private", path, st.Uid, fi.Mode(), uid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// An edited configuration survives a reinstall (an upgrade's path).
	conf := filepath.Join(root, "etc/kvsedge/kvsedge.yaml")
	edited, _ := os.ReadFile(conf)
	edited = append(edited, []byte("# edited on the box\n")...)
	if err := os.WriteFile(conf, edited, 0o640); err != nil {
		t.Fatal(err)
	}
	dpkg("--force-confold", "-i", deb)
	if got, _ := os.ReadFile(conf); string(got) != string(edited) {
		t.Fatalf("the reinstall replaced the edited configuration:\n%s", got)
	}
	if pw, _ := os.ReadFile(filepath.Join(root, "etc/passwd")); strings.Count(string(pw), "\nkvsedge:") != 1 {
		t.Fatalf("/etc/passwd after a reinstall:\n%s", pw)
	}

	// Removed: the binary goes, the recordings and the key pair stay.
	dpkg("-r", "kvsedge")
	if _, err := os.Stat(filepath.Join(root, "usr/bin/kvsedge")); !os.IsNotExist(err) {
		t.Fatalf("the binary is still there after removal: %v", err)
	}
	for _, kept := range []string{"var/lib/kvsedge/credentials.yaml", "var/lib/kvsedge/kvsedge.lock", "etc/kvsedge/kvsedge.yaml"} {
		if _, err := os.Stat(filepath.Join(root, kept)); err != nil {
			t.Errorf("after removal: %v", err)
		}
	}
	checkOwner(t, filepath.Join(root, "var/lib/kvsedge"), uid, gid, os.ModeDir|0o700)
	t.Logf("package built, installed, served, reinstalled and removed in %v", time.Since(start).Round(time.Millisecond))
}

// userEntry reads a user's uid, gid and shell from a passwd file.
func userEntry(t *testing.T, passwd, name string) (uid, gid int, shell string) {
	t.Helper()
	f, err := os.Open(passwd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) == 7 && fields[0] == name {
			uid, _ = strconv.Atoi(fields[2])
			gid, _ = strconv.Atoi(fields[3])
			return uid, gid, fields[6]
		}
	}
	t.Fatalf("no user %s in %s", name, passwd)
	return 0, 0, ""
}

func checkOwner(t *testing.T, path string, uid, gid int, mode os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != gid || fi.Mode()&(os.ModeDir|os.ModePerm) != mode {
		t.Errorf("%s: %d:%d %v, want %d:%d %v", path, st.Uid, st.Gid, fi.Mode(), uid, gid, mode)
	}
}
