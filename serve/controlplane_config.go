package serve

import (
	"strconv"

	"github.com/kvsedge/kvsedge/engine"
)

// Image generation and notification configurations are stored and echoed
// now; acting on them (generating images, sending notifications) comes with
// the media data path.

type imageGenerationJSON struct {
	Status            *string
	ImageSelectorType *string
	DestinationConfig *struct {
		Uri               *string
		DestinationRegion *string
	}
	SamplingInterval *int
	Format           *string
	FormatConfig     map[string]string `json:",omitempty"`
	WidthPixels      *int              `json:",omitempty"`
	HeightPixels     *int              `json:",omitempty"`
}

type imageGenerationOut struct {
	Status            string
	ImageSelectorType string
	DestinationConfig struct {
		Uri               string
		DestinationRegion string
	}
	SamplingInterval int
	Format           string
	FormatConfig     map[string]string `json:",omitempty"`
	WidthPixels      int               `json:",omitempty"`
	HeightPixels     int               `json:",omitempty"`
}

// minSamplingIntervalMs is KVS's lower bound for image sampling (5 images/s).
const minSamplingIntervalMs = 200

func (c *imageGenerationJSON) validate(v *validator) {
	const p = "ImageGenerationConfiguration."
	if v.required(p+"Status", c.Status != nil) {
		v.enum(p+"Status", c.Status, "ENABLED", "DISABLED")
	}
	if v.required(p+"ImageSelectorType", c.ImageSelectorType != nil) {
		v.enum(p+"ImageSelectorType", c.ImageSelectorType, "SERVER_TIMESTAMP", "PRODUCER_TIMESTAMP")
	}
	if v.required(p+"DestinationConfig", c.DestinationConfig != nil) {
		d := c.DestinationConfig
		if v.required(p+"DestinationConfig.Uri", d.Uri != nil) {
			v.strValue(p+"DestinationConfig.Uri", *d.Uri, 1, 255, reDestURI)
		}
		if v.required(p+"DestinationConfig.DestinationRegion", d.DestinationRegion != nil) {
			v.strValue(p+"DestinationConfig.DestinationRegion", *d.DestinationRegion, 9, 14, reDestRegion)
		}
	}
	if v.required(p+"SamplingInterval", c.SamplingInterval != nil) {
		v.intRange(p+"SamplingInterval", c.SamplingInterval, minSamplingIntervalMs, -1)
	}
	if v.required(p+"Format", c.Format != nil) {
		v.enum(p+"Format", c.Format, "JPEG", "PNG")
	}
	if c.FormatConfig != nil {
		v.count(p+"FormatConfig", len(c.FormatConfig), 1, 1)
		for k, val := range c.FormatConfig {
			kk := k
			v.enum(p+"FormatConfig.key", &kk, "JPEGQuality")
			v.strValue(p+"FormatConfig.value", val, 0, 256, reFormatConfig)
			if k == "JPEGQuality" {
				if q, err := strconv.Atoi(val); err != nil || q < 1 || q > 100 {
					v.add("Value '%s' at 'imageGenerationConfiguration.formatConfig.JPEGQuality' failed to satisfy constraint: Member must be an integer from 1 to 100", clip(val))
				}
			}
		}
	}
	v.intRange(p+"WidthPixels", c.WidthPixels, 1, 3840)
	v.intRange(p+"HeightPixels", c.HeightPixels, 1, 2160)
}

func (c *imageGenerationJSON) toEngine() *engine.ImageGenerationConfig {
	out := &engine.ImageGenerationConfig{
		Status:            *c.Status,
		ImageSelectorType: *c.ImageSelectorType,
		DestinationURI:    *c.DestinationConfig.Uri,
		DestinationRegion: *c.DestinationConfig.DestinationRegion,
		SamplingInterval:  *c.SamplingInterval,
		Format:            *c.Format,
		FormatConfig:      c.FormatConfig,
	}
	if c.WidthPixels != nil {
		out.WidthPixels = *c.WidthPixels
	}
	if c.HeightPixels != nil {
		out.HeightPixels = *c.HeightPixels
	}
	return out
}

func (s *Server) describeImageGeneration(body []byte) (any, *apiError) {
	info, aerr := s.streamFromBody(body)
	if aerr != nil {
		return nil, aerr
	}
	c := info.ImageGeneration
	if c == nil {
		return emptyOut{}, nil
	}
	var out imageGenerationOut
	out.Status, out.ImageSelectorType = c.Status, c.ImageSelectorType
	out.DestinationConfig.Uri, out.DestinationConfig.DestinationRegion = c.DestinationURI, c.DestinationRegion
	out.SamplingInterval, out.Format, out.FormatConfig = c.SamplingInterval, c.Format, c.FormatConfig
	out.WidthPixels, out.HeightPixels = c.WidthPixels, c.HeightPixels
	return struct{ ImageGenerationConfiguration imageGenerationOut }{out}, nil
}

type updateImageGenerationIn struct {
	streamRefIn
	ImageGenerationConfiguration *imageGenerationJSON
}

func (s *Server) updateImageGeneration(body []byte) (any, *apiError) {
	in, aerr := decode[updateImageGenerationIn](body)
	if aerr != nil {
		return nil, aerr
	}
	var v validator
	if in.ImageGenerationConfiguration != nil {
		in.ImageGenerationConfiguration.validate(&v)
	}
	info, aerr := s.resolve(in.streamRefIn, &v)
	if aerr != nil {
		return nil, aerr
	}
	var cfg *engine.ImageGenerationConfig
	if in.ImageGenerationConfiguration != nil {
		cfg = in.ImageGenerationConfiguration.toEngine()
	}
	if err := s.eng.SetImageGeneration(engine.StreamRef{ARN: info.ARN}, cfg); err != nil {
		return nil, engineError(err)
	}
	return emptyOut{}, nil
}

type notificationJSON struct {
	Status            *string
	DestinationConfig *struct{ Uri *string }
}

func (s *Server) describeNotification(body []byte) (any, *apiError) {
	info, aerr := s.streamFromBody(body)
	if aerr != nil {
		return nil, aerr
	}
	c := info.Notification
	if c == nil {
		return emptyOut{}, nil
	}
	type dest struct{ Uri string }
	return struct {
		NotificationConfiguration struct {
			Status            string
			DestinationConfig dest
		}
	}{struct {
		Status            string
		DestinationConfig dest
	}{c.Status, dest{c.DestinationURI}}}, nil
}

type updateNotificationIn struct {
	streamRefIn
	NotificationConfiguration *notificationJSON
}

func (s *Server) updateNotification(body []byte) (any, *apiError) {
	in, aerr := decode[updateNotificationIn](body)
	if aerr != nil {
		return nil, aerr
	}
	var v validator
	c := in.NotificationConfiguration
	if c != nil {
		const p = "NotificationConfiguration."
		if v.required(p+"Status", c.Status != nil) {
			v.enum(p+"Status", c.Status, "ENABLED", "DISABLED")
		}
		if v.required(p+"DestinationConfig", c.DestinationConfig != nil) &&
			v.required(p+"DestinationConfig.Uri", c.DestinationConfig.Uri != nil) {
			v.strValue(p+"DestinationConfig.Uri", *c.DestinationConfig.Uri, 1, 255, reDestURI)
		}
	}
	info, aerr := s.resolve(in.streamRefIn, &v)
	if aerr != nil {
		return nil, aerr
	}
	var cfg *engine.NotificationConfig
	if c != nil {
		cfg = &engine.NotificationConfig{Status: *c.Status, DestinationURI: *c.DestinationConfig.Uri}
	}
	if err := s.eng.SetNotification(engine.StreamRef{ARN: info.ARN}, cfg); err != nil {
		return nil, engineError(err)
	}
	return emptyOut{}, nil
}
