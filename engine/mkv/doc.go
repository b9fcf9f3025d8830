// Package mkv is kvsedge's Matroska code, shared by every path that reads or
// writes KVS-style Matroska: the PutMedia body reader (Reader), the GetMedia
// chunk writer (AppendChunkPrefix, AppendChunkSuffix, AppendErrorChunk), the
// writer of camera fragments (BuildHeader, FragmentBuilder,
// AppendEndOfFragment), and the EBML primitives they use.
//
// The wire format is KVS's (shared/kvs-api.md §10, and FORMAT.md beside this
// file): one Segment of unknown size per upload, one Cluster per fragment
// (usually unknown size, ended by the next element that cannot be its child),
// segment-level Tags after a cluster holding that fragment's metadata, the
// SimpleTag AWS_KINESISVIDEO_END_OF_FRAGMENT closing a fragment.
//
// Files by job:
//
//	ebml.go    element IDs, vints, sizes, walking children
//	reader.go  Reader, its Options and limits, Header, Fragment, the
//	           PutMedia ErrorIds (Error)
//	parse.go   ParseHeader: a stored session header back into a Header
//	chunk.go   GetMedia chunks and error chunks, the end-of-fragment tag
//	writer.go  BuildHeader and FragmentBuilder: the fragments cameras
//	           record, exactly as a PutMedia upload would carry them;
//	           blocks added whole or streamed in (BeginBlock, Append,
//	           EndBlock), the buffer grown only through Options.Buffers
//
// Reader is a small streaming scanner rather than ebml-go: ebml-go delivers
// an unknown-size Cluster only when the next element begins, cannot stop at
// the END_OF_FRAGMENT tag or on an idle timer, and decodes into values, where
// kvsedge keeps the producer's cluster bytes verbatim (measured in
// shared/library-notes.md). It copies each byte of the body once, from the
// network buffer into the fragment's buffer (from Options.Buffers: the
// engine's media memory, which may refuse, *BufferError), allocates nothing
// per frame and bounds every buffered element so a hostile body cannot grow
// memory.
package mkv
