// Package cluster will own peer membership (serf), placement of streams on
// nodes, archive replication between nodes and camera failover. It talks to
// the engine only. It is empty until the cluster issue fills it.
package cluster
