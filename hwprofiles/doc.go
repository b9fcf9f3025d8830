// Package hwprofiles will own the per-board budgets (Pebble cache and
// memtables, hot-ring bytes, camera count, fsync cadence, Go memory limit)
// and the detection of the board kvsedge runs on. It imports nothing from the
// project. It is empty until the appliance issue fills it.
package hwprofiles
