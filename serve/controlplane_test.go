package serve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
	"github.com/aws/smithy-go"
)

// wantAPIError fails unless err is an API error with the given code.
func wantAPIError(t *testing.T, err error, code string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want %s, got %v", code, err)
	}
	if ae.ErrorCode() != code {
		t.Fatalf("want %s, got %s: %s", code, ae.ErrorCode(), ae.ErrorMessage())
	}
}

func TestStreamLifecycleWithGoSDK(t *testing.T) {
	ts := startServer(t, "")
	c := ts.client(testSecret)
	ctx := context.Background()

	before := time.Now().Add(-time.Second)
	out, err := c.CreateStream(ctx, &kinesisvideo.CreateStreamInput{
		StreamName:           aws.String("cam-1"),
		DeviceName:           aws.String("pi.garage"),
		MediaType:            aws.String("video/h264,audio/aac"),
		DataRetentionInHours: aws.Int32(24),
		Tags:                 map[string]string{"site": "north", "owner": "ops"},
	})
	if err != nil {
		t.Fatal(err)
	}
	arn := aws.ToString(out.StreamARN)
	if !strings.HasPrefix(arn, "arn:aws:kinesisvideo:"+testRegion+":123456789012:stream/cam-1/") {
		t.Fatalf("ARN %q", arn)
	}

	d, err := c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("cam-1")})
	if err != nil {
		t.Fatal(err)
	}
	si := d.StreamInfo
	if aws.ToString(si.StreamARN) != arn || si.Status != types.StatusActive || aws.ToInt32(si.DataRetentionInHours) != 24 ||
		aws.ToString(si.DeviceName) != "pi.garage" || aws.ToString(si.MediaType) != "video/h264,audio/aac" {
		t.Fatalf("describe: %+v", si)
	}
	if !strings.HasPrefix(aws.ToString(si.KmsKeyId), "arn:aws:kms:"+testRegion) {
		t.Fatalf("default KMS key %q", aws.ToString(si.KmsKeyId))
	}
	if si.CreationTime == nil || si.CreationTime.Before(before) || si.CreationTime.After(time.Now().Add(time.Second)) {
		t.Fatalf("creation time %v", si.CreationTime)
	}
	// The ARN's suffix is the creation time in milliseconds.
	if !strings.HasSuffix(arn, fmt.Sprintf("/%d", si.CreationTime.UnixMilli())) {
		t.Fatalf("ARN %s does not end in creation millis %d", arn, si.CreationTime.UnixMilli())
	}
	v1 := aws.ToString(si.Version)

	// Describe by ARN gives the same stream.
	d2, err := c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamARN: aws.String(arn)})
	if err != nil || aws.ToString(d2.StreamInfo.StreamName) != "cam-1" {
		t.Fatalf("describe by ARN: %v %+v", err, d2)
	}

	// UpdateStream with the current version changes it and the version.
	if _, err := c.UpdateStream(ctx, &kinesisvideo.UpdateStreamInput{StreamName: aws.String("cam-1"), CurrentVersion: aws.String(v1), MediaType: aws.String("video/h265")}); err != nil {
		t.Fatal(err)
	}
	d, _ = c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("cam-1")})
	v2 := aws.ToString(d.StreamInfo.Version)
	if v2 == v1 || aws.ToString(d.StreamInfo.MediaType) != "video/h265" || aws.ToString(d.StreamInfo.DeviceName) != "pi.garage" {
		t.Fatalf("after update: %+v", d.StreamInfo)
	}
	// A stale version is refused and changes nothing.
	_, err = c.UpdateStream(ctx, &kinesisvideo.UpdateStreamInput{StreamName: aws.String("cam-1"), CurrentVersion: aws.String(v1), MediaType: aws.String("video/h264")})
	var vm *types.VersionMismatchException
	if !errors.As(err, &vm) {
		t.Fatalf("stale update: %v", err)
	}

	// Retention: increase, decrease, and out-of-range changes.
	if _, err := c.UpdateDataRetention(ctx, &kinesisvideo.UpdateDataRetentionInput{StreamARN: aws.String(arn), CurrentVersion: aws.String(v2),
		Operation: types.UpdateDataRetentionOperationIncreaseDataRetention, DataRetentionChangeInHours: aws.Int32(48)}); err != nil {
		t.Fatal(err)
	}
	d, _ = c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("cam-1")})
	if aws.ToInt32(d.StreamInfo.DataRetentionInHours) != 72 {
		t.Fatalf("retention %d, want 72", aws.ToInt32(d.StreamInfo.DataRetentionInHours))
	}
	v3 := aws.ToString(d.StreamInfo.Version)
	_, err = c.UpdateDataRetention(ctx, &kinesisvideo.UpdateDataRetentionInput{StreamName: aws.String("cam-1"), CurrentVersion: aws.String(v3),
		Operation: types.UpdateDataRetentionOperationDecreaseDataRetention, DataRetentionChangeInHours: aws.Int32(100)})
	var ia *types.InvalidArgumentException
	if !errors.As(err, &ia) {
		t.Fatalf("decrease below zero: %v", err)
	}
	_, err = c.UpdateDataRetention(ctx, &kinesisvideo.UpdateDataRetentionInput{StreamName: aws.String("cam-1"), CurrentVersion: aws.String(v3),
		Operation: types.UpdateDataRetentionOperationIncreaseDataRetention, DataRetentionChangeInHours: aws.Int32(87600)})
	if !errors.As(err, &ia) {
		t.Fatalf("increase beyond 87600: %v", err)
	}
	_, err = c.UpdateDataRetention(ctx, &kinesisvideo.UpdateDataRetentionInput{StreamName: aws.String("cam-1"), CurrentVersion: aws.String(v2),
		Operation: types.UpdateDataRetentionOperationDecreaseDataRetention, DataRetentionChangeInHours: aws.Int32(1)})
	if !errors.As(err, &vm) {
		t.Fatalf("retention with stale version: %v", err)
	}
	if _, err := c.UpdateDataRetention(ctx, &kinesisvideo.UpdateDataRetentionInput{StreamName: aws.String("cam-1"), CurrentVersion: aws.String(v3),
		Operation: types.UpdateDataRetentionOperationDecreaseDataRetention, DataRetentionChangeInHours: aws.Int32(72)}); err != nil {
		t.Fatalf("decrease to zero: %v", err)
	}
	d, _ = c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("cam-1")})
	if aws.ToInt32(d.StreamInfo.DataRetentionInHours) != 0 {
		t.Fatalf("retention %d, want 0", aws.ToInt32(d.StreamInfo.DataRetentionInHours))
	}

	// Every data-plane API name gets this server's endpoint.
	for _, api := range types.APIName("").Values() {
		ep, err := c.GetDataEndpoint(ctx, &kinesisvideo.GetDataEndpointInput{StreamName: aws.String("cam-1"), APIName: api})
		if err != nil || aws.ToString(ep.DataEndpoint) != ts.URL {
			t.Fatalf("GetDataEndpoint %s: %v %v", api, err, ep)
		}
	}

	// Duplicate name.
	_, err = c.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("cam-1")})
	var inUse *types.ResourceInUseException
	if !errors.As(err, &inUse) {
		t.Fatalf("duplicate create: %v", err)
	}

	// Delete: a wrong version is refused, the right one works, then the
	// stream is gone and its name is free again.
	_, err = c.DeleteStream(ctx, &kinesisvideo.DeleteStreamInput{StreamARN: aws.String(arn), CurrentVersion: aws.String(v1)})
	if !errors.As(err, &vm) {
		t.Fatalf("delete with stale version: %v", err)
	}
	if _, err := c.DeleteStream(ctx, &kinesisvideo.DeleteStreamInput{StreamARN: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("cam-1")})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("describe after delete: %v", err)
	}
	_, err = c.DeleteStream(ctx, &kinesisvideo.DeleteStreamInput{StreamARN: aws.String(arn)})
	if !errors.As(err, &nf) {
		t.Fatalf("second delete: %v", err)
	}
	// A recreated stream's ARN carries its own creation time, so the old
	// ARN does not name it (kvs-api.md §3: the creation-time suffix
	// distinguishes a recreated stream). ARNs have millisecond resolution:
	// wait for the clock to leave the first creation's millisecond.
	for time.Now().UnixMilli() <= si.CreationTime.UnixMilli() {
		time.Sleep(time.Millisecond)
	}
	out2, err := c.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("cam-1")})
	if err != nil {
		t.Fatal(err)
	}
	arn2 := aws.ToString(out2.StreamARN)
	if arn2 == arn {
		t.Fatalf("recreated stream kept the old ARN %s", arn)
	}
	_, err = c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamARN: aws.String(arn)})
	if !errors.As(err, &nf) {
		t.Fatalf("old ARN after recreate: %v", err)
	}
	d, err = c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamARN: aws.String(arn2)})
	if err != nil || aws.ToString(d.StreamInfo.StreamName) != "cam-1" {
		t.Fatalf("new ARN after recreate: %v", err)
	}
}

func TestListStreamsPagination(t *testing.T) {
	ts := startServer(t, "")
	c := ts.client(testSecret)
	ctx := context.Background()
	for i := 0; i < 25; i++ {
		name := fmt.Sprintf("cam-%02d", i)
		if i%5 == 0 {
			name = fmt.Sprintf("door-%02d", i)
		}
		if _, err := c.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String(name)}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	seenTokens := map[string]bool{}
	p := kinesisvideo.NewListStreamsPaginator(c, &kinesisvideo.ListStreamsInput{
		MaxResults:          aws.Int32(6),
		StreamNameCondition: &types.StreamNameCondition{ComparisonOperator: types.ComparisonOperatorBeginsWith, ComparisonValue: aws.String("cam-")},
	})
	pages := 0
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(page.StreamInfoList) > 6 {
			t.Fatalf("page of %d > MaxResults", len(page.StreamInfoList))
		}
		for _, s := range page.StreamInfoList {
			names = append(names, aws.ToString(s.StreamName))
		}
		if tok := aws.ToString(page.NextToken); tok != "" {
			if seenTokens[tok] {
				t.Fatalf("token %q repeated", tok)
			}
			seenTokens[tok] = true
		}
	}
	if len(names) != 20 || pages != 4 {
		t.Fatalf("got %d names in %d pages: %v", len(names), pages, names)
	}
	for i := 1; i < len(names); i++ {
		if names[i] <= names[i-1] || !strings.HasPrefix(names[i], "cam-") {
			t.Fatalf("order/prefix broken at %d: %v", i, names)
		}
	}
	all, err := c.ListStreams(ctx, &kinesisvideo.ListStreamsInput{})
	if err != nil {
		t.Fatalf("list all: %v", err)
	}
	if len(all.StreamInfoList) != 25 || all.NextToken != nil {
		t.Fatalf("list all: %d streams, next token %v", len(all.StreamInfoList), all.NextToken)
	}
	_, err = c.ListStreams(ctx, &kinesisvideo.ListStreamsInput{NextToken: aws.String("Zm9vYmFy")})
	wantAPIError(t, err, "InvalidArgumentException")
	_, err = c.ListStreams(ctx, &kinesisvideo.ListStreamsInput{MaxResults: aws.Int32(10001)})
	wantAPIError(t, err, "InvalidArgumentException")
}

func TestTagging(t *testing.T) {
	ts := startServer(t, "")
	c := ts.client(testSecret)
	ctx := context.Background()
	out, err := c.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("tagged"), Tags: map[string]string{"a": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	arn := aws.ToString(out.StreamARN)
	d, _ := c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("tagged")})
	v0 := aws.ToString(d.StreamInfo.Version)

	if _, err := c.TagStream(ctx, &kinesisvideo.TagStreamInput{StreamName: aws.String("tagged"), Tags: map[string]string{"b": "2", "a": "one"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TagResource(ctx, &kinesisvideo.TagResourceInput{ResourceARN: aws.String(arn), Tags: []types.Tag{{Key: aws.String("c"), Value: aws.String("3")}}}); err != nil {
		t.Fatal(err)
	}
	lt, err := c.ListTagsForStream(ctx, &kinesisvideo.ListTagsForStreamInput{StreamARN: aws.String(arn)})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(lt.Tags) != "map[a:one b:2 c:3]" {
		t.Fatalf("tags %v", lt.Tags)
	}
	if _, err := c.UntagStream(ctx, &kinesisvideo.UntagStreamInput{StreamName: aws.String("tagged"), TagKeyList: []string{"a", "nope"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UntagResource(ctx, &kinesisvideo.UntagResourceInput{ResourceARN: aws.String(arn), TagKeyList: []string{"b"}}); err != nil {
		t.Fatal(err)
	}
	lr, err := c.ListTagsForResource(ctx, &kinesisvideo.ListTagsForResourceInput{ResourceARN: aws.String(arn)})
	if err != nil || fmt.Sprint(lr.Tags) != "map[c:3]" {
		t.Fatalf("tags after untag: %v %v", err, lr.Tags)
	}
	d, _ = c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("tagged")})
	if aws.ToString(d.StreamInfo.Version) == v0 {
		t.Fatal("tagging did not change the version")
	}

	// 50 tags fit, the 51st does not, and a refused request changes nothing.
	many := map[string]string{}
	for i := 0; i < 49; i++ {
		many[fmt.Sprintf("k%02d", i)] = "v"
	}
	if _, err := c.TagStream(ctx, &kinesisvideo.TagStreamInput{StreamName: aws.String("tagged"), Tags: many}); err != nil {
		t.Fatal(err)
	}
	_, err = c.TagStream(ctx, &kinesisvideo.TagStreamInput{StreamName: aws.String("tagged"), Tags: map[string]string{"extra": "x"}})
	var tl *types.TagsPerResourceExceededLimitException
	if !errors.As(err, &tl) {
		t.Fatalf("51st tag: %v", err)
	}
	_, err = c.TagResource(ctx, &kinesisvideo.TagResourceInput{ResourceARN: aws.String(arn), Tags: []types.Tag{{Key: aws.String("extra"), Value: aws.String("x")}}})
	if !errors.As(err, &tl) {
		t.Fatalf("51st tag by ARN: %v", err)
	}
	lt, _ = c.ListTagsForStream(ctx, &kinesisvideo.ListTagsForStreamInput{StreamName: aws.String("tagged")})
	if len(lt.Tags) != 50 || lt.Tags["extra"] != "" {
		t.Fatalf("%d tags after refused tagging", len(lt.Tags))
	}
	fiftyOne := map[string]string{}
	for i := 0; i < 51; i++ {
		fiftyOne[fmt.Sprintf("n%02d", i)] = "v"
	}
	_, err = c.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("too-many"), Tags: fiftyOne})
	if !errors.As(err, &tl) {
		t.Fatalf("create with 51 tags: %v", err)
	}

	// Bad tag keys and ARNs.
	_, err = c.TagStream(ctx, &kinesisvideo.TagStreamInput{StreamName: aws.String("tagged"), Tags: map[string]string{"bad*key": "v"}})
	wantAPIError(t, err, "InvalidArgumentException")
	_, err = c.TagStream(ctx, &kinesisvideo.TagStreamInput{StreamName: aws.String("tagged"), Tags: map[string]string{"aws:reserved": "v"}})
	wantAPIError(t, err, "InvalidArgumentException")
	_, err = c.ListTagsForStream(ctx, &kinesisvideo.ListTagsForStreamInput{StreamARN: aws.String("arn:aws:s3:::bucket")})
	var irf *types.InvalidResourceFormatException
	if !errors.As(err, &irf) {
		t.Fatalf("malformed ARN for ListTagsForStream: %v", err)
	}
	_, err = c.ListTagsForResource(ctx, &kinesisvideo.ListTagsForResourceInput{ResourceARN: aws.String("arn:aws:kinesisvideo:eu-west-1:123456789012:stream/ghost/1")})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("unknown ARN: %v", err)
	}
	_, err = c.TagStream(ctx, &kinesisvideo.TagStreamInput{StreamName: aws.String("ghost"), Tags: map[string]string{"a": "b"}})
	if !errors.As(err, &nf) {
		t.Fatalf("tag unknown stream: %v", err)
	}
}

func TestValidationErrors(t *testing.T) {
	ts := startServer(t, "")
	c := ts.client(testSecret)
	ctx := context.Background()
	cases := []struct {
		name string
		call func() error
	}{
		{"name with space", func() error {
			_, err := c.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("bad name")})
			return err
		}},
		{"name too long", func() error {
			_, err := c.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String(strings.Repeat("a", 257))})
			return err
		}},
		{"empty name", func() error {
			_, err := c.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("")})
			return err
		}},
		{"bad media type", func() error {
			_, err := c.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("x"), MediaType: aws.String("h264")})
			return err
		}},
		{"negative retention", func() error {
			_, err := c.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("x"), DataRetentionInHours: aws.Int32(-1)})
			return err
		}},
		{"retention beyond ten years", func() error {
			_, err := c.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("x"), DataRetentionInHours: aws.Int32(87601)})
			return err
		}},
		{"describe without name or ARN", func() error {
			_, err := c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{})
			return err
		}},
		{"malformed ARN", func() error {
			_, err := c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamARN: aws.String("arn:nope")})
			return err
		}},
		{"bad version chars", func() error {
			_, err := c.UpdateStream(ctx, &kinesisvideo.UpdateStreamInput{StreamName: aws.String("x"), CurrentVersion: aws.String("v-1")})
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantAPIError(t, tc.call(), "InvalidArgumentException") })
	}
	// None of those created anything.
	l, err := c.ListStreams(ctx, &kinesisvideo.ListStreamsInput{})
	if err != nil || len(l.StreamInfoList) != 0 {
		t.Fatalf("list after invalid requests: %v %d", err, len(l.StreamInfoList))
	}
	_, err = c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("nope")})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("unknown stream: %v", err)
	}
	_, err = c.GetDataEndpoint(ctx, &kinesisvideo.GetDataEndpointInput{StreamName: aws.String("nope"), APIName: types.APINameGetMedia})
	if !errors.As(err, &nf) {
		t.Fatalf("endpoint for unknown stream: %v", err)
	}
}

func TestImageAndNotificationConfiguration(t *testing.T) {
	ts := startServer(t, "")
	c := ts.client(testSecret)
	ctx := context.Background()
	if _, err := c.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("img"), DataRetentionInHours: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("noret")}); err != nil {
		t.Fatal(err)
	}
	d, err := c.DescribeImageGenerationConfiguration(ctx, &kinesisvideo.DescribeImageGenerationConfigurationInput{StreamName: aws.String("img")})
	if err != nil || d.ImageGenerationConfiguration != nil {
		t.Fatalf("initial image config: %v %+v", err, d)
	}
	cfg := &types.ImageGenerationConfiguration{
		Status:            types.ConfigurationStatusEnabled,
		ImageSelectorType: types.ImageSelectorTypeServerTimestamp,
		DestinationConfig: &types.ImageGenerationDestinationConfig{Uri: aws.String("s3://bucket/prefix"), DestinationRegion: aws.String("eu-west-1")},
		SamplingInterval:  aws.Int32(1000),
		Format:            types.FormatJpeg,
		FormatConfig:      map[string]string{"JPEGQuality": "80"},
		WidthPixels:       aws.Int32(640),
	}
	if _, err := c.UpdateImageGenerationConfiguration(ctx, &kinesisvideo.UpdateImageGenerationConfigurationInput{StreamName: aws.String("img"), ImageGenerationConfiguration: cfg}); err != nil {
		t.Fatal(err)
	}
	d, err = c.DescribeImageGenerationConfiguration(ctx, &kinesisvideo.DescribeImageGenerationConfigurationInput{StreamName: aws.String("img")})
	if err != nil {
		t.Fatal(err)
	}
	g := d.ImageGenerationConfiguration
	if g == nil || g.Status != types.ConfigurationStatusEnabled || aws.ToString(g.DestinationConfig.Uri) != "s3://bucket/prefix" ||
		aws.ToInt32(g.SamplingInterval) != 1000 || g.Format != types.FormatJpeg || g.FormatConfig["JPEGQuality"] != "80" ||
		aws.ToInt32(g.WidthPixels) != 640 || g.HeightPixels != nil {
		t.Fatalf("image config echo: %+v", g)
	}
	// Retention 0 cannot generate images.
	_, err = c.UpdateImageGenerationConfiguration(ctx, &kinesisvideo.UpdateImageGenerationConfigurationInput{StreamName: aws.String("noret"), ImageGenerationConfiguration: cfg})
	var ndr *types.NoDataRetentionException
	if !errors.As(err, &ndr) {
		t.Fatalf("image config without retention: %v", err)
	}
	bad := *cfg
	bad.SamplingInterval = aws.Int32(10)
	_, err = c.UpdateImageGenerationConfiguration(ctx, &kinesisvideo.UpdateImageGenerationConfigurationInput{StreamName: aws.String("img"), ImageGenerationConfiguration: &bad})
	wantAPIError(t, err, "InvalidArgumentException")
	// Omitting the configuration deletes it.
	if _, err := c.UpdateImageGenerationConfiguration(ctx, &kinesisvideo.UpdateImageGenerationConfigurationInput{StreamName: aws.String("img")}); err != nil {
		t.Fatal(err)
	}
	d, _ = c.DescribeImageGenerationConfiguration(ctx, &kinesisvideo.DescribeImageGenerationConfigurationInput{StreamName: aws.String("img")})
	if d.ImageGenerationConfiguration != nil {
		t.Fatal("image config not deleted")
	}

	nc := &types.NotificationConfiguration{Status: types.ConfigurationStatusEnabled, DestinationConfig: &types.NotificationDestinationConfig{Uri: aws.String("arn:aws:sns:eu-west-1:123456789012:topic")}}
	if _, err := c.UpdateNotificationConfiguration(ctx, &kinesisvideo.UpdateNotificationConfigurationInput{StreamName: aws.String("img"), NotificationConfiguration: nc}); err != nil {
		t.Fatal(err)
	}
	n, err := c.DescribeNotificationConfiguration(ctx, &kinesisvideo.DescribeNotificationConfigurationInput{StreamName: aws.String("img")})
	if err != nil || n.NotificationConfiguration == nil || aws.ToString(n.NotificationConfiguration.DestinationConfig.Uri) != "arn:aws:sns:eu-west-1:123456789012:topic" {
		t.Fatalf("notification echo: %v %+v", err, n)
	}
	_, err = c.DescribeNotificationConfiguration(ctx, &kinesisvideo.DescribeNotificationConfigurationInput{StreamName: aws.String("ghost")})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("notification of unknown stream: %v", err)
	}

	// Storage configuration.
	sc, err := c.DescribeStreamStorageConfiguration(ctx, &kinesisvideo.DescribeStreamStorageConfigurationInput{StreamName: aws.String("img")})
	if err != nil || sc.StreamStorageConfiguration.DefaultStorageTier != types.DefaultStorageTierHot {
		t.Fatalf("storage config: %v %+v", err, sc)
	}
	ds, _ := c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("img")})
	if _, err := c.UpdateStreamStorageConfiguration(ctx, &kinesisvideo.UpdateStreamStorageConfigurationInput{StreamName: aws.String("img"), CurrentVersion: ds.StreamInfo.Version,
		StreamStorageConfiguration: &types.StreamStorageConfiguration{DefaultStorageTier: types.DefaultStorageTierWarm}}); err != nil {
		t.Fatal(err)
	}
	sc, _ = c.DescribeStreamStorageConfiguration(ctx, &kinesisvideo.DescribeStreamStorageConfigurationInput{StreamName: aws.String("img")})
	if sc.StreamStorageConfiguration.DefaultStorageTier != types.DefaultStorageTierWarm {
		t.Fatalf("storage tier not updated: %+v", sc.StreamStorageConfiguration)
	}
}

func TestUnsupportedOperations(t *testing.T) {
	ts := startServer(t, "")
	c := ts.client(testSecret)
	_, err := c.CreateSignalingChannel(context.Background(), &kinesisvideo.CreateSignalingChannelInput{ChannelName: aws.String("ch")})
	wantAPIError(t, err, "NotImplementedException")
	var re interface{ HTTPStatusCode() int }
	if !errors.As(err, &re) || re.HTTPStatusCode() != 501 {
		t.Fatalf("status of unsupported op: %v", err)
	}
}

func TestAuthentication(t *testing.T) {
	ts := startServer(t, "")
	ctx := context.Background()
	_, err := ts.client("wrong-secret").ListStreams(ctx, &kinesisvideo.ListStreamsInput{})
	wantAPIError(t, err, "InvalidSignatureException")

	bad := kinesisvideo.New(kinesisvideo.Options{Region: testRegion, BaseEndpoint: aws.String(ts.URL), RetryMaxAttempts: 1,
		Credentials: aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIDUNKNOWN", SecretAccessKey: testSecret}, nil
		}))})
	_, err = bad.ListStreams(ctx, &kinesisvideo.ListStreamsInput{})
	wantAPIError(t, err, "UnrecognizedClientException")

	// Requests signed ten minutes ago or ahead are refused.
	for _, skew := range []time.Duration{-10 * time.Minute, 10 * time.Minute} {
		st, hdr, body := ts.raw(t, "/createStream", []byte(`{"StreamName":"late"}`), time.Now().Add(skew), testSecret)
		if st != 403 || hdr.Get("x-amzn-ErrorType") != "InvalidSignatureException" {
			t.Fatalf("skew %v: %d %s %s", skew, st, hdr.Get("x-amzn-ErrorType"), body)
		}
	}
	// A signature over other bytes than those sent is refused.
	st, hdr, _ := ts.rawTampered(t, "/createStream", []byte(`{"StreamName":"a"}`), []byte(`{"StreamName":"b"}`))
	if st != 403 || hdr.Get("x-amzn-ErrorType") != "InvalidSignatureException" {
		t.Fatalf("tampered body: %d %s", st, hdr.Get("x-amzn-ErrorType"))
	}
	// No signature at all.
	resp, err := http.Post(ts.URL+"/listStreams", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || resp.Header.Get("x-amzn-ErrorType") != "MissingAuthenticationTokenException" {
		t.Fatalf("unsigned: %d %s", resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"))
	}
	l, err := ts.client(testSecret).ListStreams(ctx, &kinesisvideo.ListStreamsInput{})
	if err != nil || len(l.StreamInfoList) != 0 {
		t.Fatalf("refused requests created streams: %v %v", err, l)
	}
}
