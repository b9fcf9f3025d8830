// Package hwprofiles owns kvsedge's per-board budgets and the detection of
// the board it runs on. A Profile sets the Pebble block cache and memtable
// sizes, the seconds of video each stream's hot ring keeps, the media
// memory budget (outside the Go heap), the number of cameras the box
// records, how the store syncs (per fragment on SSDs; a group window on SD
// cards, to spare their flash) and the Go memory limit. Detect picks one
// from the device-tree model and the memory size. It imports nothing from
// the project; the configuration layer applies a profile's values as
// defaults that the file, the environment and the flags override.
package hwprofiles
