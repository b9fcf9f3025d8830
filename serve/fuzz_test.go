package serve

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"

	"github.com/valyala/fasthttp"
)

// fuzzOps are the operations FuzzJSONOperations sends bodies to, by the
// fuzzer's op byte (modulo the count). Append only: the corpus under
// testdata/fuzz names operations by index.
var fuzzOps = []string{
	"/createStream",                         // 0
	"/describeStream",                       // 1
	"/listStreams",                          // 2
	"/updateStream",                         // 3
	"/updateDataRetention",                  // 4
	"/getDataEndpoint",                      // 5
	"/tagStream",                            // 6
	"/untagStream",                          // 7
	"/listTagsForStream",                    // 8
	"/TagResource",                          // 9
	"/UntagResource",                        // 10
	"/ListTagsForResource",                  // 11
	"/updateImageGenerationConfiguration",   // 12
	"/updateNotificationConfiguration",      // 13
	"/updateStreamStorageConfiguration",     // 14
	"/startEdgeConfigurationUpdate",         // 15
	"/describeEdgeConfiguration",            // 16
	"/listEdgeAgentConfigurations",          // 17
	"/listFragments",                        // 18
	"/getHLSStreamingSessionURL",            // 19
	"/getDASHStreamingSessionURL",           // 20
	"/getImages",                            // 21
	"/getMedia",                             // 22
	"/getMediaForFragmentList",              // 23
	"/getClip",                              // 24
	"/describeImageGenerationConfiguration", // 25
	"/describeNotificationConfiguration",    // 26
	"/describeStreamStorageConfiguration",   // 27
	"/deleteEdgeConfiguration",              // 28
	"/deleteStream",                         // 29
}

// fuzzSeedBodies are valid (or nearly) requests, by operation index. The
// stream "cam" exists and holds the relative capture, uploaded with
// producer start 1795580000.5 (six fragments, about 12 s).
var fuzzSeedBodies = []struct {
	op   uint8
	body string
}{
	{0, `{"StreamName":"fuzz-new","DataRetentionInHours":2,"MediaType":"video/h264","Tags":{"k":"v"}}`},
	{0, `{"StreamName":"x","DeviceName":"d","KmsKeyId":"k","StreamStorageConfiguration":{"DefaultStorageTier":"HOT"}}`},
	{1, `{"StreamName":"cam"}`},
	{1, `{"StreamARN":"arn:aws:kinesisvideo:eu-west-1:123456789012:stream/cam/1"}`},
	{2, `{"MaxResults":2,"StreamNameCondition":{"ComparisonOperator":"BEGINS_WITH","ComparisonValue":"ca"}}`},
	{2, `{"NextToken":"Y2Ft"}`},
	{3, `{"StreamName":"cam","CurrentVersion":"abc","MediaType":"video/h265"}`},
	{4, `{"StreamName":"cam","CurrentVersion":"abc","Operation":"INCREASE_DATA_RETENTION","DataRetentionChangeInHours":1}`},
	{5, `{"StreamName":"cam","APIName":"GET_MEDIA"}`},
	{6, `{"StreamName":"cam","Tags":{"a":"b","c":""}}`},
	{7, `{"StreamName":"cam","TagKeyList":["a"]}`},
	{8, `{"StreamName":"cam","NextToken":"x"}`},
	{9, `{"ResourceARN":"arn:aws:kinesisvideo:eu-west-1:123456789012:stream/cam/1","Tags":[{"Key":"k","Value":"v"}]}`},
	{10, `{"ResourceARN":"arn:aws:kinesisvideo:eu-west-1:123456789012:stream/cam/1","TagKeyList":["k"]}`},
	{11, `{"ResourceARN":"arn:aws:kinesisvideo:eu-west-1:123456789012:stream/cam/1"}`},
	{12, `{"StreamName":"cam","ImageGenerationConfiguration":{"Status":"ENABLED","ImageSelectorType":"PRODUCER_TIMESTAMP","DestinationConfig":{"Uri":"s3://bucket/p","DestinationRegion":"eu-west-1"},"SamplingInterval":3000,"Format":"JPEG","FormatConfig":{"JPEGQuality":"80"},"WidthPixels":320}}`},
	{13, `{"StreamName":"cam","NotificationConfiguration":{"Status":"ENABLED","DestinationConfig":{"Uri":"arn:aws:sns:eu-west-1:123456789012:topic"}}}`},
	{14, `{"StreamName":"cam","CurrentVersion":"abc","StreamStorageConfiguration":{"DefaultStorageTier":"WARM"}}`},
	{15, `{"StreamName":"cam","EdgeConfig":{"HubDeviceArn":"arn:aws:iot:eu-west-1:123456789012:thing/hub","RecorderConfig":{"MediaSourceConfig":{"MediaUriSecretArn":"arn:aws:secretsmanager:eu-west-1:123456789012:secret:cam-url","MediaUriType":"RTSP_URI"},"ScheduleConfig":{"ScheduleExpression":"0 0 * * * ?","DurationInSeconds":600}},"UploaderConfig":{"ScheduleConfig":{"ScheduleExpression":"0 0 * * * ?","DurationInSeconds":60}},"DeletionConfig":{"EdgeRetentionInHours":24,"LocalSizeConfig":{"MaxLocalMediaSizeInMB":1000,"StrategyOnFullSize":"DELETE_OLDEST_MEDIA"},"DeleteAfterUpload":false}}}`},
	{16, `{"StreamName":"cam"}`},
	{17, `{"HubDeviceArn":"arn:aws:iot:eu-west-1:123456789012:thing/hub","MaxResults":5}`},
	{18, `{"StreamName":"cam"}`},
	{18, `{"StreamName":"cam","MaxResults":2,"FragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":1795580000.5,"EndTimestamp":1795580009}}}`},
	{18, `{"StreamName":"cam","NextToken":"MTc5NTU4MDAwMDUwMA==","FragmentSelector":{"FragmentSelectorType":"SERVER_TIMESTAMP","TimestampRange":{"StartTimestamp":0,"EndTimestamp":4e9}}}`},
	{19, `{"StreamName":"cam","PlaybackMode":"ON_DEMAND","HLSFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":1795580000.5,"EndTimestamp":1795580009}},"ContainerFormat":"MPEG_TS","DiscontinuityMode":"ON_DISCONTINUITY","DisplayFragmentTimestamp":"ALWAYS","Expires":300,"MaxMediaPlaylistFragmentResults":5}`},
	{19, `{"StreamName":"cam","PlaybackMode":"LIVE"}`},
	{20, `{"StreamName":"cam","PlaybackMode":"LIVE_REPLAY","DASHFragmentSelector":{"FragmentSelectorType":"SERVER_TIMESTAMP","TimestampRange":{"StartTimestamp":1700000000}},"DisplayFragmentNumber":"ALWAYS","Expires":300,"MaxManifestFragmentResults":10}`},
	{21, `{"StreamName":"cam","ImageSelectorType":"PRODUCER_TIMESTAMP","StartTimestamp":1700000000,"EndTimestamp":1700000010,"SamplingInterval":3000,"Format":"JPEG","FormatConfig":{"JPEGQuality":"50"},"WidthPixels":64,"MaxResults":2}`},
	{21, `{"StreamName":"cam","ImageSelectorType":"SERVER_TIMESTAMP","StartTimestamp":1700000000,"EndTimestamp":1700000300,"SamplingInterval":200,"Format":"PNG","NextToken":"MTcwMDAwMDAwMDAwMA=="}`},
	{22, `{"StreamName":"cam","StartSelector":{"StartSelectorType":"EARLIEST"}}`},
	{22, `{"StreamName":"cam","StartSelector":{"StartSelectorType":"PRODUCER_TIMESTAMP","StartTimestamp":1795580004}}`},
	{22, `{"StreamName":"cam","StartSelector":{"StartSelectorType":"CONTINUATION_TOKEN","ContinuationToken":"10001795580000000000000000000000"}}`},
	{23, `{"StreamName":"cam","Fragments":["10001795580000000000000000000000"]}`},
	{24, `{"StreamName":"cam","ClipFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":1795580000.5,"EndTimestamp":1795580003}}}`},
	{25, `{"StreamName":"cam"}`},
	{26, `{"StreamName":"cam"}`},
	{27, `{"StreamName":"cam"}`},
	{28, `{"StreamName":"cam"}`},
	{29, `{"StreamARN":"arn:aws:kinesisvideo:eu-west-1:123456789012:stream/nope/1","CurrentVersion":"1"}`},
}

// FuzzJSONOperations sends fuzzed JSON bodies to the real request handler
// (in process, without the network or authentication) over an engine on a
// temporary store holding one recorded stream. Nothing may panic, and the
// answer is 200 with a JSON body (or a hijacked media response), or a KVS
// error of a client-error status: a body that makes the server answer 5xx
// is a bug.
func FuzzJSONOperations(f *testing.F) {
	ts := startServerWith(f, "", func(o *Options) { o.Auth = nil })
	createMediaStream(f, ts, "cam", 24)
	c := loadCapture(f, "real-producer-h264-aac-relative")
	res := putUpload(f, ts, "cam", "RELATIVE", "1795580000.500", c, 0)
	persisted := res.events("PERSISTED")
	if len(persisted) == 0 {
		f.Fatalf("upload: status %d, acks %+v", res.status, res.acks)
	}
	for _, s := range fuzzSeedBodies {
		f.Add(s.op, []byte(s.body))
	}
	srv := ts.srv
	// Seeds naming this run's stream ARN, version and fragments.
	ctx := fuzzCall(srv, "/describeStream", []byte(`{"StreamName":"cam"}`))
	var desc struct {
		StreamInfo struct{ StreamARN, Version string }
	}
	if err := json.Unmarshal(ctx.Response.Body(), &desc); err != nil || desc.StreamInfo.StreamARN == "" {
		f.Fatalf("describeStream: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	arn, version, num := desc.StreamInfo.StreamARN, desc.StreamInfo.Version, persisted[0].FragmentNumber
	for _, s := range []struct {
		op   uint8
		body string
	}{
		{9, `{"ResourceARN":%[1]q,"Tags":[{"Key":"k","Value":"v"}]}`},
		{11, `{"ResourceARN":%[1]q}`},
		{3, `{"StreamARN":%[1]q,"CurrentVersion":%[2]q,"DeviceName":"dev"}`},
		{4, `{"StreamARN":%[1]q,"CurrentVersion":%[2]q,"Operation":"DECREASE_DATA_RETENTION","DataRetentionChangeInHours":1}`},
		{14, `{"StreamARN":%[1]q,"CurrentVersion":%[2]q,"StreamStorageConfiguration":{"DefaultStorageTier":"HOT"}}`},
		{22, `{"StreamARN":%[1]q,"StartSelector":{"StartSelectorType":"FRAGMENT_NUMBER","AfterFragmentNumber":%[3]q}}`},
		{23, `{"StreamName":"cam","Fragments":[%[3]q]}`},
	} {
		f.Add(s.op, []byte(fmt.Sprintf(s.body, arn, version, num)))
	}
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		path := fuzzOps[int(op)%len(fuzzOps)]
		ctx := fuzzCall(srv, path, body)

		status := ctx.Response.StatusCode()
		out := ctx.Response.Body()
		if status == http.StatusOK {
			if ctx.Hijacked() || path == "/getClip" {
				return // a media response, written to the connection
			}
			if !json.Valid(out) {
				t.Fatalf("%s %q: 200 with a body that is not JSON: %q", path, body, out)
			}
			return
		}
		// 501: a deliberate NotImplementedException (GetImages without
		// ffmpeg on the box).
		if status < 400 || (status >= 500 && status != http.StatusNotImplemented) {
			t.Fatalf("%s %q: status %d: %s", path, body, status, out)
		}
		var e struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(out, &e); err != nil || e.Type == "" || e.Type != string(ctx.Response.Header.Peek("x-amzn-ErrorType")) {
			t.Fatalf("%s %q: status %d with an error body that is not a KVS error: %q", path, body, status, out)
		}
	})
}

// fuzzCall runs one POST through the server's request handler in process.
func fuzzCall(srv *Server, path string, body []byte) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod(http.MethodPost)
	req.SetRequestURI(path)
	req.Header.SetContentType("application/json")
	req.SetBody(body)
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	srv.handle(ctx)
	return ctx
}
