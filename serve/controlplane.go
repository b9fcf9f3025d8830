package serve

import (
	"encoding/base64"
	"net/http"

	"github.com/kvsedge/kvsedge/engine"
)

// controlPlaneRoutes maps each kinesisvideo path to its handler. Paths are
// case-sensitive; the three ARN tagging operations are capitalised in the
// model.
func controlPlaneRoutes() map[string]jsonHandler {
	return map[string]jsonHandler{
		"/createStream":                         (*Server).createStream,
		"/describeStream":                       (*Server).describeStream,
		"/listStreams":                          (*Server).listStreams,
		"/updateStream":                         (*Server).updateStream,
		"/deleteStream":                         (*Server).deleteStream,
		"/updateDataRetention":                  (*Server).updateDataRetention,
		"/getDataEndpoint":                      (*Server).getDataEndpoint,
		"/tagStream":                            (*Server).tagStream,
		"/untagStream":                          (*Server).untagStream,
		"/listTagsForStream":                    (*Server).listTagsForStream,
		"/TagResource":                          (*Server).tagResource,
		"/UntagResource":                        (*Server).untagResource,
		"/ListTagsForResource":                  (*Server).listTagsForResource,
		"/describeImageGenerationConfiguration": (*Server).describeImageGeneration,
		"/updateImageGenerationConfiguration":   (*Server).updateImageGeneration,
		"/describeNotificationConfiguration":    (*Server).describeNotification,
		"/updateNotificationConfiguration":      (*Server).updateNotification,
		"/describeStreamStorageConfiguration":   (*Server).describeStorageConfiguration,
		"/updateStreamStorageConfiguration":     (*Server).updateStorageConfiguration,
		"/startEdgeConfigurationUpdate":         (*Server).startEdgeConfigurationUpdate,
		"/describeEdgeConfiguration":            (*Server).describeEdgeConfiguration,
		"/deleteEdgeConfiguration":              (*Server).deleteEdgeConfiguration,
		"/listEdgeAgentConfigurations":          (*Server).listEdgeAgentConfigurations,
	}
}

// unsupportedRoutes are kinesisvideo operations kvsedge deliberately does not
// implement; they get a NotImplementedException naming themselves.
var unsupportedRoutes = map[string]struct{}{
	"/createSignalingChannel":              {},
	"/deleteSignalingChannel":              {},
	"/describeSignalingChannel":            {},
	"/getSignalingChannelEndpoint":         {},
	"/listSignalingChannels":               {},
	"/updateSignalingChannel":              {},
	"/describeMappedResourceConfiguration": {},
	"/describeMediaStorageConfiguration":   {},
	"/updateMediaStorageConfiguration":     {},
	"/v1/get-ice-server-config":            {},
	"/v1/send-alexa-offer-to-master":       {},
	"/joinStorageSession":                  {},
	"/joinStorageSessionAsViewer":          {},
}

// streamInfoJSON is the model's StreamInfo. CreationTime is epoch seconds
// with millisecond precision, a JSON number.
type streamInfoJSON struct {
	DeviceName           string  `json:"DeviceName,omitempty"`
	StreamName           string  `json:"StreamName"`
	StreamARN            string  `json:"StreamARN"`
	MediaType            string  `json:"MediaType,omitempty"`
	KmsKeyID             string  `json:"KmsKeyId,omitempty"`
	Version              string  `json:"Version"`
	Status               string  `json:"Status"`
	CreationTime         float64 `json:"CreationTime"`
	DataRetentionInHours int     `json:"DataRetentionInHours"`
}

func toStreamInfoJSON(s *engine.StreamInfo) streamInfoJSON {
	return streamInfoJSON{
		DeviceName:           s.DeviceName,
		StreamName:           s.Name,
		StreamARN:            s.ARN,
		MediaType:            s.MediaType,
		KmsKeyID:             s.KmsKeyID,
		Version:              s.Version,
		Status:               string(s.Status),
		CreationTime:         float64(s.CreationTime.UnixMilli()) / 1000,
		DataRetentionInHours: s.DataRetentionInHours,
	}
}

// streamRefIn is the StreamName|StreamARN pair most operations take.
type streamRefIn struct {
	StreamName *string
	StreamARN  *string
}

func (r streamRefIn) validate(v *validator) {
	v.streamRef(r.StreamName, r.StreamARN)
}

// ref converts a validated pair; neither present is InvalidArgument.
func (r streamRefIn) ref() (engine.StreamRef, *apiError) {
	var out engine.StreamRef
	if r.StreamName != nil {
		out.Name = *r.StreamName
	}
	if r.StreamARN != nil {
		out.ARN = *r.StreamARN
	}
	if out.Name == "" && out.ARN == "" {
		return out, invalidArgument("Either StreamName or StreamARN must be specified.")
	}
	return out, nil
}

type emptyOut struct{}

// --- CreateStream ---

type createStreamIn struct {
	StreamName                 *string
	DeviceName                 *string
	MediaType                  *string
	KmsKeyID                   *string `json:"KmsKeyId"`
	DataRetentionInHours       *int
	Tags                       map[string]string
	StreamStorageConfiguration *storageConfigJSON
}

type storageConfigJSON struct {
	DefaultStorageTier *string
}

func (s *Server) createStream(body []byte) (any, *apiError) {
	in, aerr := decode[createStreamIn](body)
	if aerr != nil {
		return nil, aerr
	}
	var v validator
	if v.required("StreamName", in.StreamName != nil) {
		v.strValue("StreamName", *in.StreamName, 1, 256, reStreamName)
	}
	v.str("DeviceName", in.DeviceName, 1, 128, reDeviceName)
	v.str("MediaType", in.MediaType, 1, 128, reMediaType)
	v.str("KmsKeyId", in.KmsKeyID, 1, 2048, reKmsKeyID)
	v.intRange("DataRetentionInHours", in.DataRetentionInHours, 0, -1)
	if in.Tags != nil {
		if len(in.Tags) > engine.MaxTagsPerStream {
			return nil, engineError(engine.ErrTooManyTags)
		}
		v.count("Tags", len(in.Tags), 1, engine.MaxTagsPerStream)
		v.tags("Tags", in.Tags)
	}
	if in.StreamStorageConfiguration != nil {
		if v.required("StreamStorageConfiguration.DefaultStorageTier", in.StreamStorageConfiguration.DefaultStorageTier != nil) {
			v.enum("StreamStorageConfiguration.DefaultStorageTier", in.StreamStorageConfiguration.DefaultStorageTier, engine.StorageTierHot, engine.StorageTierWarm)
		}
	}
	if aerr := v.err(); aerr != nil {
		return nil, aerr
	}
	cin := engine.CreateStreamInput{Name: *in.StreamName, Tags: in.Tags}
	setIf(&cin.DeviceName, in.DeviceName)
	setIf(&cin.MediaType, in.MediaType)
	setIf(&cin.KmsKeyID, in.KmsKeyID)
	if in.DataRetentionInHours != nil {
		if *in.DataRetentionInHours > engine.MaxRetentionHours {
			return nil, invalidArgument("DataRetentionInHours %d exceeds the maximum of %d hours.", *in.DataRetentionInHours, engine.MaxRetentionHours)
		}
		cin.DataRetentionInHours = *in.DataRetentionInHours
	}
	if in.StreamStorageConfiguration != nil {
		cin.StorageTier = *in.StreamStorageConfiguration.DefaultStorageTier
	}
	info, err := s.eng.CreateStream(cin)
	if err != nil {
		return nil, engineError(err)
	}
	return struct{ StreamARN string }{info.ARN}, nil
}

func setIf(dst *string, src *string) {
	if src != nil {
		*dst = *src
	}
}

// --- DescribeStream ---

func (s *Server) describeStream(body []byte) (any, *apiError) {
	info, aerr := s.streamFromBody(body)
	if aerr != nil {
		return nil, aerr
	}
	return struct{ StreamInfo streamInfoJSON }{toStreamInfoJSON(info)}, nil
}

// streamFromBody decodes and validates a body holding only a stream
// reference and resolves it.
func (s *Server) streamFromBody(body []byte) (*engine.StreamInfo, *apiError) {
	in, aerr := decode[streamRefIn](body)
	if aerr != nil {
		return nil, aerr
	}
	return s.resolve(*in, nil)
}

// resolve validates ref (plus whatever v already holds) and looks it up.
func (s *Server) resolve(r streamRefIn, v *validator) (*engine.StreamInfo, *apiError) {
	if v == nil {
		v = &validator{}
	}
	r.validate(v)
	if aerr := v.err(); aerr != nil {
		return nil, aerr
	}
	ref, aerr := r.ref()
	if aerr != nil {
		return nil, aerr
	}
	info, err := s.eng.Stream(ref)
	if err != nil {
		return nil, engineError(err)
	}
	return info, nil
}

// --- ListStreams ---

type listStreamsIn struct {
	MaxResults          *int
	NextToken           *string
	StreamNameCondition *struct {
		ComparisonOperator *string
		ComparisonValue    *string
	}
}

type listStreamsOut struct {
	StreamInfoList []streamInfoJSON
	NextToken      string `json:",omitempty"`
}

func (s *Server) listStreams(body []byte) (any, *apiError) {
	in, aerr := decode[listStreamsIn](body)
	if aerr != nil {
		return nil, aerr
	}
	var v validator
	v.intRange("MaxResults", in.MaxResults, 1, 10000)
	v.str("NextToken", in.NextToken, 0, 1024, reNextToken)
	prefix := ""
	if c := in.StreamNameCondition; c != nil {
		v.enum("StreamNameCondition.ComparisonOperator", c.ComparisonOperator, "BEGINS_WITH")
		v.str("StreamNameCondition.ComparisonValue", c.ComparisonValue, 1, 256, reStreamName)
		if c.ComparisonValue != nil {
			prefix = *c.ComparisonValue
		}
	}
	if aerr := v.err(); aerr != nil {
		return nil, aerr
	}
	limit := 10000
	if in.MaxResults != nil {
		limit = *in.MaxResults
	}
	after, aerr := decodeNameToken(in.NextToken)
	if aerr != nil {
		return nil, aerr
	}
	list, more := s.eng.ListStreams(prefix, after, limit)
	out := listStreamsOut{StreamInfoList: make([]streamInfoJSON, len(list))}
	for i, info := range list {
		out.StreamInfoList[i] = toStreamInfoJSON(info)
	}
	if more && len(list) > 0 {
		out.NextToken = encodeNameToken(list[len(list)-1].Name)
	}
	return out, nil
}

// A ListStreams NextToken is the standard base64 of the last stream name
// returned ("n:" + name), which fits the model's [a-zA-Z0-9+/=]* and never
// repeats while pages advance.
func encodeNameToken(name string) string {
	return base64.StdEncoding.EncodeToString([]byte("n:" + name))
}

func decodeNameToken(tok *string) (string, *apiError) {
	if tok == nil || *tok == "" {
		return "", nil
	}
	b, err := base64.StdEncoding.DecodeString(*tok)
	if err != nil || len(b) < 3 || string(b[:2]) != "n:" || !reStreamName.Match(b[2:]) {
		return "", invalidArgument("NextToken is not a token this service issued.")
	}
	return string(b[2:]), nil
}

// --- UpdateStream ---

type updateStreamIn struct {
	streamRefIn
	CurrentVersion *string
	DeviceName     *string
	MediaType      *string
}

func (s *Server) updateStream(body []byte) (any, *apiError) {
	in, aerr := decode[updateStreamIn](body)
	if aerr != nil {
		return nil, aerr
	}
	var v validator
	if v.required("CurrentVersion", in.CurrentVersion != nil) {
		v.strValue("CurrentVersion", *in.CurrentVersion, 1, 64, reVersion)
	}
	v.str("DeviceName", in.DeviceName, 1, 128, reDeviceName)
	v.str("MediaType", in.MediaType, 1, 128, reMediaType)
	info, aerr := s.resolve(in.streamRefIn, &v)
	if aerr != nil {
		return nil, aerr
	}
	err := s.eng.UpdateStream(engine.StreamRef{ARN: info.ARN}, *in.CurrentVersion, in.DeviceName, in.MediaType)
	if err != nil {
		return nil, engineError(err)
	}
	return emptyOut{}, nil
}

// --- DeleteStream ---

type deleteStreamIn struct {
	StreamARN      *string
	CurrentVersion *string
}

func (s *Server) deleteStream(body []byte) (any, *apiError) {
	in, aerr := decode[deleteStreamIn](body)
	if aerr != nil {
		return nil, aerr
	}
	var v validator
	if v.required("StreamARN", in.StreamARN != nil) {
		v.strValue("StreamARN", *in.StreamARN, 1, 1024, reARN)
	}
	v.str("CurrentVersion", in.CurrentVersion, 1, 64, reVersion)
	if aerr := v.err(); aerr != nil {
		return nil, aerr
	}
	cur := ""
	setIf(&cur, in.CurrentVersion)
	if err := s.eng.DeleteStream(*in.StreamARN, cur); err != nil {
		return nil, engineError(err)
	}
	return emptyOut{}, nil
}

// --- UpdateDataRetention ---

type updateDataRetentionIn struct {
	streamRefIn
	CurrentVersion             *string
	Operation                  *string
	DataRetentionChangeInHours *int
}

func (s *Server) updateDataRetention(body []byte) (any, *apiError) {
	in, aerr := decode[updateDataRetentionIn](body)
	if aerr != nil {
		return nil, aerr
	}
	var v validator
	if v.required("CurrentVersion", in.CurrentVersion != nil) {
		v.strValue("CurrentVersion", *in.CurrentVersion, 1, 64, reVersion)
	}
	if v.required("Operation", in.Operation != nil) {
		v.enum("Operation", in.Operation, "INCREASE_DATA_RETENTION", "DECREASE_DATA_RETENTION")
	}
	if v.required("DataRetentionChangeInHours", in.DataRetentionChangeInHours != nil) {
		v.intRange("DataRetentionChangeInHours", in.DataRetentionChangeInHours, 1, -1)
	}
	info, aerr := s.resolve(in.streamRefIn, &v)
	if aerr != nil {
		return nil, aerr
	}
	increase := *in.Operation == "INCREASE_DATA_RETENTION"
	err := s.eng.UpdateDataRetention(engine.StreamRef{ARN: info.ARN}, *in.CurrentVersion, increase, *in.DataRetentionChangeInHours)
	if err != nil {
		return nil, engineError(err)
	}
	return emptyOut{}, nil
}

// --- GetDataEndpoint ---

type getDataEndpointIn struct {
	streamRefIn
	APIName *string
}

var apiNames = []string{"PUT_MEDIA", "GET_MEDIA", "LIST_FRAGMENTS", "GET_MEDIA_FOR_FRAGMENT_LIST",
	"GET_HLS_STREAMING_SESSION_URL", "GET_DASH_STREAMING_SESSION_URL", "GET_CLIP", "GET_IMAGES"}

func (s *Server) getDataEndpoint(body []byte) (any, *apiError) {
	in, aerr := decode[getDataEndpointIn](body)
	if aerr != nil {
		return nil, aerr
	}
	var v validator
	if v.required("APIName", in.APIName != nil) {
		v.enum("APIName", in.APIName, apiNames...)
	}
	info, aerr := s.resolve(in.streamRefIn, &v)
	if aerr != nil {
		return nil, aerr
	}
	// In a cluster, a stream's producer uploads to its home node.
	if s.opts.Cluster != nil && *in.APIName == "PUT_MEDIA" {
		if home := s.opts.Cluster.Home(info.Name); home != "" {
			return struct{ DataEndpoint string }{home}, nil
		}
	}
	return struct{ DataEndpoint string }{s.opts.DataEndpoint}, nil
}

// --- Tagging by stream ---

type tagStreamIn struct {
	streamRefIn
	Tags map[string]string
}

// resolveTagRef is resolve for the *ForStream tagging operations, which
// report a malformed ARN as InvalidResourceFormatException.
func (s *Server) resolveTagRef(r streamRefIn, v *validator) (*engine.StreamInfo, *apiError) {
	if r.StreamARN != nil && !reARN.MatchString(*r.StreamARN) {
		return nil, newAPIError(http.StatusBadRequest, errInvalidResourceFormat, "The format of the StreamARN is invalid.")
	}
	return s.resolve(r, v)
}

func (s *Server) tagStream(body []byte) (any, *apiError) {
	in, aerr := decode[tagStreamIn](body)
	if aerr != nil {
		return nil, aerr
	}
	var v validator
	if v.required("Tags", in.Tags != nil) {
		if len(in.Tags) > engine.MaxTagsPerStream {
			return nil, engineError(engine.ErrTooManyTags)
		}
		v.count("Tags", len(in.Tags), 1, engine.MaxTagsPerStream)
		v.tags("Tags", in.Tags)
	}
	info, aerr := s.resolveTagRef(in.streamRefIn, &v)
	if aerr != nil {
		return nil, aerr
	}
	if err := s.eng.TagStream(engine.StreamRef{ARN: info.ARN}, in.Tags); err != nil {
		return nil, engineError(err)
	}
	return emptyOut{}, nil
}

type untagStreamIn struct {
	streamRefIn
	TagKeyList []string
}

func (s *Server) untagStream(body []byte) (any, *apiError) {
	in, aerr := decode[untagStreamIn](body)
	if aerr != nil {
		return nil, aerr
	}
	return s.untag(in.TagKeyList, func(v *validator) (*engine.StreamInfo, *apiError) {
		return s.resolveTagRef(in.streamRefIn, v)
	})
}

// untag validates a TagKeyList (UntagStream and UntagResource share its
// rules), resolves the stream and removes the keys.
func (s *Server) untag(keys []string, resolve func(*validator) (*engine.StreamInfo, *apiError)) (any, *apiError) {
	var v validator
	if v.required("TagKeyList", keys != nil) {
		v.count("TagKeyList", len(keys), 1, 50)
		for _, k := range keys {
			v.strValue("TagKeyList.member", k, 1, 128, reTagKey)
		}
	}
	info, aerr := resolve(&v)
	if aerr != nil {
		return nil, aerr
	}
	if err := s.eng.UntagStream(engine.StreamRef{ARN: info.ARN}, keys); err != nil {
		return nil, engineError(err)
	}
	return emptyOut{}, nil
}

type listTagsForStreamIn struct {
	streamRefIn
	NextToken *string
}

type listTagsOut struct {
	Tags      map[string]string
	NextToken string `json:",omitempty"`
}

func (s *Server) listTagsForStream(body []byte) (any, *apiError) {
	in, aerr := decode[listTagsForStreamIn](body)
	if aerr != nil {
		return nil, aerr
	}
	var v validator
	v.str("NextToken", in.NextToken, 0, 1024, reNextToken)
	info, aerr := s.resolveTagRef(in.streamRefIn, &v)
	if aerr != nil {
		return nil, aerr
	}
	return tagsPage(info.Tags, in.NextToken)
}

// tagsPage returns all tags at once: a stream holds at most 50, well within
// one response. A NextToken is accepted only if it is empty, since none is
// ever issued.
func tagsPage(tags map[string]string, tok *string) (any, *apiError) {
	if tok != nil && *tok != "" {
		return nil, invalidArgument("NextToken is not a token this service issued.")
	}
	out := listTagsOut{Tags: make(map[string]string, len(tags))}
	for k, v := range tags {
		out.Tags[k] = v
	}
	return out, nil
}

// --- Tagging by resource ARN ---

type tagResourceIn struct {
	ResourceARN *string
	Tags        []struct {
		Key   *string
		Value *string
	}
}

// resolveResource validates a ResourceARN and resolves it to a stream; an
// ARN of another resource type is ResourceNotFound.
func (s *Server) resolveResource(arn *string, v *validator) (*engine.StreamInfo, *apiError) {
	if v.required("ResourceARN", arn != nil) {
		v.strValue("ResourceARN", *arn, 1, 1024, reARN)
	}
	if aerr := v.err(); aerr != nil {
		return nil, aerr
	}
	p, err := engine.ParseARN(*arn)
	if err != nil || p.ResourceType != "stream" {
		return nil, engineError(engine.ErrStreamNotFound)
	}
	info, err := s.eng.Stream(engine.StreamRef{ARN: *arn})
	if err != nil {
		return nil, engineError(err)
	}
	return info, nil
}

func (s *Server) tagResource(body []byte) (any, *apiError) {
	in, aerr := decode[tagResourceIn](body)
	if aerr != nil {
		return nil, aerr
	}
	var v validator
	tags := map[string]string{}
	if v.required("Tags", in.Tags != nil) {
		if len(in.Tags) > engine.MaxTagsPerStream {
			return nil, engineError(engine.ErrTooManyTags)
		}
		v.count("Tags", len(in.Tags), 1, engine.MaxTagsPerStream)
		for _, t := range in.Tags {
			if v.required("Tags.member.Key", t.Key != nil) && v.required("Tags.member.Value", t.Value != nil) {
				v.tagKey("Tags.member", *t.Key)
				v.strValue("Tags.member.value", *t.Value, 0, 256, reTagValue)
				tags[*t.Key] = *t.Value
			}
		}
	}
	info, aerr := s.resolveResource(in.ResourceARN, &v)
	if aerr != nil {
		return nil, aerr
	}
	if err := s.eng.TagStream(engine.StreamRef{ARN: info.ARN}, tags); err != nil {
		return nil, engineError(err)
	}
	return emptyOut{}, nil
}

type untagResourceIn struct {
	ResourceARN *string
	TagKeyList  []string
}

func (s *Server) untagResource(body []byte) (any, *apiError) {
	in, aerr := decode[untagResourceIn](body)
	if aerr != nil {
		return nil, aerr
	}
	return s.untag(in.TagKeyList, func(v *validator) (*engine.StreamInfo, *apiError) {
		return s.resolveResource(in.ResourceARN, v)
	})
}

type listTagsForResourceIn struct {
	ResourceARN *string
	NextToken   *string
}

func (s *Server) listTagsForResource(body []byte) (any, *apiError) {
	in, aerr := decode[listTagsForResourceIn](body)
	if aerr != nil {
		return nil, aerr
	}
	var v validator
	v.str("NextToken", in.NextToken, 0, 1024, reNextToken)
	info, aerr := s.resolveResource(in.ResourceARN, &v)
	if aerr != nil {
		return nil, aerr
	}
	return tagsPage(info.Tags, in.NextToken)
}

// --- Storage configuration ---

func (s *Server) describeStorageConfiguration(body []byte) (any, *apiError) {
	info, aerr := s.streamFromBody(body)
	if aerr != nil {
		return nil, aerr
	}
	return struct {
		StreamName                 string
		StreamARN                  string
		StreamStorageConfiguration struct{ DefaultStorageTier string }
	}{info.Name, info.ARN, struct{ DefaultStorageTier string }{info.StorageTier}}, nil
}

type updateStorageConfigurationIn struct {
	streamRefIn
	CurrentVersion             *string
	StreamStorageConfiguration *storageConfigJSON
}

func (s *Server) updateStorageConfiguration(body []byte) (any, *apiError) {
	in, aerr := decode[updateStorageConfigurationIn](body)
	if aerr != nil {
		return nil, aerr
	}
	var v validator
	if v.required("CurrentVersion", in.CurrentVersion != nil) {
		v.strValue("CurrentVersion", *in.CurrentVersion, 1, 64, reVersion)
	}
	if v.required("StreamStorageConfiguration", in.StreamStorageConfiguration != nil) &&
		v.required("StreamStorageConfiguration.DefaultStorageTier", in.StreamStorageConfiguration.DefaultStorageTier != nil) {
		v.enum("StreamStorageConfiguration.DefaultStorageTier", in.StreamStorageConfiguration.DefaultStorageTier, engine.StorageTierHot, engine.StorageTierWarm)
	}
	info, aerr := s.resolve(in.streamRefIn, &v)
	if aerr != nil {
		return nil, aerr
	}
	err := s.eng.SetStorageTier(engine.StreamRef{ARN: info.ARN}, *in.CurrentVersion, *in.StreamStorageConfiguration.DefaultStorageTier)
	if err != nil {
		return nil, engineError(err)
	}
	return emptyOut{}, nil
}
