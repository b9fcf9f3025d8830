package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/schedule"
	"github.com/kvsedge/kvsedge/internal/status"
)

// EdgeAgent applies the edge configurations stored in the engine (set
// through StartEdgeConfigurationUpdate) to the camera Manager, and
// reports back their sync status and the recorder's status, as KVS's
// edge agent does. Camera URLs come from the configuration's secrets,
// named by the last part of MediaUriSecretArn.
type EdgeAgent struct {
	eng  *engine.Engine
	cams *Manager
	log  *slog.Logger
	kick chan struct{}

	mu      sync.Mutex
	secrets map[string]string
	// wake is when the next recording window of a scheduled recorder
	// opens or closes (zero: none); Run reconciles then.
	wake time.Time
}

// NewEdgeAgent applies eng's edge configurations to cams (group GroupAPI),
// resolving camera URLs from secrets.
func NewEdgeAgent(eng *engine.Engine, cams *Manager, secrets map[string]string, log *slog.Logger) *EdgeAgent {
	return &EdgeAgent{eng: eng, cams: cams, log: log, secrets: secrets, kick: make(chan struct{}, 1)}
}

// SetSecrets replaces the secrets (configuration file reloaded).
func (b *EdgeAgent) SetSecrets(s map[string]string) {
	b.mu.Lock()
	b.secrets = s
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// awsSecretSuffix is the "-AbCdEf" Secrets Manager appends to secret names
// in ARNs.
var awsSecretSuffix = regexp.MustCompile(`-[a-zA-Z0-9]{6}$`)

// resolve returns the URL a MediaUriSecretArn names.
func (b *EdgeAgent) resolve(arn string) (string, error) {
	i := strings.LastIndex(arn, ":secret:")
	if i < 0 {
		return "", fmt.Errorf("%s is not a secret ARN", arn)
	}
	name := arn[i+len(":secret:"):]
	b.mu.Lock()
	defer b.mu.Unlock()
	if v, ok := b.secrets[name]; ok {
		return v, nil
	}
	if v, ok := b.secrets[awsSecretSuffix.ReplaceAllString(name, "")]; ok {
		return v, nil
	}
	return "", fmt.Errorf("secret %q is not in the configuration's secrets", name)
}

// Run reconciles on every registry change, on kicks, and every 10 s (to
// refresh the recorder status), until ctx ends.
func (b *EdgeAgent) Run(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		b.reconcile()
		var wake <-chan time.Time
		var wt *time.Timer
		b.mu.Lock()
		if !b.wake.IsZero() {
			wt = time.NewTimer(time.Until(b.wake) + 50*time.Millisecond)
			wake = wt.C
		}
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-b.eng.Changes():
		case <-b.kick:
		case <-t.C:
		case <-wake:
		}
		if wt != nil {
			wt.Stop()
		}
	}
}

func (b *EdgeAgent) reconcile() {
	streams := b.eng.EdgeStreams()
	failed := map[string]string{}
	offSchedule := map[string]string{}
	var cams []CameraConfig
	var wake time.Time
	now := time.Now()
	for _, info := range streams {
		// RecorderConfig.ScheduleConfig: record only inside its windows.
		if sc := info.Edge.Config.RecorderConfig.ScheduleConfig; sc != nil {
			sch, err := schedule.Parse(sc.ScheduleExpression, sc.DurationInSeconds)
			if err != nil {
				failed[info.Name] = err.Error()
				continue
			}
			open, ends, next := sch.Window(now)
			edge := next
			if open {
				edge = ends
			}
			if wake.IsZero() || edge.Before(wake) {
				wake = edge
			}
			if !open {
				offSchedule[info.Name] = "outside the recording schedule; the next window opens at " + next.UTC().Format(time.RFC3339)
				continue
			}
		}
		ms := info.Edge.Config.RecorderConfig.MediaSourceConfig
		if ms.MediaUriType != "RTSP_URI" {
			failed[info.Name] = "kvsedge records RTSP_URI media sources only"
			continue
		}
		url, err := b.resolve(ms.MediaUriSecretArn)
		if err != nil {
			failed[info.Name] = err.Error()
			continue
		}
		src, err := NewRTSPSource(url, "auto")
		if err != nil {
			failed[info.Name] = "the secret does not hold a camera URL: " + err.Error()
			continue
		}
		cams = append(cams, CameraConfig{
			Stream: info.Name, Source: src, RetentionHours: info.DataRetentionInHours,
			Key: fmt.Sprintf("api|%s|%+v", url, info.Edge.Config),
		})
	}
	b.mu.Lock()
	b.wake = wake
	b.mu.Unlock()
	if err := b.cams.Apply(GroupAPI, cams); err != nil {
		b.log.Warn("applying edge configurations", "err", err)
	}
	for _, name := range b.cams.Ignored(GroupAPI) {
		failed[name] = "the stream already has a camera from the configuration file or the demo"
	}
	states := map[string]status.Camera{}
	for _, s := range b.cams.States() {
		states[s.Stream] = s
	}
	for _, info := range streams {
		ref := engine.StreamRef{ARN: info.ARN}
		var err error
		if msg, bad := failed[info.Name]; bad {
			err = b.eng.SetEdgeStatus(ref, engine.EdgeSyncFailed, msg, "USER_ERROR", msg)
		} else if msg, off := offSchedule[info.Name]; off {
			err = b.eng.SetEdgeStatus(ref, engine.EdgeInSync, "", "SUCCESS", msg)
		} else {
			rec, details := "", ""
			if st, ok := states[info.Name]; ok {
				switch st.State {
				case StateRecording:
					rec = "SUCCESS"
				case StateRetrying:
					rec, details = "SYSTEM_ERROR", st.LastError
				}
			}
			err = b.eng.SetEdgeStatus(ref, engine.EdgeInSync, "", rec, details)
		}
		if err != nil && !errors.Is(err, engine.ErrStreamNotFound) {
			b.log.Warn("recording edge status", "stream", info.Name, "err", err)
		}
	}
}
