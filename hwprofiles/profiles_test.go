package hwprofiles

import "testing"

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		b    Board
		want string
	}{
		{Board{"Raspberry Pi Zero 2 W Rev 1.0", 427}, "pi-zero-2w"},
		{Board{"Raspberry Pi 4 Model B Rev 1.4", 1849}, "pi4-2g"},
		{Board{"Raspberry Pi 4 Model B Rev 1.5", 7812}, "pi5-8g"},
		{Board{"Raspberry Pi 4 Model B Rev 1.4", 3790}, "pi4-2g"},
		{Board{"Raspberry Pi 5 Model B Rev 1.0", 3950}, "pi4-2g"},
		{Board{"Raspberry Pi 5 Model B Rev 1.0", 8052}, "pi5-8g"},
		{Board{"NVIDIA Jetson Orin Nano Developer Kit", 7620}, "jetson-orin-nano"},
		{Board{"", 15800}, "x86-mini"},
		{Board{"", 7900}, "pi5-8g"},    // an 8 GB x86 box: the 8 GiB budgets
		{Board{"", 24000}, "x86-mini"}, // this development VM
		{Board{"Some ARM board", 1000}, "pi-zero-2w"},
		{Board{"Some ARM board", 32000}, "pi5-8g"}, // the largest ARM profile by memory
	} {
		p, why := Detect(tc.b)
		if p.Name != tc.want || why == "" {
			t.Errorf("%+v: %s (%s), want %s", tc.b, p.Name, why, tc.want)
		}
	}
}

func TestProfilesAreConsistent(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range All {
		if seen[p.Name] || p.Description == "" || p.DerivedFrom == "" {
			t.Errorf("%s: duplicate name or missing description", p.Name)
		}
		seen[p.Name] = true
		// The store's budgets fit in the Go limit; the Go limit and the
		// media budget (outside the Go heap) together in the board.
		if store := p.CacheMiB + p.MemtableMiB*2; store > p.MemoryLimitMiB/4 || p.MemoryLimitMiB+p.MediaMemoryMiB > p.MemoryMiB*3/4 {
			t.Errorf("%s: store %d MiB, Go limit %d MiB + media %d MiB, board %d MiB", p.Name, store, p.MemoryLimitMiB, p.MediaMemoryMiB, p.MemoryMiB)
		}
		// Every camera's ring, its fragment arriving and a couple queued
		// for the disk (4 fragments of 2 s more than the ring) at 2 Mbit/s
		// take at most a third of the cameras' share of the media budget
		// (7/8 of it), and one 48 MB upload fragment fits in the uploads'
		// share (3/4): the rest is for uploads and reads.
		perCamera := float64(p.RingSeconds+8) * 2e6 / 8
		if cams := float64(p.MaxCameras) * perCamera; cams > float64(p.MediaMemoryMiB<<20)*7/8/3 || 48e6 > float64(p.MediaMemoryMiB<<20)*3/4 {
			t.Errorf("%s: %d cameras need %.0f MiB of a %d MiB media budget", p.Name, p.MaxCameras, cams/(1<<20), p.MediaMemoryMiB)
		}
		if p.RingSeconds < 4 {
			t.Errorf("%s: a %d s ring holds less than two 2 s fragments", p.Name, p.RingSeconds)
		}
		if (p.Storage == StorageSD) != (p.SyncWindow > 0) {
			t.Errorf("%s: storage %s with sync window %v", p.Name, p.Storage, p.SyncWindow)
		}
	}
}
