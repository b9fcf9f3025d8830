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
		// The memory budgets must fit in the Go limit, and the limit in the board.
		budget := p.CacheMiB + p.MemtableMiB*2 + p.RingMiBPerStream*p.MaxCameras
		if budget > p.MemoryLimitMiB || p.MemoryLimitMiB > p.MemoryMiB*3/4 {
			t.Errorf("%s: budgets %d MiB, limit %d MiB, board %d MiB", p.Name, budget, p.MemoryLimitMiB, p.MemoryMiB)
		}
		if (p.Storage == StorageSD) != (p.SyncWindow > 0) {
			t.Errorf("%s: storage %s with sync window %v", p.Name, p.Storage, p.SyncWindow)
		}
	}
}
