package mkv

import (
	"errors"
)

// AppendRetimed appends a stored fragment's media (a Cluster, media[:clusterLen],
// then the Tags that followed it) with the Cluster's Timecode set to tc:
//
//	Cluster ID | unknown size (01 FF FF FF FF FF FF FF) | Timecode(tc, 8-byte body) |
//	the Cluster's other children verbatim | media[clusterLen:] verbatim
//
// Block timecodes are relative to the Cluster's, so every frame keeps its
// place; only the origin moves. An uploader uses it to send ABSOLUTE
// producer timecodes for fragments a producer sent with RELATIVE ones.
func AppendRetimed(dst, media []byte, clusterLen int, tc uint64) ([]byte, error) {
	if clusterLen > len(media) || clusterLen < 5 || uint32(readUint(media[:4])) != IDCluster {
		return dst, errors.New("mkv: media does not start with a Cluster")
	}
	m := vintLen(media[4])
	if m == 0 || clusterLen < 4+m {
		return dst, errors.New("mkv: malformed cluster size")
	}
	dst = appendID(dst, IDCluster)
	dst = append(dst, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF)
	dst = appendUintElem(dst, IDTimecode, tc)
	body := media[4+m : clusterLen]
	for len(body) > 0 {
		n := vintLen(body[0])
		if n == 0 || n > 4 || len(body) < n+1 {
			return dst, errors.New("mkv: malformed cluster child")
		}
		id := uint32(readUint(body[:n]))
		sl := vintLen(body[n])
		if sl == 0 || len(body) < n+sl {
			return dst, errors.New("mkv: malformed cluster child size")
		}
		size := decodeSize(body[n : n+sl])
		end := int64(n+sl) + size
		if size == unknownSize || end > int64(len(body)) {
			return dst, errors.New("mkv: malformed cluster child size")
		}
		if id != IDTimecode {
			dst = append(dst, body[:end]...)
		}
		body = body[end:]
	}
	return append(dst, media[clusterLen:]...), nil
}
