package mkv

import (
	"strconv"
)

// GetMedia chunk tags (shared/kvs-api.md §5, §10.3).
const (
	TagFragmentNumber    = "AWS_KINESISVIDEO_FRAGMENT_NUMBER"
	TagServerTimestamp   = "AWS_KINESISVIDEO_SERVER_TIMESTAMP"
	TagProducerTimestamp = "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"
	TagMillisBehindNow   = "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW"
	TagContinuationToken = "AWS_KINESISVIDEO_CONTINUATION_TOKEN"
	TagErrorCode         = "AWS_KINESISVIDEO_ERROR_CODE"
	TagErrorID           = "AWS_KINESISVIDEO_ERROR_ID"
)

// tagsWriter appends one Tags > Tag > SimpleTag… element, all sizes as
// 4-byte vints (as KVS writes them), patching sizes when closed.
type tagsWriter struct {
	dst           []byte
	tagsAt, tagAt int
}

func beginTags(dst []byte) tagsWriter {
	w := tagsWriter{dst: dst}
	w.dst = appendID(w.dst, IDTags)
	w.tagsAt = len(w.dst)
	w.dst = appendSize4(w.dst, 0)
	w.dst = appendID(w.dst, IDTag)
	w.tagAt = len(w.dst)
	w.dst = appendSize4(w.dst, 0)
	return w
}

func (w *tagsWriter) simple(name string, value []byte) {
	w.dst = appendID(w.dst, IDSimpleTag)
	w.dst = appendSize4(w.dst, 2+4+len(name)+2+4+len(value))
	w.dst = appendID(w.dst, IDTagName)
	w.dst = appendSize4(w.dst, len(name))
	w.dst = append(w.dst, name...)
	w.dst = appendID(w.dst, IDTagString)
	w.dst = appendSize4(w.dst, len(value))
	w.dst = append(w.dst, value...)
}

func (w *tagsWriter) end() []byte {
	putSize4(w.dst[w.tagsAt:], len(w.dst)-w.tagsAt-4)
	putSize4(w.dst[w.tagAt:], len(w.dst)-w.tagAt-4)
	return w.dst
}

// appendSeconds appends epoch milliseconds as decimal seconds with three
// decimals ("1511852109.126").
func appendSeconds(dst []byte, ms int64) []byte {
	if ms < 0 {
		dst = append(dst, '-')
		ms = -ms
	}
	dst = strconv.AppendInt(dst, ms/1000, 10)
	frac := ms % 1000
	return append(dst, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
}

// AppendChunkPrefix appends what precedes a fragment's stored bytes in a
// GetMedia chunk: the header (EBML header, Segment of unknown size, Info,
// Tracks) and the Tags with the fragment number and its server and
// producer timestamps. scratch is reused for number formatting; pass the
// returned slice back in to avoid allocations.
func AppendChunkPrefix(dst []byte, headerRaw []byte, fragmentNumber []byte, serverMs, producerMs int64, scratch []byte) (out, scratchOut []byte) {
	dst = append(dst, headerRaw...)
	w := beginTags(dst)
	w.simple(TagFragmentNumber, fragmentNumber)
	scratch = appendSeconds(scratch[:0], serverMs)
	w.simple(TagServerTimestamp, scratch)
	scratch = appendSeconds(scratch[:0], producerMs)
	w.simple(TagProducerTimestamp, scratch)
	return w.end(), scratch
}

// AppendChunkSuffix appends the Tags that end a GetMedia chunk: how far
// behind now the fragment is, and the continuation token (the fragment
// number, as KVS sends it).
func AppendChunkSuffix(dst []byte, millisBehindNow int64, continuationToken []byte, scratch []byte) (out, scratchOut []byte) {
	w := beginTags(dst)
	scratch = strconv.AppendInt(scratch[:0], millisBehindNow, 10)
	w.simple(TagMillisBehindNow, scratch)
	w.simple(TagContinuationToken, continuationToken)
	return w.end(), scratch
}

// minimalEBMLHeader is an EBML header for chunks that have no producer
// header to reuse (error chunks): EBMLVersion 1, ReadVersion 1,
// MaxIDLength 4, MaxSizeLength 8, DocType "matroska", DocTypeVersion 2,
// DocTypeReadVersion 2.
var minimalEBMLHeader = []byte{
	0x1A, 0x45, 0xDF, 0xA3, 0x9F,
	0x42, 0x86, 0x81, 0x01,
	0x42, 0xF7, 0x81, 0x01,
	0x42, 0xF2, 0x81, 0x04,
	0x42, 0xF3, 0x81, 0x08,
	0x42, 0x82, 0x88, 'm', 'a', 't', 'r', 'o', 's', 'k', 'a',
	0x42, 0x87, 0x81, 0x02,
	0x42, 0x85, 0x81, 0x02,
}

// AppendErrorChunk appends the chunk GetMedia sends on an error: EBML
// header, Segment, and Tags with the fragment number (the last one sent,
// or empty), error id and code, and no server timestamp — the shape the
// KVS parser library recognises as an error.
func AppendErrorChunk(dst []byte, fragmentNumber string, errorID int, errorCode string) []byte {
	dst = append(dst, minimalEBMLHeader...)
	dst = appendID(dst, IDSegment)
	dst = append(dst, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF)
	w := beginTags(dst)
	w.simple(TagFragmentNumber, []byte(fragmentNumber))
	w.simple(TagErrorID, strconv.AppendInt(nil, int64(errorID), 10))
	w.simple(TagErrorCode, []byte(errorCode))
	return w.end()
}

// AppendEndOfFragment appends a Tags element holding the SimpleTag
// AWS_KINESISVIDEO_END_OF_FRAGMENT, which closes a fragment on a PutMedia
// upload without waiting for the next cluster (what the KVS C producer
// sends after each fragment).
func AppendEndOfFragment(dst []byte) []byte {
	w := beginTags(dst)
	w.simple("AWS_KINESISVIDEO_END_OF_FRAGMENT", nil)
	return w.end()
}
