package serve

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/internal/status"
	"github.com/valyala/fasthttp"
)

func mediaRoutes() map[string]func(*Server, *fasthttp.RequestCtx) {
	routes := map[string]func(*Server, *fasthttp.RequestCtx){
		"/putMedia":                (*Server).putMedia,
		"/getMedia":                (*Server).getMedia,
		"/getMediaForFragmentList": (*Server).getMediaForFragmentList,
		"/getClip":                 (*Server).getClip,
		clipDownloadPath:           (*Server).clipDownload,
	}
	for path, h := range hlsRoutes() {
		routes[path] = h
	}
	for path, h := range dashRoutes() {
		routes[path] = h
	}
	return routes
}

// archivedMediaRoutes are the JSON operations of kinesis-video-archived-media.
func archivedMediaRoutes() map[string]jsonHandler {
	return map[string]jsonHandler{
		"/listFragments":              (*Server).listFragments,
		"/getHLSStreamingSessionURL":  (*Server).getHLSStreamingSessionURL,
		"/getDASHStreamingSessionURL": (*Server).getDASHStreamingSessionURL,
		"/getImages":                  (*Server).getImages,
		// kvsedge's own: the state of each camera the box records, and
		// the members of its cluster.
		"/listCameras":         (*Server).listCameras,
		"/listCameraChanges":   (*Server).listCameraChanges,
		"/listRecordedRanges":  (*Server).listRecordedRanges,
		"/getClipURL":          (*Server).getClipURL,
		"/listClusterMembers":  (*Server).listClusterMembers,
		"/describeReplication": (*Server).describeReplication,
		"/describeCapacity":    (*Server).describeCapacity,
		"/describeUploads":     (*Server).describeUploads,
	}
}

// mediaRequest reads and authenticates the small JSON body of a streaming
// route; it has answered the request itself when ok is false.
func (s *Server) mediaRequest(ctx *fasthttp.RequestCtx) (body []byte, ok bool) {
	if !ctx.IsPost() {
		writeError(ctx, newAPIError(http.StatusMethodNotAllowed, errUnknownOperation, "%s accepts only POST.", ctx.Path()))
		return nil, false
	}
	body, aerr := s.readBody(ctx)
	if aerr == nil {
		aerr = s.authenticate(ctx, body)
	}
	if aerr != nil {
		writeError(ctx, aerr)
		return nil, false
	}
	if s.forward(ctx, string(ctx.Path()), body) {
		return nil, false
	}
	return body, true
}

// epochSeconds is a model timestamp: JSON number of seconds since the
// epoch (the CLI sends integers or decimals).
type epochSeconds float64

// ms is the timestamp in epoch milliseconds, clamped to ±1e15 (year
// ~33,700), so that absurd values compare and subtract without overflow
// and fail range checks as they should (found by probing GetImages with
// ±1e300).
func (t epochSeconds) ms() int64 {
	v := math.Round(float64(t) * 1000)
	switch {
	case math.IsNaN(v):
		return 0
	case v > 1e15:
		return 1e15
	case v < -1e15:
		return -1e15
	}
	return int64(v)
}

func msToSeconds(ms int64) float64 { return float64(ms) / 1000 }

type startSelectorIn struct {
	StartSelectorType   *string
	AfterFragmentNumber *string
	StartTimestamp      *epochSeconds
	ContinuationToken   *string
}

type getMediaIn struct {
	streamRefIn
	StartSelector *startSelectorIn
}

var (
	fragmentNumberPattern    = regexp.MustCompile(`^[0-9]+$`)
	continuationTokenPattern = regexp.MustCompile(`^[a-zA-Z0-9_\.\-]+$`)
)

// parseFragNum turns a wire fragment number into ours; a number of the
// right shape that kvsedge never issued is InvalidArgument.
func parseFragNum(field, s string) (fragment.Number, *apiError) {
	n, err := fragment.ParseNumber(s)
	if err != nil {
		return n, invalidArgument("Value '%s' at '%s' is not a fragment number of this stream.", clip(s), field)
	}
	return n, nil
}

func (s *Server) getMedia(ctx *fasthttp.RequestCtx) {
	body, ok := s.mediaRequest(ctx)
	if !ok {
		return
	}
	in, aerr := decode[getMediaIn](body)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	v := &validator{}
	var start engine.Start
	if v.required("StartSelector", in.StartSelector != nil) {
		sel := in.StartSelector
		v.enum("StartSelector.StartSelectorType", sel.StartSelectorType,
			"FRAGMENT_NUMBER", "SERVER_TIMESTAMP", "PRODUCER_TIMESTAMP", "NOW", "EARLIEST", "CONTINUATION_TOKEN")
		v.required("StartSelector.StartSelectorType", sel.StartSelectorType != nil)
		v.str("StartSelector.AfterFragmentNumber", sel.AfterFragmentNumber, 1, 128, fragmentNumberPattern)
		v.str("StartSelector.ContinuationToken", sel.ContinuationToken, 1, 128, continuationTokenPattern)
		if sel.StartSelectorType != nil {
			switch *sel.StartSelectorType {
			case "NOW":
				start.Kind = engine.StartNow
			case "EARLIEST":
				start.Kind = engine.StartEarliest
			case "FRAGMENT_NUMBER", "CONTINUATION_TOKEN":
				start.Kind = engine.StartAfter
				field, val := "StartSelector.AfterFragmentNumber", sel.AfterFragmentNumber
				if *sel.StartSelectorType == "CONTINUATION_TOKEN" {
					field, val = "StartSelector.ContinuationToken", sel.ContinuationToken
				}
				if v.required(field, val != nil) && v.err() == nil {
					n, aerr := parseFragNum(field, *val)
					if aerr != nil {
						writeError(ctx, aerr)
						return
					}
					start.Number = n
				}
			case "SERVER_TIMESTAMP", "PRODUCER_TIMESTAMP":
				start.Kind = engine.StartServerTime
				if *sel.StartSelectorType == "PRODUCER_TIMESTAMP" {
					start.Kind = engine.StartProducerTime
				}
				if v.required("StartSelector.StartTimestamp", sel.StartTimestamp != nil) {
					start.Ms = sel.StartTimestamp.ms()
				}
			}
		}
	}
	info, aerr := s.resolve(in.streamRefIn, v)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	if in.StartSelector != nil && in.StartSelector.StartSelectorType != nil && *in.StartSelector.StartSelectorType == "FRAGMENT_NUMBER" {
		// The named fragment must exist (a continuation token is only a
		// position: its fragment may have expired since).
		if ok, err := s.eng.HasFragment(engine.StreamRef{ARN: info.ARN}, start.Number); err != nil {
			writeError(ctx, engineError(err))
			return
		} else if !ok {
			writeError(ctx, newAPIError(http.StatusNotFound, errResourceNotFound, "Fragment %s was not found in stream %s.", *in.StartSelector.AfterFragmentNumber, info.Name))
			return
		}
	}
	cur, err := s.eng.OpenCursor(engine.StreamRef{ARN: info.ARN}, start)
	if err != nil {
		writeError(ctx, engineError(err))
		return
	}
	log := s.opts.Logger.With("op", "GetMedia", "stream", info.Name, "remote", ctx.RemoteAddr().String())
	s.hijackChunks(ctx, func(cw *chunkWriter) error {
		for {
			f, err := cur.Next(cw.ctx, s.opts.GetMediaIdleTimeout)
			switch {
			case errors.Is(err, engine.ErrIdle):
				log.Debug("live edge idle: ending GetMedia", "after", cur.Position().String())
				return nil
			case errors.Is(err, engine.ErrStreamDeleted):
				return cw.errorChunk(cur.Position(), 4000, "STREAM_DELETED")
			case errors.As(err, new(*engine.UnreadableError)):
				// A damaged fragment: an error chunk in its place, then on
				// with the next one.
				if err := cw.errorChunk(cur.Position(), 5000, "INTERNAL_ERROR"); err != nil {
					return err
				}
				continue
			case err != nil:
				if cw.ctx.Err() != nil {
					return nil
				}
				log.Warn("GetMedia read failed", "err", err)
				return cw.errorChunk(cur.Position(), 5000, "INTERNAL_ERROR")
			}
			err = cw.fragment(f, cur.Newest())
			f.Release()
			if err != nil {
				return err
			}
		}
	})
}

type gmfflIn struct {
	streamRefIn
	Fragments []string
}

func (s *Server) getMediaForFragmentList(ctx *fasthttp.RequestCtx) {
	body, ok := s.mediaRequest(ctx)
	if !ok {
		return
	}
	in, aerr := decode[gmfflIn](body)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	v := &validator{}
	if v.required("Fragments", in.Fragments != nil) {
		v.count("Fragments", len(in.Fragments), 1, 1000)
		for i := range in.Fragments {
			v.strValue(fmt.Sprintf("Fragments.%d", i+1), in.Fragments[i], 1, 128, fragmentNumberPattern)
		}
	}
	info, aerr := s.resolve(in.streamRefIn, v)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	nums := make([]fragment.Number, len(in.Fragments))
	for i, f := range in.Fragments {
		n, aerr := parseFragNum(fmt.Sprintf("Fragments.%d", i+1), f)
		if aerr != nil {
			writeError(ctx, aerr)
			return
		}
		nums[i] = n
	}
	ref := engine.StreamRef{ARN: info.ARN}
	// The first fragment is fetched before answering, so an unknown one
	// gets ResourceNotFoundException rather than an error chunk.
	first, err := s.eng.Fragment(ref, nums[0])
	if err != nil {
		if errors.Is(err, engine.ErrFragmentNotFound) {
			writeError(ctx, newAPIError(http.StatusNotFound, errResourceNotFound, "Fragment %s was not found in stream %s.", in.Fragments[0], info.Name))
			return
		}
		writeError(ctx, engineError(err))
		return
	}
	s.hijackChunks(ctx, func(cw *chunkWriter) error {
		err := cw.fragment(first, fragment.Number{})
		first.Release()
		if err != nil {
			return err
		}
		// A fragment that is gone (retention) or damaged gets an error
		// chunk in its place; the list goes on.
		for i := 1; i < len(nums); i++ {
			f, err := s.eng.Fragment(ref, nums[i])
			switch {
			case errors.Is(err, engine.ErrFragmentNotFound):
				err = cw.errorChunk(nums[i-1], 4000, "FRAGMENT_NOT_FOUND")
			case err != nil:
				s.opts.Logger.Error("a listed fragment is unreadable and skipped", "stream", info.Name, "number", nums[i].String(), "err", err)
				err = cw.errorChunk(nums[i-1], 5000, "INTERNAL_ERROR")
			default:
				err = cw.fragment(f, fragment.Number{})
				f.Release()
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// chunkWriter writes GetMedia chunks as HTTP/1.1 chunked-encoding chunks
// straight to the connection. Each chunk goes out with one vectored write
// (chunk size line, chunk prefix, the fragment's shared media, suffix,
// CRLF): the media is not copied in user space for any reader.
type chunkWriter struct {
	ctx     context.Context
	conn    net.Conn
	prefix  []byte
	suffix  []byte
	scratch []byte
	sizeLn  []byte
	arr     [5][]byte
	bufs    net.Buffers
	num     [fragment.DecimalLen]byte
}

var crlf = []byte("\r\n")

// chunkWriteTimeout bounds one chunk write to a consumer; it is generous
// for a large fragment on a slow link.
const chunkWriteTimeout = 60 * time.Second

func (cw *chunkWriter) fragment(f *engine.Fragment, newest fragment.Number) error {
	num := f.Meta.Number.AppendDecimal(cw.num[:0])
	cw.prefix, cw.scratch = mkv.AppendChunkPrefix(cw.prefix[:0], f.Header.Raw, num, f.Meta.ServerMs, f.Meta.ProducerMs, cw.scratch)
	behind := time.Now().UnixMilli() - f.Meta.ServerMs
	if behind < 0 {
		behind = 0
	}
	cw.suffix, cw.scratch = mkv.AppendChunkSuffix(cw.suffix[:0], behind, num, cw.scratch)
	size := len(cw.prefix) + len(f.Media) + len(cw.suffix)
	cw.sizeLn = strconv.AppendInt(cw.sizeLn[:0], int64(size), 16)
	cw.sizeLn = append(cw.sizeLn, crlf...)
	cw.arr = [5][]byte{cw.sizeLn, cw.prefix, f.Media, cw.suffix, crlf}
	cw.bufs = cw.arr[:]
	// A consumer that stops reading is dropped rather than holding the
	// fragment (and this goroutine) for ever.
	_ = cw.conn.SetWriteDeadline(time.Now().Add(chunkWriteTimeout))
	_, err := cw.bufs.WriteTo(cw.conn)
	return err
}

func (cw *chunkWriter) errorChunk(after fragment.Number, id int, code string) error {
	num := ""
	if !after.IsZero() {
		num = after.String()
	}
	c := mkv.AppendErrorChunk(nil, num, id, code)
	_ = cw.conn.SetWriteDeadline(time.Now().Add(chunkWriteTimeout))
	_, err := fmt.Fprintf(cw.conn, "%x\r\n%s\r\n", len(c), c)
	return err
}

// hijackChunks answers 200 with a chunked video/webm body produced by
// body on the raw connection, then closes the connection. fasthttp's own
// stream writer pipes the body through two buffer copies per reader; the
// hijacked connection lets chunkWriter hand the shared fragment bytes to
// the kernel directly.
func (s *Server) hijackChunks(ctx *fasthttp.RequestCtx, body func(cw *chunkWriter) error) {
	reqID := string(ctx.Response.Header.Peek("x-amzn-RequestId"))
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		defer s.recoverSession("media response")
		s.sessions.Add(1)
		defer s.sessions.Done()
		_ = c.SetDeadline(time.Time{})
		cctx, cancel := context.WithCancel(s.life)
		defer cancel()
		// A consumer that goes away while we wait at the live edge shows
		// up as a read error: nothing else is sent on this connection.
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			var b [1]byte
			_, _ = c.Read(b[:])
			cancel()
		}()
		// c is pooled by fasthttp once this function returns: the watcher
		// must be gone by then.
		defer func() {
			_ = c.SetReadDeadline(time.Now())
			<-watched
		}()
		bw := bufio.NewWriterSize(c, 512)
		fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Type: video/webm\r\nTransfer-Encoding: chunked\r\nConnection: close\r\nx-amzn-RequestId: %s\r\nServer: kvsedge\r\n\r\n", reqID)
		if err := bw.Flush(); err != nil {
			return
		}
		cw := &chunkWriter{ctx: cctx, conn: c}
		if err := body(cw); err != nil {
			if !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) && cctx.Err() == nil {
				s.opts.Logger.Debug("media response ended", "err", err)
			}
			return
		}
		_, _ = io.WriteString(c, "0\r\n\r\n")
	})
}

type fragmentSelectorIn struct {
	FragmentSelectorType *string
	TimestampRange       *struct {
		StartTimestamp *epochSeconds
		EndTimestamp   *epochSeconds
	}
}

type listFragmentsIn struct {
	streamRefIn
	MaxResults       *int
	NextToken        *string
	FragmentSelector *fragmentSelectorIn
}

type fragmentJSON struct {
	FragmentNumber               string
	FragmentSizeInBytes          int64
	ProducerTimestamp            float64
	ServerTimestamp              float64
	FragmentLengthInMilliseconds int64
}

var nextTokenPattern = regexp.MustCompile(`^[a-zA-Z0-9+/]+={0,2}$`)

// listToken is what a ListFragments NextToken carries: paging clients send
// only the token, so it holds the selector and the position.
type listToken struct {
	byServer       bool
	startMs, endMs int64
	cursor         fragment.TimeCursor
}

func (t listToken) encode() string {
	sel := "P"
	if t.byServer {
		sel = "S"
	}
	raw := fmt.Sprintf("1|%s|%d|%d|%d|%s", sel, t.startMs, t.endMs, t.cursor.Ms, t.cursor.Number)
	return base64.StdEncoding.EncodeToString([]byte(raw))
}

func decodeListToken(s string) (listToken, bool) {
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return listToken{}, false
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 6 || parts[0] != "1" || (parts[1] != "P" && parts[1] != "S") {
		return listToken{}, false
	}
	var t listToken
	t.byServer = parts[1] == "S"
	var e1, e2, e3 error
	t.startMs, e1 = strconv.ParseInt(parts[2], 10, 64)
	t.endMs, e2 = strconv.ParseInt(parts[3], 10, 64)
	t.cursor.Ms, e3 = strconv.ParseInt(parts[4], 10, 64)
	n, e4 := fragment.ParseNumber(parts[5])
	if e1 != nil || e2 != nil || e3 != nil || e4 != nil {
		return listToken{}, false
	}
	t.cursor.Number = n
	return t, true
}

// chunkTagsLen is the size of the tags GetMedia adds around a fragment
// (fragment number, two timestamps before; millis-behind and token
// after), for FragmentSizeInBytes.
var chunkTagsLen = func() int {
	num := make([]byte, fragment.DecimalLen)
	p, _ := mkv.AppendChunkPrefix(nil, nil, num, 1_700_000_000_000, 1_700_000_000_000, nil)
	sfx, _ := mkv.AppendChunkSuffix(nil, 1000, num, nil)
	return len(p) + len(sfx)
}()

func (s *Server) listFragments(body []byte) (any, *apiError) {
	in, aerr := decode[listFragmentsIn](body)
	if aerr != nil {
		return nil, aerr
	}
	v := &validator{}
	v.intRange("MaxResults", in.MaxResults, 1, 1000)
	v.str("NextToken", in.NextToken, 1, 4096, nextTokenPattern)
	var tok listToken
	var cursor *fragment.TimeCursor
	tok.byServer, tok.startMs, tok.endMs = true, math.MinInt64/2, math.MaxInt64/2
	if in.NextToken != nil && v.err() == nil {
		t, ok := decodeListToken(*in.NextToken)
		if !ok {
			v.add("The NextToken is not valid.")
		}
		tok, cursor = t, &t.cursor
	} else if sel := in.FragmentSelector; sel == nil {
		v.add("Either FragmentSelector or NextToken must be specified.")
	} else {
		v.enum("FragmentSelector.FragmentSelectorType", sel.FragmentSelectorType, "PRODUCER_TIMESTAMP", "SERVER_TIMESTAMP")
		v.required("FragmentSelector.FragmentSelectorType", sel.FragmentSelectorType != nil)
		if v.required("FragmentSelector.TimestampRange", sel.TimestampRange != nil) {
			r := sel.TimestampRange
			if v.required("FragmentSelector.TimestampRange.StartTimestamp", r.StartTimestamp != nil) &&
				v.required("FragmentSelector.TimestampRange.EndTimestamp", r.EndTimestamp != nil) {
				tok.startMs, tok.endMs = r.StartTimestamp.ms(), r.EndTimestamp.ms()
				if tok.endMs < tok.startMs {
					v.add("The EndTimestamp must be after the StartTimestamp.")
				}
			}
		}
		tok.byServer = sel.FragmentSelectorType == nil || *sel.FragmentSelectorType == "SERVER_TIMESTAMP"
	}
	info, aerr := s.resolve(in.streamRefIn, v)
	if aerr != nil {
		return nil, aerr
	}
	limit := 1000
	if in.MaxResults != nil {
		limit = *in.MaxResults
	}
	idx := fragment.ByProducerTime
	if tok.byServer {
		idx = fragment.ByServerTime
	}
	ref := engine.StreamRef{ARN: info.ARN}
	metas, next, err := s.eng.ListFragments(ref, idx, tok.startMs, tok.endMs, cursor, limit)
	if err != nil {
		return nil, engineError(err)
	}
	out := struct {
		Fragments []fragmentJSON
		NextToken *string `json:",omitempty"`
	}{Fragments: make([]fragmentJSON, 0, len(metas))}
	for _, m := range metas {
		out.Fragments = append(out.Fragments, fragmentJSON{
			FragmentNumber:               m.Number.String(),
			FragmentSizeInBytes:          int64(m.MediaLen) + int64(s.eng.HeaderLen(ref, m.HeaderID)) + int64(chunkTagsLen),
			ProducerTimestamp:            msToSeconds(m.ProducerMs),
			ServerTimestamp:              msToSeconds(m.ServerMs),
			FragmentLengthInMilliseconds: int64(m.DurationMs),
		})
	}
	if next != nil {
		tok.cursor = *next
		t := tok.encode()
		out.NextToken = &t
	}
	return out, nil
}

func (s *Server) listCameras(body []byte) (any, *apiError) {
	if _, aerr := decode[struct{}](body); aerr != nil {
		return nil, aerr
	}
	cams := []status.Camera{}
	if s.opts.Cameras != nil {
		cams = append(cams, s.opts.Cameras()...)
	}
	return struct{ Cameras []status.Camera }{cams}, nil
}

// listCameraChanges: the state changes of one stream's camera since the
// box started (Options.CameraChanges), oldest first; none for a stream
// that no camera of this box records.
func (s *Server) listCameraChanges(body []byte) (any, *apiError) {
	info, aerr := s.streamFromBody(body)
	if aerr != nil {
		return nil, aerr
	}
	changes := []status.CameraChange{}
	if s.opts.CameraChanges != nil {
		changes = append(changes, s.opts.CameraChanges(info.Name)...)
	}
	return struct {
		StreamName string
		Changes    []status.CameraChange
	}{info.Name, changes}, nil
}

func (s *Server) describeUploads(body []byte) (any, *apiError) {
	if _, aerr := decode[struct{}](body); aerr != nil {
		return nil, aerr
	}
	ups := []status.Upload{}
	if s.opts.Uploads != nil {
		ups = append(ups, s.opts.Uploads()...)
	}
	return struct{ Uploads []status.Upload }{ups}, nil
}

func (s *Server) describeCapacity(body []byte) (any, *apiError) {
	if _, aerr := decode[struct{}](body); aerr != nil {
		return nil, aerr
	}
	return s.eng.Capacity(), nil
}

func (s *Server) describeReplication(body []byte) (any, *apiError) {
	if _, aerr := decode[struct{}](body); aerr != nil {
		return nil, aerr
	}
	streams := []status.StreamReplication{}
	if s.opts.Cluster != nil {
		streams = append(streams, s.opts.Cluster.Replication()...)
	}
	return struct{ Streams []status.StreamReplication }{streams}, nil
}

func (s *Server) listClusterMembers(body []byte) (any, *apiError) {
	if _, aerr := decode[struct{}](body); aerr != nil {
		return nil, aerr
	}
	members := []status.Member{}
	if s.opts.Cluster != nil {
		members = append(members, s.opts.Cluster.Members()...)
	}
	return struct{ Members []status.Member }{members}, nil
}
