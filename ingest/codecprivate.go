package ingest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4"
)

// Matroska CodecPrivate for H.264 and H.265 is the MP4 decoder
// configuration record (the payload of an avcC or hvcC box). mediacommon
// builds those boxes from SPS/PPS (and VPS) when it writes an fMP4 init
// segment, so kvsedge takes the record from there instead of encoding it
// again by hand.
func decoderConfig(codec mp4.Codec, box string) ([]byte, error) {
	init := fmp4.Init{Tracks: []*fmp4.InitTrack{{ID: 1, TimeScale: 90000, Codec: codec}}}
	var buf seekablebuffer.Buffer
	if err := init.Marshal(&buf); err != nil {
		return nil, fmt.Errorf("building the %s record: %w", box, err)
	}
	b := buf.Bytes()
	i := bytes.Index(b, []byte(box))
	if i < 4 {
		return nil, fmt.Errorf("no %s box in the init segment", box)
	}
	size := int(binary.BigEndian.Uint32(b[i-4:]))
	if size < 8 || i-4+size > len(b) {
		return nil, fmt.Errorf("malformed %s box", box)
	}
	return append([]byte(nil), b[i+4:i-4+size]...), nil
}

// h264CodecPrivate is the avcC record for sps and pps.
func h264CodecPrivate(sps, pps []byte) ([]byte, error) {
	if len(sps) < 4 || len(pps) == 0 {
		return nil, errors.New("H.264 SPS or PPS missing")
	}
	return decoderConfig(&mp4.CodecH264{SPS: sps, PPS: pps}, "avcC")
}

// h265CodecPrivate is the hvcC record for vps, sps and pps.
func h265CodecPrivate(vps, sps, pps []byte) ([]byte, error) {
	if len(vps) == 0 || len(sps) < 13 || len(pps) == 0 {
		return nil, errors.New("H.265 VPS, SPS or PPS missing")
	}
	return decoderConfig(&mp4.CodecH265{VPS: vps, SPS: sps, PPS: pps}, "hvcC")
}

// opusHead is the Matroska CodecPrivate of A_OPUS (RFC 7845 §5.1).
func opusHead(channels int) []byte {
	h := []byte("OpusHead")
	h = append(h, 1, byte(channels))
	h = binary.LittleEndian.AppendUint16(h, 312) // pre-skip
	h = binary.LittleEndian.AppendUint32(h, 48000)
	h = binary.LittleEndian.AppendUint16(h, 0) // output gain
	return append(h, 0)                        // mapping family 0
}

// waveFormatEx is the CodecPrivate of A_MS/ACM for G.711: a WAVEFORMATEX
// with format tag 6 (A-law) or 7 (µ-law), 8 bits per sample.
func waveFormatEx(muLaw bool, sampleRate, channels int) []byte {
	tag := uint16(6)
	if muLaw {
		tag = 7
	}
	var b []byte
	b = binary.LittleEndian.AppendUint16(b, tag)
	b = binary.LittleEndian.AppendUint16(b, uint16(channels))
	b = binary.LittleEndian.AppendUint32(b, uint32(sampleRate))
	b = binary.LittleEndian.AppendUint32(b, uint32(sampleRate*channels)) // bytes per second
	b = binary.LittleEndian.AppendUint16(b, uint16(channels))            // block align
	b = binary.LittleEndian.AppendUint16(b, 8)                           // bits per sample
	return binary.LittleEndian.AppendUint16(b, 0)                        // cbSize
}
