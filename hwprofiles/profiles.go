package hwprofiles

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Storage is the kind of medium the data directory lives on.
type Storage string

// Storage kinds.
const (
	// StorageSD: microSD or eMMC. Small random writes wear the flash and
	// each fsync costs milliseconds, so syncs are grouped.
	StorageSD Storage = "sd"
	// StorageSSD: NVMe or SATA SSD (or a spinning disk): sync per fragment.
	StorageSSD Storage = "ssd"
)

// Profile is one board's budgets.
type Profile struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// DerivedFrom says where the numbers come from.
	DerivedFrom string `json:"derived_from"`
	// MemoryMiB is the board's RAM.
	MemoryMiB int `json:"memory_mib"`
	// Pebble's block cache and memtable.
	CacheMiB    int `json:"cache_mib"`
	MemtableMiB int `json:"memtable_mib"`
	// RingSeconds is how much of each stream's newest video its hot ring
	// keeps in memory for live readers (its bytes follow the bitrate).
	RingSeconds int `json:"ring_seconds"`
	// MediaMemoryMiB is the media memory budget: every media byte held
	// (fragments arriving, in the rings, waiting to be stored, read back)
	// counts against it. It is outside the Go heap (mmap), so it comes on
	// top of MemoryLimitMiB.
	MediaMemoryMiB int `json:"media_memory_mib"`
	// MaxCameras is how many cameras the box records at once.
	MaxCameras int `json:"max_cameras"`
	// MaxConns caps the API connections served at once (http.max_conns;
	// the box also keeps it under 3/4 of its file limit). A held
	// connection costs ~1 KiB of heap plus its goroutine's stack: the full
	// flood (issue 13) measured ~100 MiB RSS at 4,096 connections and
	// 161 MiB at 15,000 on top of an idle 26 MiB.
	MaxConns int `json:"max_conns"`
	// Storage and SyncWindow: with SyncWindow > 0 the store groups the
	// syncs of fragments that finish within the window (PERSISTED acks
	// wait up to that long); 0 syncs each fragment at once.
	Storage    Storage       `json:"storage"`
	SyncWindow time.Duration `json:"sync_window"`
	// MemoryLimitMiB is the Go runtime's soft memory limit (GOMEMLIMIT):
	// the heap of metadata, connections and the store; media is outside
	// it (MediaMemoryMiB).
	MemoryLimitMiB int `json:"memory_limit_mib"`
	// FastFailureDetection (cluster.fast_failure_detection) detects a
	// dead peer in about a second instead of serf's LAN default of about
	// six. Every built-in profile is a box of a site's LAN (a few boxes,
	// sub-millisecond round trips), where six seconds of detection would
	// be six seconds of lost video per failure: the cameras of a SIGKILLed
	// home record again on the next box within 2–3 s (TestClusterHandBack,
	// polled every 250 ms).
	FastFailureDetection bool `json:"fast_failure_detection"`
}

// perCameraNote is the measurement every profile's camera figures come
// from (issue 14).
const perCameraNote = "Per camera, measured (BenchmarkRecorder, 2 Mbit/s 720p H.264 over RTSP/TCP, cameras started 1/N s apart, 3 rounds, x86 VM of 2 cores, 2026-12-06): " +
	"RSS 0.77–0.84 MiB with nobody reading it (0.84 at 16 cameras, 0.77 at 64: the fragment it assembles, ~0.6 MiB of media buffer, and its connection; a stored fragment stays in memory only while someone reads the stream), " +
	"plus its ring, ~0.24 MiB per second of video, while it is read; " +
	"1.4–2.3 ms of CPU per camera-second (1.11–1.21× a bare gortsplib receiver of the same streams: over TCP the video skips gortsplib's per-packet buffers, 0.21–0.22 allocations per frame against its 30 (0.19–0.20 before the session sent the video's RTCP receiver reports over TCP, every 5 s), " +
	"all per fragment or per second, none per packet or frame; a camera nobody watches live, up to ~2.6 Mbit/s, reads its socket every 200 ms, a watched one every 40 ms; " +
	"on another VM, 4.1–5.2 ms before the tap and 6.5–7.8 ms before the receive path lost its page faults and copies); " +
	"an idle box 0.08–0.09 ms of CPU a second (BenchmarkApplianceProfiles; 2.6 ms with Pebble's default compaction scheduler, which woke it ten times a second, read from the threads' schedstat against the build before it); " +
	"against MediaMTX recording the same cameras without fsync (BenchmarkVsMediaMTX, each figure from one run of both): 0.29× its CPU and 0.81× its RSS at 16 cameras, 0.27× and 1.08× at 64 (2 rounds, 2026-12-05), 0.35–0.40× and 0.53–0.54× for one camera (two runs of 3 rounds, 2026-12-06, with the quiet compaction scheduler). " +
	"A camera's media budget share: its ring (read), the fragment arriving and ~2 queued for the disk. " +
	"CPU on a board is estimated from the x86 figure by the core's speed (not measured on the board): Cortex-A53 ~5× slower, A72 ~3×, A76 ~1.5×."

// All are the built-in profiles, smallest first.
var All = []Profile{
	{
		Name: "pi-zero-2w", Description: "Raspberry Pi Zero 2 W class: 512 MB, 4× Cortex-A53, microSD",
		DerivedFrom: "512 MiB RAM of which ~420 MiB is free after the OS; the process is held to 256 MiB (issue 14) so the page cache keeps the rest: " +
			"a 160 MiB Go limit (index, connections, Pebble's 8 MiB cache and 2×4 MiB memtables) and a 96 MiB media budget outside it. " +
			"8 cameras at 2 Mbit/s: each costs ~1 MiB beyond a 4 s ring (two 2 s fragments, ~1 MiB), so 8 take ~16 MiB of RSS and ~24 MB of the media budget " +
			"(ring + arriving + queued), leaving room for one 48 MB PutMedia fragment (uploads may fill 72 MiB; more are refused with a retriable ERROR and re-sent); " +
			"CPU ~10–13 ms per camera-second on an A53, 8 cameras ~0.1 of its 4 cores; 16 Mbit/s of ingest is within its Wi-Fi and its microSD's writes. " +
			"Checked by make soak-pizero on x86 (8 cameras, 10 minutes, 2026-12-06: RSS 44 MiB on average, 45 MiB at most, of 256; every fragment durable within 0.5 s), not yet on the board. " +
			"microSD: grouped syncs. 1,024 API connections at once: the flood test measured ~75 MiB of heap and 25 MiB of stacks at 4,096 held connections, " +
			"so 1,024 cost ~25 MiB of the Go limit. " + perCameraNote,
		MemoryMiB: 512, CacheMiB: 8, MemtableMiB: 4, RingSeconds: 4, MediaMemoryMiB: 96, MaxCameras: 8, MaxConns: 1024,
		Storage: StorageSD, SyncWindow: 250 * time.Millisecond, MemoryLimitMiB: 160, FastFailureDetection: true,
	},
	{
		Name: "pi4-2g", Description: "Raspberry Pi 4 or 5 with 2–4 GB, microSD or USB SSD",
		DerivedFrom: "2 GiB RAM: the process is held to 1 GiB, a 768 MiB Go limit and a 256 MiB media budget; a 6 s ring per stream (three 2 s fragments: " +
			"an HLS live playlist, ~1.5 MiB of a 2 Mbit/s camera). 16 cameras: ~1 MiB each beyond the ring, ~40 MiB of RSS, and ~56 MB of the media budget " +
			"(ring + arriving + queued), the rest for uploads and reads; CPU ~6–8 ms per camera-second on an A72, 16 cameras ~0.12 of its 4 cores; " +
			"cache 32 MiB covers the index of months of fragments (95 B per fragment record); microSD assumed: grouped syncs. " + perCameraNote,
		MemoryMiB: 2048, CacheMiB: 32, MemtableMiB: 16, RingSeconds: 6, MediaMemoryMiB: 256, MaxCameras: 16, MaxConns: 4096,
		Storage: StorageSD, SyncWindow: 250 * time.Millisecond, MemoryLimitMiB: 768, FastFailureDetection: true,
	},
	{
		Name: "pi5-8g", Description: "Raspberry Pi 5, 8 GB, NVMe (M.2 HAT) or microSD",
		DerivedFrom: "8 GiB RAM: the process is held to 4 GiB, a 3 GiB Go limit and a 1 GiB media budget; a 10 s ring per stream (~2.4 MiB of a 2 Mbit/s camera). " +
			"32 cameras: ~1 MiB each beyond the ring (the figure at 16 and more), ~110 MiB of RSS and ~145 MB of the media budget, the rest for concurrent uploads and reads; " +
			"CPU ~3–4 ms per camera-second on an A76, 32 cameras ~0.12 of its 4 cores; 64 Mbit/s of ingest; most boot from microSD: " +
			"syncs grouped in 100 ms windows (set storage.sync_window: 0s on NVMe); a 4 GB Pi 4 or 5 gets pi4-2g. " + perCameraNote,
		MemoryMiB: 8192, CacheMiB: 128, MemtableMiB: 64, RingSeconds: 10, MediaMemoryMiB: 1024, MaxCameras: 32, MaxConns: 8192,
		Storage: StorageSD, SyncWindow: 100 * time.Millisecond, MemoryLimitMiB: 3072, FastFailureDetection: true,
	},
	{
		Name: "jetson-orin-nano", Description: "NVIDIA Jetson Orin Nano class: 8 GB shared with the GPU, NVMe",
		DerivedFrom: "8 GiB shared between CPU and GPU (inference gets half): the process is held to 3 GiB, a 2 GiB Go limit and a 1 GiB media budget; " +
			"cameras and ring as pi5-8g (6 Cortex-A78AE cores, at least as fast); NVMe: sync per fragment. " + perCameraNote,
		MemoryMiB: 8192, CacheMiB: 128, MemtableMiB: 32, RingSeconds: 10, MediaMemoryMiB: 1024, MaxCameras: 32, MaxConns: 8192,
		Storage: StorageSSD, MemoryLimitMiB: 2048, FastFailureDetection: true,
	},
	{
		Name: "x86-mini", Description: "x86 mini PC (Intel N100 class), 8–16 GB, SSD",
		DerivedFrom: "≥ 8 GiB RAM: the process is held to 6 GiB, a 4.5 GiB Go limit and a 1.5 GiB media budget; a 10 s ring per stream. " +
			"64 cameras: ~1 MiB each beyond the ring (0.9–1.0 measured at 64), ~220 MiB of RSS and ~290 MB of the media budget, the rest for uploads and reads; " +
			"CPU measured at 1.4–1.5 ms per camera-second at 64 cameras on 2 x86 cores (issue 14: BenchmarkRecorder, and BenchmarkVsMediaMTX under this profile), ~0.1 s of CPU per second of 64 cameras; 128 Mbit/s of ingest; " +
			"SSD: sync per fragment. " + perCameraNote,
		MemoryMiB: 16384, CacheMiB: 256, MemtableMiB: 64, RingSeconds: 10, MediaMemoryMiB: 1536, MaxCameras: 64, MaxConns: 16384,
		Storage: StorageSSD, MemoryLimitMiB: 4608, FastFailureDetection: true,
	},
}

// ByName returns the named profile.
func ByName(name string) (Profile, bool) {
	for _, p := range All {
		if p.Name == name {
			return p, true
		}
	}
	return Profile{}, false
}

// Names lists the built-in profiles' names.
func Names() []string {
	out := make([]string, len(All))
	for i, p := range All {
		out[i] = p.Name
	}
	return out
}

// Board is what Detect looks at.
type Board struct {
	// Model is the device-tree model ("Raspberry Pi 4 Model B Rev 1.4"),
	// empty on machines without a device tree (x86).
	Model string
	// MemoryMiB is the RAM the kernel reports.
	MemoryMiB int
}

// ReadBoard reads the running machine's device-tree model and memory.
func ReadBoard() Board {
	var b Board
	for _, p := range []string{"/proc/device-tree/model", "/sys/firmware/devicetree/base/model"} {
		if m, err := os.ReadFile(p); err == nil {
			b.Model = strings.TrimSpace(string(bytes.TrimRight(m, "\x00")))
			break
		}
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fields := strings.Fields(sc.Text()); len(fields) >= 2 && fields[0] == "MemTotal:" {
				kb, _ := strconv.Atoi(fields[1])
				b.MemoryMiB = kb / 1024
			}
		}
	}
	return b
}

// Detect picks the profile for a board: by its model when it is one we
// know, else by memory (the largest profile whose RAM the board has at
// least ~85 % of: kernels reserve some).
func Detect(b Board) (Profile, string) {
	m := strings.ToLower(b.Model)
	pick := func(name, why string) (Profile, string) {
		p, _ := ByName(name)
		return p, why
	}
	switch {
	case strings.Contains(m, "raspberry pi zero 2"):
		return pick("pi-zero-2w", "device-tree model "+b.Model)
	case strings.Contains(m, "raspberry pi 5") || strings.Contains(m, "raspberry pi 4"):
		// By memory: the 8 GB budgets only where 8 GB is there.
		if b.MemoryMiB*100 >= 8192*85 {
			return pick("pi5-8g", fmt.Sprintf("device-tree model %s with %d MiB", b.Model, b.MemoryMiB))
		}
		return pick("pi4-2g", fmt.Sprintf("device-tree model %s with %d MiB", b.Model, b.MemoryMiB))
	case strings.Contains(m, "orin nano") || strings.Contains(m, "jetson"):
		return pick("jetson-orin-nano", "device-tree model "+b.Model)
	}
	best := All[0]
	for _, p := range All {
		if p.Name == "jetson-orin-nano" || p.Name == "x86-mini" && b.Model != "" {
			continue // by model only; x86 boxes have no device tree
		}
		if b.MemoryMiB*100 >= p.MemoryMiB*85 {
			best = p
		}
	}
	return best, fmt.Sprintf("%d MiB of memory (model %q)", b.MemoryMiB, b.Model)
}
