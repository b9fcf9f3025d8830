package serve

import (
	"encoding/base64"
	"errors"
	"net/http"
	"regexp"
	"time"

	"github.com/kvsedge/kvsedge/engine"
)

// The KVS edge-agent configuration API: in AWS a Greengrass component on
// a hub device records RTSP cameras; on kvsedge the box itself is the hub,
// and StartEdgeConfigurationUpdate makes it record the camera whose URL
// the named secret holds (the configuration file's secrets section).

var (
	reHubDeviceARN = regexp.MustCompile(`^arn:[a-z\d-]+:iot:[a-z0-9-]+:[0-9]+:thing/[a-zA-Z0-9_.-]+$`)
	reSecretARN    = regexp.MustCompile(`^arn:[a-z\d-]+:secretsmanager:[a-z0-9-]+:[0-9]+:secret:[a-zA-Z0-9_.-]+$`)
	reSchedule     = regexp.MustCompile(`^[^\n]{11,100}$`)
)

const errEdgeConfigNotFound = "StreamEdgeConfigurationNotFoundException"

type startEdgeIn struct {
	streamRefIn
	EdgeConfig *engine.EdgeConfig
}

func validateSchedule(v *validator, field string, sc *engine.ScheduleConfig) {
	if sc == nil {
		return
	}
	v.strValue(field+".ScheduleExpression", sc.ScheduleExpression, 11, 100, reSchedule)
	d := sc.DurationInSeconds
	v.intRange(field+".DurationInSeconds", &d, 60, 3600)
}

func validateEdgeConfig(v *validator, c *engine.EdgeConfig) {
	v.strValue("EdgeConfig.HubDeviceArn", c.HubDeviceArn, 1, 1024, reHubDeviceARN)
	ms := c.RecorderConfig.MediaSourceConfig
	v.strValue("EdgeConfig.RecorderConfig.MediaSourceConfig.MediaUriSecretArn", ms.MediaUriSecretArn, 20, 2048, reSecretARN)
	t := ms.MediaUriType
	v.enum("EdgeConfig.RecorderConfig.MediaSourceConfig.MediaUriType", &t, "RTSP_URI", "FILE_URI")
	validateSchedule(v, "EdgeConfig.RecorderConfig.ScheduleConfig", c.RecorderConfig.ScheduleConfig)
	if u := c.UploaderConfig; u != nil {
		validateSchedule(v, "EdgeConfig.UploaderConfig.ScheduleConfig", &u.ScheduleConfig)
	}
	if d := c.DeletionConfig; d != nil {
		v.intRange("EdgeConfig.DeletionConfig.EdgeRetentionInHours", d.EdgeRetentionInHours, 1, 720)
		if l := d.LocalSizeConfig; l != nil {
			v.intRange("EdgeConfig.DeletionConfig.LocalSizeConfig.MaxLocalMediaSizeInMB", l.MaxLocalMediaSizeInMB, 64, 2000000)
			if l.StrategyOnFullSize != "" {
				st := l.StrategyOnFullSize
				v.enum("EdgeConfig.DeletionConfig.LocalSizeConfig.StrategyOnFullSize", &st, "DELETE_OLDEST_MEDIA", "DENY_NEW_MEDIA")
			}
		}
	}
}

type edgeOut struct {
	StreamName          string
	StreamARN           string
	CreationTime        float64
	LastUpdatedTime     float64
	SyncStatus          string
	FailedStatusDetails string `json:",omitempty"`
	EdgeConfig          engine.EdgeConfig
}

func toEdgeOut(info *engine.StreamInfo) edgeOut {
	e := info.Edge
	return edgeOut{StreamName: info.Name, StreamARN: info.ARN, CreationTime: timeSeconds(e.Created),
		LastUpdatedTime: timeSeconds(e.Updated), SyncStatus: e.SyncStatus, FailedStatusDetails: e.FailedStatusDetails, EdgeConfig: e.Config}
}

func timeSeconds(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

func (s *Server) startEdgeConfigurationUpdate(body []byte) (any, *apiError) {
	in, aerr := decode[startEdgeIn](body)
	if aerr != nil {
		return nil, aerr
	}
	v := &validator{}
	if v.required("EdgeConfig", in.EdgeConfig != nil) {
		validateEdgeConfig(v, in.EdgeConfig)
	}
	info, aerr := s.resolve(in.streamRefIn, v)
	if aerr != nil {
		return nil, aerr
	}
	if info.Edge != nil && info.Edge.SyncStatus == engine.EdgeSyncing {
		return nil, newAPIError(http.StatusBadRequest, errResourceInUse, "An edge configuration update for stream %s is still being applied.", info.Name)
	}
	info, err := s.eng.SetEdgeConfig(engine.StreamRef{ARN: info.ARN}, *in.EdgeConfig)
	if err != nil {
		return nil, edgeError(err)
	}
	return toEdgeOut(info), nil
}

func edgeError(err error) *apiError {
	switch {
	case errors.Is(err, engine.ErrConfigNotFound):
		return newAPIError(http.StatusNotFound, errEdgeConfigNotFound, "The stream has no edge configuration.")
	case errors.Is(err, engine.ErrStreamNotFound):
		return newAPIError(http.StatusNotFound, errResourceNotFound, "The requested stream was not found.")
	}
	return engineError(err)
}

func (s *Server) describeEdgeConfiguration(body []byte) (any, *apiError) {
	info, aerr := s.streamFromBody(body)
	if aerr != nil {
		return nil, aerr
	}
	if info.Edge == nil {
		return nil, edgeError(engine.ErrConfigNotFound)
	}
	e := info.Edge
	type recorder struct {
		JobStatusDetails  string  `json:",omitempty"`
		LastCollectedTime float64 `json:",omitempty"`
		LastUpdatedTime   float64 `json:",omitempty"`
		RecorderStatus    string  `json:",omitempty"`
	}
	type uploader struct {
		JobStatusDetails  string  `json:",omitempty"`
		LastCollectedTime float64 `json:",omitempty"`
		LastUpdatedTime   float64 `json:",omitempty"`
		UploaderStatus    string  `json:",omitempty"`
	}
	out := struct {
		edgeOut
		EdgeAgentStatus struct {
			LastRecorderStatus *recorder `json:",omitempty"`
			LastUploaderStatus *uploader `json:",omitempty"`
		}
	}{edgeOut: toEdgeOut(info)}
	if e.RecorderStatus != "" {
		out.EdgeAgentStatus.LastRecorderStatus = &recorder{JobStatusDetails: e.RecorderDetails, RecorderStatus: e.RecorderStatus,
			LastCollectedTime: timeSeconds(e.RecorderCollected), LastUpdatedTime: timeSeconds(e.RecorderUpdated)}
	}
	if s.opts.Uploads != nil {
		for _, u := range s.opts.Uploads() {
			if u.Stream != info.Name || (u.UploadedAt.IsZero() && u.LastErrorAt.IsZero()) {
				continue
			}
			// The latest of the last upload and the last error decides.
			up := &uploader{UploaderStatus: "SUCCESS", JobStatusDetails: "uploaded through fragment " + u.UploadedThrough}
			if !u.UploadedAt.IsZero() {
				up.LastCollectedTime, up.LastUpdatedTime = timeSeconds(u.UploadedAt), timeSeconds(u.UploadedAt)
			}
			if u.LastErrorAt.After(u.UploadedAt) {
				up.UploaderStatus, up.JobStatusDetails, up.LastUpdatedTime = "SYSTEM_ERROR", u.LastError, timeSeconds(u.LastErrorAt)
				if u.UserError {
					up.UploaderStatus = "USER_ERROR"
				}
			}
			out.EdgeAgentStatus.LastUploaderStatus = up
		}
	}
	return out, nil
}

func (s *Server) deleteEdgeConfiguration(body []byte) (any, *apiError) {
	info, aerr := s.streamFromBody(body)
	if aerr != nil {
		return nil, aerr
	}
	if err := s.eng.DeleteEdgeConfig(engine.StreamRef{ARN: info.ARN}); err != nil {
		return nil, edgeError(err)
	}
	return emptyOut{}, nil
}

type listEdgeIn struct {
	HubDeviceArn *string
	MaxResults   *int
	NextToken    *string
}

func (s *Server) listEdgeAgentConfigurations(body []byte) (any, *apiError) {
	in, aerr := decode[listEdgeIn](body)
	if aerr != nil {
		return nil, aerr
	}
	v := &validator{}
	if v.required("HubDeviceArn", in.HubDeviceArn != nil) {
		v.str("HubDeviceArn", in.HubDeviceArn, 1, 1024, reHubDeviceARN)
	}
	v.intRange("MaxResults", in.MaxResults, 1, 10)
	v.str("NextToken", in.NextToken, 0, 1024, reNextToken)
	if aerr := v.err(); aerr != nil {
		return nil, aerr
	}
	after := ""
	if in.NextToken != nil && *in.NextToken != "" {
		b, err := base64.StdEncoding.DecodeString(*in.NextToken)
		if err != nil {
			return nil, invalidArgument("The NextToken is not valid.")
		}
		after = string(b)
	}
	limit := 5
	if in.MaxResults != nil {
		limit = *in.MaxResults
	}
	out := struct {
		EdgeConfigs []edgeOut
		NextToken   *string `json:",omitempty"`
	}{EdgeConfigs: []edgeOut{}}
	for _, info := range s.eng.EdgeStreams() {
		if info.Edge.Config.HubDeviceArn != *in.HubDeviceArn || info.Name <= after {
			continue
		}
		if len(out.EdgeConfigs) == limit {
			t := base64.StdEncoding.EncodeToString([]byte(out.EdgeConfigs[limit-1].StreamName))
			out.NextToken = &t
			break
		}
		out.EdgeConfigs = append(out.EdgeConfigs, toEdgeOut(info))
	}
	return out, nil
}
