package mkv

import (
	"bytes"
	"testing"
)

func TestAppendRetimedMovesTheClusterOrigin(t *testing.T) {
	block := []byte{0x81, 0x00, 0x0A, 0x80, 'f', 'r', 'a', 'm', 'e'} // track 1, +10, key
	var body []byte
	body = append(body, IDTimecode&0xFF, 0x81, 0x05) // Timecode 5 (1-byte body)
	body = append(body, IDSimpleBlock, 0x80|byte(len(block)))
	body = append(body, block...)
	cluster := appendID(nil, IDCluster)
	cluster = append(cluster, 0x80|byte(len(body)))
	cluster = append(cluster, body...)
	tags := []byte("TAGS")
	media := append(append([]byte(nil), cluster...), tags...)

	out, err := AppendRetimed([]byte("prefix"), media, len(cluster), 1_795_579_974_135)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(out, []byte("prefix")) || !bytes.HasSuffix(out, tags) {
		t.Fatalf("prefix or tags lost: %x", out)
	}
	got := out[len("prefix") : len(out)-len(tags)]
	h := &Header{TimecodeScale: 1_000_000}
	var blocks []Block
	// ForEachBlock walks the children of the (now unknown-size) cluster.
	if err := ForEachBlock(h, got, func(b Block) error { blocks = append(blocks, b); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 1 || blocks[0].ClusterMs != 1_795_579_974_135 || blocks[0].TimeMs != 1_795_579_974_145 ||
		!blocks[0].Key || string(blocks[0].Payload) != "frame" {
		t.Fatalf("blocks after retiming: %+v", blocks)
	}
	if _, err := AppendRetimed(nil, []byte("not a cluster"), 5, 1); err == nil {
		t.Fatal("media without a cluster was retimed")
	}
}
