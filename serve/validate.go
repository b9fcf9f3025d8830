package serve

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Patterns and bounds from the botocore kinesisvideo model (2017-09-30). The
// model's patterns are unanchored; AWS applies them to the whole value, so
// they are anchored here.
var (
	reStreamName   = regexp.MustCompile(`^[a-zA-Z0-9_.-]+$`)
	reDeviceName   = reStreamName
	reMediaType    = regexp.MustCompile(`^[\w\-\.\+]+/[\w\-\.\+]+(,[\w\-\.\+]+/[\w\-\.\+]+)*$`)
	reARN          = regexp.MustCompile(`^arn:[a-z\d-]+:kinesisvideo:[a-z0-9-]+:[0-9]+:[a-z]+/[a-zA-Z0-9_.-]+/[0-9]+$`)
	reVersion      = regexp.MustCompile(`^[a-zA-Z0-9]+$`)
	reNextToken    = regexp.MustCompile(`^[a-zA-Z0-9+/=]*$`)
	reTagKey       = regexp.MustCompile(`^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$`)
	reTagValue     = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)
	reDestURI      = regexp.MustCompile(`^[a-zA-Z_0-9]+:(//)?([^/]+)/?([^*]*)$`)
	reDestRegion   = regexp.MustCompile(`^[a-z]+(-[a-z]+)?-[a-z]+-[0-9]$`)
	reFormatConfig = regexp.MustCompile(`^[a-zA-Z_0-9]+`)
	reKmsKeyID     = regexp.MustCompile(`^.+$`)
)

// validator collects constraint violations in AWS's wording:
//
//	1 validation error detected: Value 'a b' at 'streamName' failed to
//	satisfy constraint: Member must satisfy regular expression pattern: …
type validator struct {
	errs []string
}

func (v *validator) add(format string, args ...any) {
	v.errs = append(v.errs, fmt.Sprintf(format, args...))
}

// member turns "StreamName" into the model's member path "streamName".
func member(field string) string {
	if field == "" {
		return field
	}
	return strings.ToLower(field[:1]) + field[1:]
}

// required records a missing required member.
func (v *validator) required(field string, present bool) bool {
	if !present {
		v.add("Value null at '%s' failed to satisfy constraint: Member must not be null", member(field))
	}
	return present
}

// str checks an optional string member (nil = absent).
func (v *validator) str(field string, val *string, min, max int, re *regexp.Regexp) {
	if val == nil {
		return
	}
	v.strValue(field, *val, min, max, re)
}

func (v *validator) strValue(field, val string, min, max int, re *regexp.Regexp) {
	n := utf8.RuneCountInString(val)
	switch {
	case n < min:
		v.add("Value '%s' at '%s' failed to satisfy constraint: Member must have length greater than or equal to %d", val, member(field), min)
	case max > 0 && n > max:
		v.add("Value '%s' at '%s' failed to satisfy constraint: Member must have length less than or equal to %d", clip(val), member(field), max)
	case re != nil && !re.MatchString(val):
		v.add("Value '%s' at '%s' failed to satisfy constraint: Member must satisfy regular expression pattern: %s", clip(val), member(field), strings.Trim(re.String(), "^$"))
	}
}

// enum checks an optional enum member.
func (v *validator) enum(field string, val *string, allowed ...string) {
	if val == nil {
		return
	}
	for _, a := range allowed {
		if *val == a {
			return
		}
	}
	v.add("Value '%s' at '%s' failed to satisfy constraint: Member must satisfy enum value set: [%s]", clip(*val), member(field), strings.Join(allowed, ", "))
}

// intRange checks an optional integer member; max < 0 means unbounded.
func (v *validator) intRange(field string, val *int, min, max int) {
	if val == nil {
		return
	}
	if *val < min {
		v.add("Value '%d' at '%s' failed to satisfy constraint: Member must have value greater than or equal to %d", *val, member(field), min)
	} else if max >= 0 && *val > max {
		v.add("Value '%d' at '%s' failed to satisfy constraint: Member must have value less than or equal to %d", *val, member(field), max)
	}
}

// count checks the number of entries of a list or map member.
func (v *validator) count(field string, n, min, max int) {
	if n < min {
		v.add("Value at '%s' failed to satisfy constraint: Member must have length greater than or equal to %d", member(field), min)
	} else if n > max {
		v.add("Value at '%s' failed to satisfy constraint: Member must have length less than or equal to %d", member(field), max)
	}
}

// tags checks a tag map (keys 1–128, values 0–256, model patterns). AWS
// reserves the "aws:" key prefix.
func (v *validator) tags(field string, tags map[string]string) {
	for k, val := range tags {
		v.tagKey(field, k)
		v.strValue(field+".value", val, 0, 256, reTagValue)
	}
}

func (v *validator) tagKey(field, k string) {
	v.strValue(field+".key", k, 1, 128, reTagKey)
	if strings.HasPrefix(strings.ToLower(k), "aws:") {
		v.add("Value '%s' at '%s.key' failed to satisfy constraint: the aws: prefix is reserved for AWS use", clip(k), member(field))
	}
}

// streamRef checks the optional StreamName/StreamARN pair and that at least
// one is present.
func (v *validator) streamRef(name, arn *string) {
	v.str("StreamName", name, 1, 256, reStreamName)
	v.str("StreamARN", arn, 1, 1024, reARN)
}

// err returns the collected violations as one InvalidArgumentException.
func (v *validator) err() *apiError {
	if len(v.errs) == 0 {
		return nil
	}
	s := ""
	if len(v.errs) > 1 {
		s = "s"
	}
	return invalidArgument("%d validation error%s detected: %s", len(v.errs), s, strings.Join(v.errs, "; "))
}

// clip shortens a value quoted back in an error message.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
